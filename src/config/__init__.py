"""Server configuration: defaults < YAML file < environment < command-line flags,
with every value's source recorded and every problem reported at once.

Typical use in the CLI::

    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_arguments(parser)
    args = parser.parse_args()
    try:
        settings = load_settings(args, os.environ)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
"""

from ._arguments import add_arguments as add_arguments
from ._duration import format_duration as format_duration
from ._duration import format_duration_compact as format_duration_compact
from ._duration import parse_duration as parse_duration
from ._effective import format_effective as format_effective
from ._examples import ALERT_RULES as ALERT_RULES
from ._examples import SERVER_EXAMPLE as SERVER_EXAMPLE
from ._examples import example_file as example_file
from ._exceptions import ConfigError as ConfigError
from ._exceptions import Problem as Problem
from ._keys import KEYS as KEYS
from ._keys import Key as Key
from ._kinds import format_size as format_size
from ._kinds import hide_passwords as hide_passwords
from ._kinds import mask_passwords as mask_passwords
from ._load import load_settings as load_settings
from ._resolve import ConfigFile as ConfigFile
from ._resolve import resolve_settings as resolve_settings
from ._settings import AgentsSettings as AgentsSettings
from ._settings import AlertsSettings as AlertsSettings
from ._settings import AuthSettings as AuthSettings
from ._settings import BusSettings as BusSettings
from ._settings import CommandsSettings as CommandsSettings
from ._settings import LimitsSettings as LimitsSettings
from ._settings import LogSettings as LogSettings
from ._settings import ServerSettings as ServerSettings
from ._settings import Settings as Settings
from ._settings import StorageSettings as StorageSettings
from ._settings import StoreSettings as StoreSettings
from ._settings import TenantsSettings as TenantsSettings
from ._settings import WebSocketSettings as WebSocketSettings
from ._source import FlagValue as FlagValue
from ._source import Source as Source
from ._source import SourceKind as SourceKind
