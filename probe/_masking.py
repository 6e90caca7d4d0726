"""Secrets in process command lines, masked before a report leaves the host.

Anyone who may read the topology reads command lines (a process node's
``cmdline``, a container node's ``command`` and its labels' values, and
with ``--env-values`` its environment's values); the passwords and tokens in
them are not theirs. What
is masked (each value becomes ``***``, what is around it stays readable):

- the value of a flag or variable named like a secret (token, secret, passw,
  passphrase, key, cookie, bearer, credential, jwt, or a name ending in auth,
  pass or pwd): ``--api-key=***``, ``--auth ***``, ``--password:***``,
  ``DB_PASSWORD=***``, ``-Djavax.net.ssl.keyStorePassword=***``
  (``--password-stdin`` has none), and of such a key after ``config set``
  (``aws configure set aws_secret_access_key ***``, ``npm config set
  //r/:_authToken=***``, redis-cli's ``CONFIG SET requirepass ***``);
- in comma-separated options, an option named like a secret
  (``mount -o username=u,password=***``);
- in URLs, the password (``postgresql://u:***@db``, up to the ``@`` the host
  follows: ``redis://:***@h`` for ``pa/ss``), the user of an http(s) URL
  without one (``https://***@github.com``: GitHub takes a token there), and
  parameters named like a secret (``?access_token=***``, ``;password=***``);
  ``user:***@host`` without a scheme (a Go DSN: ``user:***@tcp(db:3306)/x``);
- in JSON within an argument, a member named like a secret (``-d
  '{"user":"u","password":"***"}'``), across the spaces JSON may hold;
- a JSON Web Token wherever it stands (``eyJ...``: ``***``);
- HTTP credentials: a header whose name says auth, key, token, secret,
  password, cookie or session (``X-Api-Key: ***``, ``Cookie: ***``), keeping an
  Authorization scheme (``Authorization: Bearer ***``), and the word after
  Bearer, Basic or Token anywhere;
- the flags of tools that take a password under a short name: ``curl -u
  user:***`` (and ``--user``, ``-U``, ``--proxy-user``; ``-b``/``--cookie``
  whole), ``mysql -p***`` (any ``mysql*``/``mariadb*`` tool; ``-p`` alone asks
  for it), ``redis-cli -a ***``, ``sshpass -p ***``, ``mongosh -p ***``
  (any ``mongo*``), ``ldapsearch -w ***`` (any ``ldap*``), ``sqlcmd -P ***``,
  ``mosquitto_sub -P ***``, httpie's and xh's ``http -a user:***`` (without a
  colon, whole: ``-A bearer -a TOKEN``), ``docker login -p ***`` (and
  ``podman``, ``nerdctl``, ``buildah``, ``skopeo``, ``oras``, ``helm registry``,
  ``az``: their ``login``'s ``-p`` only), ``--creds user:***`` (podman, buildah,
  skopeo), ``etcdctl --user root:***``, ``ipmitool -P ***``, ``rdesktop -p ***``,
  ``lftp -u user,***``, Samba's ``smbclient -U user%***`` (``rpcclient``,
  ``smbcacls``, ``smbget``), FreeRDP's ``xfreerdp /p:***`` (``/gp:``, ``/pth:``),
  Oracle's ``sqlplus user/***@db`` (``sqlldr``, ``expdp``, ``impdp``;
  ``userid=user/***`` too), ``openssl enc -k ***`` (``-K``), ``htpasswd -b
  file user ***`` and httpie's header items (``Private-Token:***``);
  a tool is one only where a command stands (first, after ``;``,
  ``&&``, ``|``..., among the next words after ``exec``, ``sudo``, ``env``...,
  or as the script after ``python3``, ``bash``...): ``docker run --name mongo
  -p 27017:27017`` keeps its port.

An argument holding spaces (``sh -c "..."``, ``-H "Authorization: ..."``) is a
line of its own: its words are masked one by one, quotes and spacing kept; a
masked value that opens a quote is masked up to the quote that closes it
(``--password 'correct horse'``).
Names are matched loosely (``--keyfile``'s path is masked too): a hidden
harmless value costs less than a shown secret.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import re
from collections.abc import Mapping

import attrs

MASK = "***"

_FLAG_SECRET = re.compile(r"token|secret|pass(?:w|phrase|in|out)|key|cookie|bearer|credential|jwt|psk|hmac"
                          r"|(?:auth|authorization|pass|pwd|pw|encrypt)$", re.IGNORECASE)
"""Flag and variable names whose value is a secret (``--requirepass`` and
``--masterauth`` are redis-server's, ``-passin`` openssl's, ``-pw`` PuTTY's,
``-encrypt`` consul's gossip key). Not "auth" anywhere: kube-apiserver's
``--authorization-mode=Node,RBAC`` says nothing secret."""
_FIELD_SECRET = re.compile(r"auth|key|token|secret|pass|pwd|cookie|session|sig|credential", re.IGNORECASE)
"""Header and URL parameter names whose value is a secret: there, "auth" and
"session" name credentials by convention (``X-Auth-Token``, ``?session=``)."""
_SCHEMES = frozenset({"basic", "bearer", "token", "digest", "negotiate", "ntlm", "oauth", "aws4-hmac-sha256"})
"""Authorization schemes: kept in a header's value, the credential after them masked."""
_ANNOUNCERS = frozenset({"basic", "bearer", "token"})
"""Words that announce a credential wherever they stand (``echo "Bearer $T"``)."""

# Every pattern below runs on whatever a local user puts in a command line (100 KB
# arguments included), so each must stay linear: anchored (match, fullmatch, a
# lookbehind) where a quantifier could be retried from every position, and no two
# adjacent quantifiers over the same characters (tests/probe/test_masking.py: LONG).
_ASSIGNMENT = re.compile(r"-{0,2}[A-Za-z_][\w.-]*=")
_COLON_FLAG = re.compile(r"-{1,2}[A-Za-z_][\w.-]*:")
"""``--password:value``: a flag whose value follows a colon."""
_HEADER = re.compile(r"([A-Za-z][\w-]*):[ \t]*(.*)", re.DOTALL)
"""``Name: value`` (or ``Name:value``), as curl's ``-H`` takes a header."""
_SPACED_HEADER = re.compile(r"[A-Za-z][\w-]*:[ \t]+\S")
"""A header in an argument of its own: ``Name: value``, the space after the colon
telling it from ``host:port`` or ``image:tag``."""
_SCHEME_VALUE = re.compile(r"(\S+)([ \t]+)\S.*", re.DOTALL)
_LOGIN_END = r"(?:(?!://)\S)*?@(?=[^\s/?#@]*(?:[/?#\s]|\Z))"
"""The password after ``user:`` and its ``@``: the first ``@`` after which a host
ends the authority (a ``/``, ``?``, ``#`` or the word's end, no other ``@``),
so a password may hold ``@``, ``/``, ``#`` or ``?`` (``redis://:pa/ss@h``) and
a path its own ``@`` (``?mail=a@b``). Never past a ``://``: each URL of a
word scans up to the next one only (``a://a:`` over 100 KB)."""
_NO_PORT = r"(?!\d+(?:[/?#]|\Z))"
"""Not a port: ``host:8080/@scope/pkg`` is a path's ``@``."""
_URL_PASSWORD = re.compile(rf"(?<![\w+.-])(\w[\w+.-]*://[^\s/@:\[]*):{_NO_PORT}{_LOGIN_END}")
"""The scheme starts where no scheme character stands before it: unanchored,
each position of ``aaa...@`` was tried to its end (100 KB: 41 s; anchored: 8 ms).
Not an IPv6 host (``http://[::1]:80/a@b``)."""
_BARE_LOGIN = re.compile(rf"((?:-{{0,2}}[\w.-]+=)?(?!(?:mailto|sips?|xmpp|tel):)[A-Za-z_][\w.%+-]*):(?!//)"
                         rf"{_NO_PORT}{_LOGIN_END}(?!\w+:[\da-fA-F]{{32}})")
"""``user:password@host`` without a scheme, as a word or a flag's value: a Go
DSN (``--dsn user:***@tcp(db:3306)/x``), curl's proxy, ssh-like tools. Matched
at the start only; not ``git@github.com:o/r.git`` (``@`` before the colon), an
image's digest (``nginx:1.25@sha256:...``), a time (``10:30@daily``: a user
starts with a letter), nor ``mailto:``/``sip:`` URIs."""
_JWT = re.compile(r"(?<![\w-])eyJ[\w-]{8,}\.[\w-]+\.[\w-]*")
"""A JSON Web Token wherever it stands: three base64url parts, the first a
JSON object's (``{"`` is ``eyJ``). Starts only where no base64url character
stands before it; the dots part the quantifiers."""
_KNOWN_TOKEN = re.compile(r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|glpat-[\w-]{20,}"
                          r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|xox[abposr]-[\w-]{10,})")
"""Tokens that say what they are wherever they stand, whatever flag (or none)
comes before: GitHub's, GitLab's, Stripe's and Slack's."""
_TOKEN_MARKS = ("gh", "github_pat_", "glpat-", "k_live_", "k_test_", "xox")
_WEBHOOK = re.compile(r"((?<![\w.-])(?:https?://)?(?:hooks\.slack\.com/services|(?:discord|discordapp)\.com/api/webhooks"
                      r")/)[^\s?#'\"]+", re.IGNORECASE)
"""A webhook URL whose path is its secret (Slack's, Discord's): the path masked."""
_URL_USER_ONLY = re.compile(r"(https?://)[^\s/@:?#]+@", re.IGNORECASE)
_URL_PARAMETER = re.compile(r"(?<=[?&;])([^=&;?#\s'\"]+)=([^&;#\s'\"]*)")
_QUOTE = re.compile(r"['\"]")
_JSON_MEMBER = re.compile(r'"([^"\\]{1,128})"(\s*:\s*)("(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*)')
"""A JSON object's member: ``"password": "x"`` (its value a string or a number)."""
_PORT_MAPPING = re.compile(r"(?:[\d.]+:|\[[\da-fA-F:]+\]:)?\d+(?:-\d+)?:\d+(?:-\d+)?(?:/(?:tcp|udp|sctp))?")
"""``8080:80``, ``127.0.0.1:3306:3306``, ``53:53/udp``: docker's ``-p``, no password."""
_SPACES = re.compile(r"(\s+)")
_SPACE = re.compile(r"\s")
_COMMAND_STARTS = frozenset({";", "&&", "||", "|", "&", "(", "{", "!", "then", "do", "else", "time", "nohup",
                             "command"})
"""Words after which a command stands."""
_RUNNERS = frozenset({"exec", "sudo", "doas", "env", "xargs", "nice", "timeout", "watch"})
"""Commands that run a command given a few words later (their own flags' values,
``docker exec``'s container, ``env``'s variables come first)."""
_RUNNER_WORDS = 3
"""How many words after a runner may name the command (``docker exec -u root db mysql``)."""
_POSITION_WORDS = _COMMAND_STARTS | _RUNNERS
_SEPARATOR_ENDS = (";", ";'", ';"')
"""How a word ends a command (``export T=x;``)."""


class _Takes(enum.Enum):
    """What a flag's value is."""

    SECRET = enum.auto()
    """Masked whole."""
    PASSWORD = enum.auto()
    """A tool's password under a short flag: masked whole, but for a port
    mapping or a path, which the same flag of another program takes
    (``docker run -p 8080:80``, ``-w /app``)."""
    USER_PASSWORD = enum.auto()
    """``user:password``: the password masked."""
    USER_COMMA_PASSWORD = enum.auto()
    """``user,password`` (lftp's ``-u``): the password masked."""
    USER_PERCENT_PASSWORD = enum.auto()
    """``user%password`` (Samba's ``-U``): the password masked."""
    ORACLE_LOGIN = enum.auto()
    """A word that is not a flag: ``user/password@connect`` (or ``userid=...``), the password masked."""
    USER_PASSWORD_OR_TOKEN = enum.auto()
    """``user:password``, the password masked, or a token, masked whole: httpie's
    ``-a`` takes both (``-A bearer -a TOKEN``), and a token has no colon."""
    HEADER = enum.auto()
    """An HTTP header: its value masked if its name says secret."""
    BATCH_PASSWORD = enum.auto()
    """A word that is not a flag, masked if it comes after the user under a
    batch flag: ``htpasswd -b file user ***`` (``_Batch``)."""


@attrs.frozen
class _Flag:
    takes: _Takes
    attached_only: bool = False
    """Only ``-pSECRET``: mysql's ``-p`` alone asks for the password (the next word is the database)."""
    separate_only: bool = False
    """Only ``-k SECRET``: openssl's flags are words (``-keyout`` is no ``-k``)."""


_CURL = {"-u": _Flag(_Takes.USER_PASSWORD), "--user": _Flag(_Takes.USER_PASSWORD),
         "-U": _Flag(_Takes.USER_PASSWORD), "--proxy-user": _Flag(_Takes.USER_PASSWORD),
         "-b": _Flag(_Takes.PASSWORD), "--cookie": _Flag(_Takes.PASSWORD),  # or a cookie jar's path
         "-H": _Flag(_Takes.HEADER), "--header": _Flag(_Takes.HEADER), "--proxy-header": _Flag(_Takes.HEADER)}
_HTTPIE = {"-a": _Flag(_Takes.USER_PASSWORD_OR_TOKEN), "--auth": _Flag(_Takes.USER_PASSWORD_OR_TOKEN)}
_HTTPIE_NAMES = ("http", "https", "httpie", "xh", "xhs")  # httpie (``python3 -m httpie`` too) and xh
_MOSQUITTO = {"-P": _Flag(_Takes.PASSWORD), "--pw": _Flag(_Takes.PASSWORD)}  # its ``-p`` is the port
_POSITIONAL = ""
"""The key of a tool's flags under which what its words that are not flags take stands (sqlplus' login)."""
_SLASHED = "/"
"""The key present for tools whose flags are ``/name:value`` (FreeRDP's), the others keyed ``/name:``."""
_ORACLE = {_POSITIONAL: _Flag(_Takes.ORACLE_LOGIN)}
_SAMBA = {"-U": _Flag(_Takes.USER_PERCENT_PASSWORD), "--user": _Flag(_Takes.USER_PERCENT_PASSWORD)}
_FREERDP = {_SLASHED: _Flag(_Takes.SECRET), "/p:": _Flag(_Takes.SECRET), "/gp:": _Flag(_Takes.SECRET),
            "/pth:": _Flag(_Takes.SECRET)}
_TOOL_FLAGS: dict[str, Mapping[str, _Flag]] = {
    "curl": _CURL,
    "wget": {"--header": _Flag(_Takes.HEADER)},
    "redis-cli": {"-a": _Flag(_Takes.PASSWORD)}, "valkey-cli": {"-a": _Flag(_Takes.PASSWORD)},
    "sshpass": {"-p": _Flag(_Takes.PASSWORD)},
    "sqlcmd": {"-P": _Flag(_Takes.PASSWORD)},
    **{name: _HTTPIE for name in _HTTPIE_NAMES},
    **{name: _MOSQUITTO for name in ("mosquitto_sub", "mosquitto_pub", "mosquitto_rr", "mosquitto_ctrl")},
    "etcdctl": {"--user": _Flag(_Takes.USER_PASSWORD)},
    "ipmitool": {"-P": _Flag(_Takes.PASSWORD)},  # its ``-p`` is the port
    "rdesktop": {"-p": _Flag(_Takes.PASSWORD)},
    "lftp": {"-u": _Flag(_Takes.USER_COMMA_PASSWORD), "--user": _Flag(_Takes.USER_COMMA_PASSWORD)},
    **{name: _SAMBA for name in ("smbclient", "rpcclient", "smbcacls", "smbget")},
    **{name: _FREERDP for name in ("xfreerdp", "xfreerdp3", "wlfreerdp", "wlfreerdp3", "sdl-freerdp",
                                    "sdl-freerdp3")},
    **{name: _ORACLE for name in ("sqlplus", "sqlldr", "expdp", "impdp")},
    "openssl": {"-k": _Flag(_Takes.SECRET, separate_only=True), "-K": _Flag(_Takes.SECRET, separate_only=True)},
    "htpasswd": {_POSITIONAL: _Flag(_Takes.BATCH_PASSWORD)},
}
"""Tools whose flags take a secret under a name that does not say so."""
_TOOL_FAMILIES: dict[str, Mapping[str, _Flag]] = {
    "mysql": {"-p": _Flag(_Takes.PASSWORD, attached_only=True)},
    "mariadb": {"-p": _Flag(_Takes.PASSWORD, attached_only=True)},
    "mongo": {"-p": _Flag(_Takes.PASSWORD)},
    "ldap": {"-w": _Flag(_Takes.PASSWORD)},
}
"""The same, for every tool whose name starts so (``mysqldump``, ``mongosh``)
and goes on with letters or digits: ``mongo-express`` is a web UI whose ``-p``
is its port. MariaDB's own tools are hyphenated (``mariadb-admin``)."""
_HYPHENATED_FAMILIES = frozenset({"mariadb"})


@attrs.frozen
class _LoginTool:
    """A tool whose ``login`` subcommand takes a password under ``-p``, which
    its other subcommands take a port under (``docker run -p 8080:80``)."""

    flags: Mapping[str, _Flag] = attrs.field(factory=dict)
    """Flags that take a secret under any subcommand (``podman pull --creds``)."""
    before_login: frozenset[str] = frozenset()
    """Words that may stand between the tool's name and ``login`` (``helm registry login``)."""


_LOGIN_FLAGS = {"-p": _Flag(_Takes.PASSWORD)}
_CREDS = {"--creds": _Flag(_Takes.USER_PASSWORD), "--src-creds": _Flag(_Takes.USER_PASSWORD),
          "--dest-creds": _Flag(_Takes.USER_PASSWORD)}
_LOGIN_TOOLS = {
    "docker": _LoginTool(), "nerdctl": _LoginTool(), "oras": _LoginTool(),
    "podman": _LoginTool(_CREDS), "buildah": _LoginTool(_CREDS), "skopeo": _LoginTool(_CREDS),
    "helm": _LoginTool(before_login=frozenset({"registry"})),
    # ``az`` is a shell script running ``python3 -sm azure.cli``: both processes show the line.
    "az": _LoginTool(before_login=frozenset({"acr"})), "azure.cli": _LoginTool(before_login=frozenset({"acr"})),
}
_INTERPRETER = re.compile(r"(?:python|pypy)[\d.]*|(?:ba|da|z|k)?sh")
"""Programs whose process runs a script named next (a script's ``#!`` line
makes ``http -a ...`` the process ``/usr/bin/python3 /usr/bin/http -a ...``)."""
_FAMILY_NAMES = tuple(_TOOL_FAMILIES)
_HINT_WORDS = ("key", "token", "secret", "pass", "pwd", "-pw", "pw=", 'pw"', "psk", "hmac", "encrypt", "auth", "cookie", "session",
               "sig", "credential", "bearer", "basic", "jwt", "eyj", "@", "login", "creds", "mosquitto_", "hooks",
               "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "k_live_", "k_test_", "xox", *(f"{name} " for name in _HTTPIE_NAMES),
               *(name for name in _TOOL_FLAGS if name not in _HTTPIE_NAMES), *_TOOL_FAMILIES)
_HINTS = tuple(hint for hint in _HINT_WORDS if not any(other != hint and other in hint for other in _HINT_WORDS))
"""Substrings without which nothing is masked (lowercase): every name above,
every tool, the ``@`` of a URL's user, a JSON Web Token's ``eyJ`` (``sshpass``
holds ``pass``: one is enough), and for ``_LOGIN_TOOLS`` the words their
secrets need (``login``, ``--creds``): ``docker`` alone would send every
``docker-proxy`` line word by word. ``config set``'s words are none: its key
holds one (``aws_secret_access_key``). httpie's names are followed by the space before their flags: ``http``
alone is in every URL, and a hinted line costs five times as much (prometheus'
four arguments: 3 -> 17 µs)."""


def masked_cmdline(argv: list[str], start: int = 0) -> str:
    """The command line (arguments joined by spaces), with what looks like a
    secret replaced by ``***`` (the module docstring says what). The
    arguments before ``start`` are read but not shown: a container's
    entrypoint (``["mysql"]``) says whose flags its command's are (``-p***``).

    Runs for every process every interval, so only the arguments holding one
    of ``_HINTS`` are looked at word by word. Measured on a loaded 2-core
    machine: a line with no hint 3-7 µs (a lowercase and a substring test per
    hint), a browser's 2,400-character line with one hint 240-290 µs, and
    this host's 110 processes 18-36 µs each on average, beside the ~370 µs
    psutil takes to read each process."""
    text = " ".join(argv)
    if not _hinted(text):
        return " ".join(argv[start:]) if start else text
    hinted = _hinted_parts(_lowered(text), list(itertools.accumulate((len(a) + 1 for a in argv[:-1]), initial=0)))
    walk = _Walk()
    shown = [walk.argument(arg, n in hinted) for n, arg in enumerate(argv)]
    return " ".join(shown[start:] if start else shown)


def cut_argv(argv: list[str], limit: int) -> list[str]:
    """``argv`` within ``limit`` characters joined by spaces, to be masked:
    masking is linear in the line, and a local user's 20 processes of 1.76 MB
    of argv each took 26 s of CPU a collection when masked whole, then cut.

    The arguments past ``limit`` are left out; the one it falls in is kept up
    to its last space outside quotes before it: a word cut in half may be half
    a secret that no rule knows any more (``postgres://u:pa``, ``eyJhbGci``),
    and a quote cut open a value the rule for it needs whole (``"password":
    "correct horse``). An argument without such a space goes whole. Masking
    goes forwards, so what is kept is masked as it was in the whole line."""
    kept: list[str] = []
    used = 0
    for arg in argv:
        room = limit - used - (1 if kept else 0)
        if len(arg) > room:
            part = _whole_words(arg[:max(0, room)])
            if part:
                kept.append(part)
            break
        kept.append(arg)
        used += len(arg) + (1 if len(kept) > 1 else 0)
    return kept


def _whole_words(text: str) -> str:
    """``text``, the start of a longer argument, up to its last space outside
    quotes: read in order, so that a quoted value closed just before the cut
    (``"password": "a b"``) is not cut at one of its own spaces. A quote
    escaped with a backslash (JSON's ``\\"``) opens or closes nothing."""
    quote, end = "", 0
    for found in _QUOTE_OR_SPACE.finditer(text):
        mark = found.group()
        if mark in "'\"":
            if not quote:
                quote = mark
            elif mark == quote:
                quote = ""
        elif not mark.startswith("\\") and not quote:
            end = found.start()
    return text[:end]


_QUOTE_OR_SPACE = re.compile(r"\\.|['\"]|\s+", re.DOTALL)
"""An escaped character (skipped), a quote, or a run of spaces (``_whole_words``)."""


def masked_variable(name: str, value: str) -> str:
    """An environment variable's value (a container's), masked whole if its
    name says secret as a flag's would (``POSTGRES_PASSWORD``, ``MYSQL_PWD``),
    else as a command line (``DATABASE_URL=postgres://u:***@db``,
    ``JAVA_OPTS=-Djavax.net.ssl.keyStorePassword=***``)."""
    if _FLAG_SECRET.search(name):
        return MASK if value else value
    return masked_cmdline([value])


_KEY_PARTS = re.compile(r"[./]")


def masked_label(key: str, value: str) -> str:
    """A container label's value, masked as an environment variable's
    (``masked_variable``), its key read part by part as well: labels are
    dotted or slashed names (``traefik.http.middlewares.x.basicauth.users``,
    ``api.token``), and a part may end in auth as a variable's name may."""
    if any(_FLAG_SECRET.search(part) for part in _KEY_PARTS.split(key)):
        return MASK if value else value
    return masked_variable(key, value)


def _hinted_parts(lowered: str, starts: list[int]) -> set[int]:
    """The indexes of the parts of a line (``lowered``, its parts starting at
    ``starts``) that hold one of ``_HINTS``, found with ``str.find`` over the
    whole line: a hint holds no space but at its end, so each one found starts
    within one argument or word. (A test of each part costs ten times as much
    on a line of a hundred arguments.)"""
    found: list[int] = []
    for hint in _HINTS:
        at = lowered.find(hint)
        while at >= 0:
            found.append(at)
            at = lowered.find(hint, at + 1)
    return {bisect.bisect_right(starts, at) - 1 for at in found}


def _hinted(text: str) -> bool:
    """Whether ``text`` holds one of ``_HINTS``: no rule masks anything in a
    word without one (but for what a word before it announced)."""
    lowered = _lowered(text)
    return any([hint in lowered for hint in _HINTS])  # a list: a generator costs twice as much


def _lowered(text: str) -> str:
    """``text`` lowercased as the hints are found in it, one character for
    one, so that an offset in it is one in ``text`` (``_hinted_parts``):
    ``'İ'.lower()`` is two characters, and each ``İ`` before a secret moved
    its hint into a later argument (``--home=/home/İİİİİİİİİ --password
    hunter2`` sent ``hunter2``). ``str.lower`` where it keeps the length (no
    character lowercases to none: then each to one), else ``_ONE_FOR_ONE``."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else text.translate(_ONE_FOR_ONE)


_ONE_FOR_ONE = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ\u0130\u212a", "abcdefghijklmnopqrstuvwxyz\u0069k")
"""A lowercase of one character for one, finding the hints (ASCII) where
``str.lower`` finds them: ASCII capitals, and the two other characters
whose ``lower()`` holds an ASCII letter: ``İ`` (an i and a combining dot,
the one character whose lowercase is longer) and the Kelvin sign (``k``)."""


def _split_quotes(word: str) -> tuple[str, str, str]:
    """A word of a nested line: its leading quotes, its text, and its closing
    quotes (and ``;``). With ``strip``, not a pattern: ``(['"]*)(.*?)(['";]*)``
    took 61 s over ``key;;;...;x`` (100 KB), retrying the lazy middle at each ``;``."""
    text = word.lstrip("'\"")
    if not text:  # only quotes: a value's closing one
        return "", "", word
    core = text.rstrip("'\";")
    return word[:len(word) - len(text)], core, text[len(core):]


def _quote_after(word: str, quote: str) -> str:
    """The shell quote open after ``word`` ("" for none), ``quote`` open before it."""
    for found in _QUOTE.finditer(word):
        if not quote:
            quote = found.group()
        elif found.group() == quote:
            quote = ""
    return quote


def _json_secrets(text: str) -> str:
    """``text`` with the value of every JSON member named like a secret masked
    (``curl -d '{"user":"u","password":"***"}'``, ``--config={"db": {"password": "***"}}``),
    across the spaces JSON may hold."""
    return _JSON_MEMBER.sub(
        lambda m: f'"{m.group(1)}"{m.group(2)}"{MASK}"' if _FLAG_SECRET.search(m.group(1)) else m.group(), text)


def _secret_value(text: str) -> int | None:
    """Where the value of a flag named like a secret starts, after ``=`` or ``:``."""
    end = _secret_assignment(text)
    return end if end is not None else _secret_colon(text)


def _secret_colon(text: str) -> int | None:
    """Where the value of ``--name:value`` starts if the name says secret
    (``--password:x``); None for any other word."""
    flag = _COLON_FLAG.match(text)
    if flag is None or flag.end() == len(text) or not _FLAG_SECRET.search(text, 0, flag.end() - 1):
        return None
    return flag.end()


def _secret_assignment(text: str) -> int | None:
    """Where the value of ``NAME=value`` starts if NAME says secret
    (``DB_PASSWORD=x``, ``--token=x``), also behind a flag that takes
    assignments (``--env=DB_PASSWORD=x``, ``--set-string=db.password=x``,
    ``-var=db_password=x``); None if it holds no such name."""
    first = _ASSIGNMENT.match(text)
    if first is None:
        return None
    if _FLAG_SECRET.search(text, 0, first.end() - 1):
        return first.end()
    second = _ASSIGNMENT.match(text, first.end()) if text.startswith("-") else None
    if second is not None and _FLAG_SECRET.search(text, second.start(), second.end() - 1):
        return second.end()
    return None


def _masked_value(text: str, end: int) -> str:
    """``text`` with what follows ``end`` masked, a quote opening it kept
    (and the second ``=`` of httpie's ``token==x``)."""
    value = text[end:]
    if value.startswith("="):
        end, value = end + 1, value[1:]
    return text[:end] + value[:len(value) - len(value.lstrip("'\""))] + MASK


def _port_or_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~/")) or _PORT_MAPPING.fullmatch(value) is not None


def _masked_user_password(value: str, separator: str = ":") -> str:
    user, found, _ = value.partition(separator)
    return f"{user}{separator}{MASK}" if found else value


def _header_value(name: str, value: str) -> str:
    """A header's value masked if ``name`` says secret, its Authorization scheme kept."""
    if not _FIELD_SECRET.search(name) or not value:
        return value
    scheme = _SCHEME_VALUE.fullmatch(value)
    if scheme is not None and scheme.group(1).lower() in _SCHEMES:
        return scheme.group(1) + scheme.group(2) + MASK
    return MASK


def _in_urls(word: str) -> str:
    """URL passwords (and ``user:password@host`` without a scheme), tokens as
    URL users, secret parameters, JSON Web Tokens, tokens known by their
    prefix and webhook URLs' paths masked."""
    if "@" in word:
        word = _URL_PASSWORD.sub(rf"\1:{MASK}@", word)
        word = _URL_USER_ONLY.sub(rf"\1{MASK}@", word)
        login = _BARE_LOGIN.match(word)
        if login is not None:
            word = f"{login.group(1)}:{MASK}@{word[login.end():]}"
    if "=" in word:
        word = _URL_PARAMETER.sub(
            lambda m: f"{m.group(1)}={MASK}" if _FIELD_SECRET.search(m.group(1)) else m.group(), word)
    if "eyJ" in word:
        word = _JWT.sub(MASK, word)
    if any(mark in word for mark in _TOKEN_MARKS):
        word = _KNOWN_TOKEN.sub(MASK, word)
    if "hooks" in word.lower():
        word = _WEBHOOK.sub(rf"\1{MASK}", word)
    return word


def _no_credential(text: str) -> bool:
    """A short lowercase word (``kubeadm token create``) or a path (``grep -r
    token src/``) after Bearer, Basic or Token: credentials hold digits,
    capitals or signs, and do not start as paths do."""
    return (text.isalpha() and text.islower() and len(text) <= 16) or text.startswith(("/", ".", "~")) \
        or text.endswith("/")


@attrs.define
class _HeaderValue:
    """Within a value that goes on over words of a nested line: a header's
    (``-H 'Authorization: Bearer x'``) or any masked one that opened a quote
    (``--password 'a b'``)."""

    quote: str
    """The quote the value opened with ("" for none: the value is one word)."""
    first: bool = True
    """No word of the value seen yet (a scheme is kept)."""


class _Setting(enum.Enum):
    """Where a line stands in ``config set KEY VALUE`` (``aws configure set``,
    ``npm config set``, redis-cli's ``CONFIG SET``): a value is a secret if its
    key says so, as a flag's is."""

    NONE = enum.auto()
    CONFIG = enum.auto()
    """The last word was ``config`` or ``configure``."""
    KEY = enum.auto()
    """The last words were ``config set`` (flags aside): this word is the key."""


_SETTING_WORDS = {"config": _Setting.CONFIG, "configure": _Setting.CONFIG, "CONFIG": _Setting.CONFIG,
                  "set": _Setting.KEY, "SET": _Setting.KEY}
"""The word that moves a line on to each setting; a ``set`` only after ``config``."""


@attrs.define
class _Batch:
    """htpasswd's words so far: under ``-b`` its password is its last word
    (``htpasswd -b file user ***``; ``-nb user ***`` writes no file). Every
    word after the user is masked: ``-C 10`` (a cost) shifts them by one, and
    a user masked costs less than a password shown."""

    batch: bool = False
    """A ``-b`` flag was seen (``-b``, ``-bc``, ``-nbB``)."""
    no_file: bool = False
    """A ``-n`` flag was seen: the user comes first."""
    words: int = 0
    """Its words that are not flags, so far."""

    def flag(self, text: str) -> None:
        if not text.startswith("--"):
            self.batch, self.no_file = self.batch or "b" in text, self.no_file or "n" in text

    def password_next(self) -> bool:
        """Counts a word that is not a flag: whether it is the password (or after it)."""
        self.words += 1
        return self.batch and self.words > (1 if self.no_file else 2)


@attrs.define
class _PendingLogin:
    """A tool with a ``login`` subcommand was named, and no word yet said whether it is login."""

    tool: _LoginTool
    after_flag: bool = False
    """The last word was a flag: the next may be its value (``docker --config /srv/ci login``)."""


@attrs.define
class _Walk:
    """One pass over a command line's words, carrying what a word says of the
    next (``--password`` of its value) and which tool's flags are in use."""

    takes: _Takes | None = None
    """What the next word is, as the flag before it said."""
    announced: bool = False
    """The previous word was Bearer, Basic or Token."""
    header: _HeaderValue | None = None
    tool: Mapping[str, _Flag] = attrs.field(factory=dict)
    command_words: int = 1
    """How many words to come may still name the command (and so a tool)."""
    login: _PendingLogin | None = None
    batch: _Batch | None = None
    """The current tool's words, when it is htpasswd."""
    setting: _Setting = _Setting.NONE
    nested: bool = False
    """The words are a shell line's (``sh -c``): their quotes are the shell's."""
    quoted: str = ""
    """In a nested line, the quote open after the last word."""

    def argument(self, arg: str, hinted: bool) -> str:
        """One argument of argv (``hinted``: it holds one of ``_HINTS``): a value
        may hold spaces (``-H "X-Api-Key: k"``, ``--password="a b"``), and is
        masked whole; any other argument with spaces is a line of its own
        (``sh -c "..."``)."""
        if self._nothing_said(arg, hinted):
            self._passing(arg)
            return arg
        if hinted and '"' in arg:
            arg = _json_secrets(arg)
        takes = self.takes
        if takes is _Takes.HEADER:
            self.takes = None
            masked = _header(arg, any_name=True)
            if masked is not None:
                return masked
        elif takes is not None and not arg.startswith("-"):
            self.takes = None
            return _taken(takes, arg)
        if _SPACE.search(arg) is None:
            return self.word(arg, hinted)
        self.takes = None
        flag, equals, _ = arg.partition("=")
        if arg.startswith("-") and (flag in self.tool if equals else self._attached_flag(arg)):
            return self._tool_flag("", arg, "")
        if _POSITIONAL in self.tool and not arg.startswith("-"):  # ``sqlplus "sys/pw as sysdba"``
            return self._tool_word(arg) or arg
        end = _secret_value(arg) if arg.startswith("-") else None  # ``NAME=x cmd``: a line
        if end is not None:
            return arg[:end] + MASK
        masked = _header(arg, any_name=False) if _SPACED_HEADER.match(arg) else None
        if masked is not None:
            return masked
        nested = _Walk(nested=True)  # its own tools and flags
        parts = _SPACES.split(arg)  # words, and the spaces between them
        hinted = _hinted_parts(_lowered(arg), list(itertools.accumulate((len(p) for p in parts[:-1]), initial=0)))
        return "".join([nested.word(part, n in hinted) if n % 2 == 0 else part for n, part in enumerate(parts)])

    def _nothing_said(self, word: str, hinted: bool | None) -> bool:
        """Whether no rule can mask anything in ``word``: nothing before it
        announced a value, it is no flag of the current tool, and it holds no
        hint (``hinted``; None: not known yet) -- most words of a line that
        holds one (``chromium --enable-features=...``)."""
        return (self.takes is None and self.header is None and not self.announced
                and not (self.tool and (word.startswith("-") or _POSITIONAL in self.tool
                                        or (_SLASHED in self.tool and word.startswith("/"))))
                and not (hinted if hinted is not None else _hinted(word)))

    def word(self, word: str, hinted: bool | None = None) -> str:
        """One word: an argument without spaces (``hinted``: whether it holds a
        hint), or a word of a nested line."""
        if self.nested and ("'" in word or '"' in word):
            self.quoted = _quote_after(word, self.quoted)
        if self._nothing_said(word, hinted):
            self._passing(word)
            return word
        shown = self._masked_word(word)
        if self.nested and self.quoted and self.header is None and shown != word:
            self.header = _HeaderValue(quote=self.quoted, first=False)  # the rest of the quote is the value
        if word.endswith(_SEPARATOR_ENDS):
            self._new_command(1)
        return shown

    def _passing(self, word: str) -> None:
        """Where a command stands, kept track of over a word no rule masks
        anything in (most words: this stays three tests for them)."""
        if self.login is not None and word not in _POSITION_WORDS:
            self._login_word(self.login, word)
        elif (self.command_words and not word.startswith("-")) or word in _POSITION_WORDS:
            self._command_word(word)
        if self.setting is not _Setting.NONE or word in _SETTING_WORDS:
            self._setting_word(word)
        if word.endswith(_SEPARATOR_ENDS):  # ``cd /srv; curl ...``
            self._new_command(1)

    def _setting_word(self, word: str) -> None:
        """Moves ``config set``'s setting on over a word no rule masks (flags keep it)."""
        if not word.startswith("-"):
            step = _SETTING_WORDS.get(word, _Setting.NONE)
            self.setting = step if step is not _Setting.KEY or self.setting is _Setting.CONFIG else _Setting.NONE

    def _new_command(self, words: int) -> None:
        """A command stands among the next ``words`` words: no tool's flags are in use."""
        self.tool, self.command_words, self.login, self.batch = {}, words, None, None
        self.setting = _Setting.NONE

    def _masked_word(self, word: str) -> str:
        lead, text, trail = _split_quotes(word)
        if self.header is not None:
            return lead + self._in_header(text, trail) + trail
        takes, self.takes = self.takes, None
        announced, self.announced = self.announced, False
        if takes is not None and not text.startswith("-"):
            if takes is not _Takes.HEADER:
                return lead + _taken(takes, text) + trail
            header = self._header_word(lead, text, trail, any_name=True)
            if header is not None:
                return lead + header + trail
        if announced and not text.startswith("-") and not _no_credential(text):
            return lead + MASK + trail
        return lead + self._plain(lead, text, trail) + trail

    def _command_word(self, text: str) -> bool:
        """Keeps track of where a command stands (a tool is one only there:
        ``docker run --name mongo`` names a container); whether ``text`` is a
        tool, now the current one."""
        if text in _COMMAND_STARTS or text in _RUNNERS:
            self._new_command(_RUNNER_WORDS if text in _RUNNERS else 1)
            return False
        if not self.command_words or _ASSIGNMENT.match(text):  # ``T=x curl``: the command follows
            return False
        self.command_words -= 1
        name = text.rpartition("/")[2]
        login = _LOGIN_TOOLS.get(name)
        if login is not None:
            self.tool, self.command_words, self.login = login.flags, 0, _PendingLogin(login)
            return True
        if _INTERPRETER.fullmatch(name) is not None:  # the script is the command
            self.command_words = 1
            return False
        tool = _tool(name)
        if tool is None:
            return False
        self.tool, self.command_words = tool, 0
        positional = tool.get(_POSITIONAL)
        self.batch = _Batch() if positional is not None and positional.takes is _Takes.BATCH_PASSWORD else None
        return True

    def _login_word(self, pending: _PendingLogin, text: str) -> None:
        """A word after the name of a tool with a ``login`` subcommand, until
        one says whether it is login: a word after a flag may be the flag's
        value, any other word names another subcommand (``docker run``)."""
        if text.startswith("-"):
            pending.after_flag = "=" not in text
        elif text == "login":
            self.tool, self.login = {**self.tool, **_LOGIN_FLAGS}, None
        elif pending.after_flag or text in pending.tool.before_login:
            pending.after_flag = False
        else:
            self.login = None

    def _plain(self, lead: str, text: str, trail: str) -> str:
        """A word that no word before it said anything of."""
        if self.login is not None and text not in _POSITION_WORDS:
            self._login_word(self.login, text)
        if text.startswith("-"):
            flag, equals, _ = text.partition("=")
            if flag in self.tool or self._attached_flag(text):
                return self._tool_flag(lead, text, trail)
            if self.batch is not None:
                self.batch.flag(text)
            end = _secret_colon(text)
            if end is not None:
                return _masked_value(text, end)
            if not equals:
                if _FLAG_SECRET.search(flag) and not flag.endswith("stdin"):  # ``--password-stdin`` takes none
                    self.takes = _Takes.SECRET  # ``--password x``: the next word
                return text
        else:
            setting, self.setting = self.setting, _Setting.NONE
            if setting is _Setting.KEY:  # ``aws configure set aws_secret_access_key ***``
                name, equals, _ = text.partition("=")
                if _FLAG_SECRET.search(name):
                    if equals:  # ``npm config set //registry/:_authToken=***``
                        return _masked_value(text, len(name) + 1)
                    self.takes = _Takes.SECRET
                    return text
            shown = self._tool_word(text) if self.tool else None
            if shown is not None:
                return shown
            if self._command_word(text):
                return text
        end = _secret_assignment(text)
        if end is not None:
            return _masked_value(text, end)
        if text.lower() in _ANNOUNCERS:
            self.announced = True
            return text
        # httpie's request items: ``Private-Token:x`` is a header whatever its name.
        header = self._header_word(lead, text, trail, any_name=self.tool is _HTTPIE)
        return header if header is not None else _in_urls(_in_options(text))

    def _tool_word(self, text: str) -> str | None:
        """A word of the current tool that is not a ``-`` flag, masked where
        the tool takes a secret so (``/p:x``, ``user/pw@db``, htpasswd's batch
        password); None where it does not."""
        if _SLASHED in self.tool and text.startswith("/"):
            name, colon, _ = text.partition(":")
            if colon and name + colon in self.tool:
                return name + colon + MASK
        positional = self.tool.get(_POSITIONAL)
        if positional is None:
            return None
        if positional.takes is _Takes.BATCH_PASSWORD:  # ``&&`` ends its words
            masked = text not in _POSITION_WORDS and self.batch is not None and self.batch.password_next()
            return MASK if masked else None
        shown = _taken(positional.takes, text)
        return shown if shown != text else None

    def _attached_flag(self, text: str) -> bool:
        """Whether ``text`` is a short flag of the current tool with its value attached (``-pSECRET``)."""
        flag = self.tool.get(text[:2])
        return flag is not None and not flag.separate_only

    def _tool_flag(self, lead: str, text: str, trail: str) -> str:
        """A flag of the current tool: ``-u user:pw``, ``-uuser:pw``,
        ``--user=user:pw``, ``-pSECRET``, ``--header=Name: value``, as an
        argument or a word (``lead`` and ``trail``: its quotes) whose value
        may open a quote (``-H'X-Api-Key: k'``)."""
        flag, equals, value = text.partition("=")
        known = self.tool.get(flag)
        if known is not None and not equals:  # the value is the next word
            if not known.attached_only:
                self.takes = known.takes
            return text
        if known is not None:
            prefix = flag + equals
        else:
            known, prefix, value = self.tool[text[:2]], text[:2], text[2:]  # ``-pSECRET``
        if known.takes is _Takes.HEADER and _SPACE.search(value) is not None:  # an argument: the whole header
            return prefix + (_header(value, any_name=True) or value)
        value_lead, value_text, value_trail = _split_quotes(value)
        if known.takes is not _Takes.HEADER:
            return prefix + value_lead + _taken(known.takes, value_text) + value_trail
        header = self._header_word(lead + value_lead, value_text, value_trail + trail, any_name=True)
        return prefix + (value if header is None else value_lead + header + value_trail)

    def _header_word(self, lead: str, text: str, trail: str, *, any_name: bool) -> str | None:
        """``Name:`` (its value follows) or ``Name:value`` with a secret name, as a
        word of a line; None if ``text`` is no such header. ``Name:value`` is a
        header only where a flag said so (``any_name``), or for Authorization,
        Cookie and ``X-...`` names: elsewhere it is far more often ``image:tag``
        or ``host:port``."""
        header = _HEADER.fullmatch(text)
        if header is None or not _FIELD_SECRET.search(header.group(1)):
            return None
        name, value = header.groups()
        quote = lead[-1:]
        closed = bool(quote) and quote in trail
        if not value:
            self.header = None if closed else _HeaderValue(quote=quote)
            return text
        lowered = name.lower()
        if not (any_name or lowered in ("authorization", "proxy-authorization", "cookie") or lowered.startswith("x-")):
            return None
        if value.lower() in _SCHEMES and not closed:
            self.header = _HeaderValue(quote=quote, first=False)
            return text
        return text[:header.start(2)] + MASK

    def _in_header(self, text: str, trail: str) -> str:
        """A word of a header's value: masked, but for a scheme first; the value
        ends with its closing quote (or, unquoted, after one word)."""
        assert self.header is not None
        scheme = self.header.first and text.lower() in _SCHEMES
        self.header.first = False
        if (self.header.quote in trail) if self.header.quote else not scheme:
            self.header = None
        return text if scheme or not text else MASK


def _taken(takes: _Takes, value: str) -> str:
    """A value a flag said is a secret (or ``user:password``), masked."""
    if takes is _Takes.USER_PASSWORD or (takes is _Takes.USER_PASSWORD_OR_TOKEN and ":" in value):
        return _masked_user_password(value)
    separator = _USER_SEPARATORS.get(takes)
    if separator is not None:
        return _masked_user_password(value, separator)
    if takes is _Takes.ORACLE_LOGIN:
        login = _ORACLE_LOGIN.match(value)
        return value if login is None else value[:login.start(1)] + MASK + value[login.end(1):]
    return value if takes is _Takes.PASSWORD and _port_or_path(value) else MASK


_USER_SEPARATORS = {_Takes.USER_COMMA_PASSWORD: ",", _Takes.USER_PERCENT_PASSWORD: "%"}
_ORACLE_LOGIN = re.compile(r"(?:userid=)?[^/\s@='\"]+/([^@\s'\"]+)", re.IGNORECASE)
"""``scott/tiger``, ``scott/tiger@db``, ``userid=scott/tiger``: not ``/nolog``,
``@script.sql`` nor ``control=a/b.ctl``. Matched at the start only."""
_OPTION = re.compile(r"(?<![^,])([A-Za-z_][\w.-]*)=([^,]*)")
"""An option of a comma-separated list (``-o username=u,password=x``): after
a comma or at the start only, so each position is tried once."""


def _in_options(word: str) -> str:
    """The options of a comma-separated list named like a secret, masked."""
    if "," not in word or "=" not in word:
        return word
    return _OPTION.sub(lambda m: f"{m.group(1)}={MASK}" if _FLAG_SECRET.search(m.group(1)) else m.group(), word)


def _header(arg: str, *, any_name: bool) -> str | None:
    """A whole argument ``Name: value`` with its value masked if its name says
    secret; None if it is no such header. ``Name:value`` (no space) counts only
    where a flag said a header comes (``any_name``)."""
    header = _HEADER.fullmatch(arg)
    if header is None or not _FIELD_SECRET.search(header.group(1)):
        return None
    if not any_name and not _SPACED_HEADER.match(arg):
        return None
    return arg[:header.start(2)] + _header_value(header.group(1), header.group(2))


def _tool(name: str) -> Mapping[str, _Flag] | None:
    """The secret-taking flags of the tool named ``name`` (no path), if any."""
    flags = _TOOL_FLAGS.get(name)
    if flags is None and name.startswith(_FAMILY_NAMES):
        family = next(family for family in _TOOL_FAMILIES if name.startswith(family))
        rest = name[len(family):]
        if not rest or rest.isalnum() or (family in _HYPHENATED_FAMILIES and rest[0] == "-"):
            flags = _TOOL_FAMILIES[family]
    return flags
