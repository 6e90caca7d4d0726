"""A database or bus location's secrets are never written where an operator's
terminal or a log sees them: a password in the user part, one given as a
parameter (``?password=``, libpq's ``password=`` keyword), a NATS token in the
user part, and what a driver's error quotes of a location it could not parse."""

from __future__ import annotations

import pytest

from tests.server_process import ServerProcess, run_cli
from tests.waiting import eventually
from trioscope.config import hide_passwords, mask_passwords
from trioscope.config._kinds import mask_password


@pytest.mark.parametrize(("location", "shown"), [
    ("postgresql://ops:S3cret@db:5432/x", "postgresql://ops:***@db:5432/x"),
    ("postgresql://ops:S3cret@db/x?password=An0ther", "postgresql://ops:***@db/x?password=***"),
    ("postgresql://db/x?sslmode=require&password=An0ther&connect_timeout=3",
     "postgresql://db/x?sslmode=require&password=***&connect_timeout=3"),
    ("host=db dbname=x user=ops password=S3cret", "host=db dbname=x user=ops password=***"),
    ("host=db password='S3 cret' user=ops", "host=db password=*** user=ops"),
    ("host=db sslpassword=S3cret", "host=db sslpassword=***"),
    ("postgresql://ops@db/x", "postgresql://ops@db/x"),
    # libpq decodes a parameter's name, and a quote is part of a URL's value.
    ("postgresql://ops@db/x?pass%77ord=S3cret", "postgresql://ops@db/x?pass%77ord=***"),
    ("postgresql://ops@db/x?%70assword=S3cret&sslmode=require", "postgresql://ops@db/x?%70assword=***&sslmode=require"),
    ("postgresql://ops@db/x?password=S3'cret", "postgresql://ops@db/x?password=***"),
    ('postgresql://ops@db/x?password="S3cret"', "postgresql://ops@db/x?password=***"),
])
def test_a_database_location_is_shown_without_its_passwords(location: str, shown: str) -> None:
    assert mask_password(location) == shown


def test_a_nats_token_in_the_user_part_is_masked_whole() -> None:
    assert mask_passwords("nats://T0ken@a:4222,nats://u:pw@b:4222,nats://c:4222") == \
        "nats://***@a:4222,nats://u:***@b:4222,nats://c:4222"


@pytest.mark.parametrize(("error", "location"), [
    ('unexpected spaces found in "Sp ace S3cret"', "postgresql://ops:Sp ace S3cret@db/x"),
    ('missing "]" in URI: "postgresql://[::1:5433/x?password=S3cret"', "postgresql://[::1:5433/x?password=S3cret"),
    ("password authentication failed: p@ss S3cret", "postgresql://ops:p%40ss%20S3cret@db/x"),
    ('invalid percent-encoded token: "pass%77ord=S3cret"', "postgresql://ops@db/x?pass%77ord=S3cret"),
])
def test_what_a_driver_quotes_of_a_location_is_hidden(error: str, location: str) -> None:
    hidden = hide_passwords(error, location)
    assert "S3cret" not in hidden and "***" in hidden


@pytest.mark.parametrize(("location", "code", "said"), [
    # Printed, masked, in the configuration's table...
    ("postgresql://ops:S3cret@127.0.0.1:5432/x?password=An0ther", 0,
     "postgresql://ops:***@127.0.0.1:5432/x?password=***"),
    # ...and refused (libpq's keyword form is no location here), masked in the refusal.
    ("host=127.0.0.1 port=5432 dbname=x user=ops password=S3cret", 2,
     "host=127.0.0.1 port=5432 dbname=x user=ops password=*** from flag --database names no known database"),
])
def test_print_config_and_refusals_show_no_database_password(location: str, code: int, said: str) -> None:
    result = run_cli(["serve", "--database", location, "--print-config"])
    everything = result.stdout + result.stderr
    assert result.returncode == code, everything
    assert said in everything, everything
    assert "S3cret" not in everything and "An0ther" not in everything


def test_a_database_location_libpq_cannot_parse_is_refused_without_its_password(tmp_path) -> None:
    result = run_cli(["serve", "--port", "0", "--host", "127.0.0.1", "--local-probe", "false",
                      "--data-dir", str(tmp_path), "--database", "postgresql://ops:Sp ace S3cret@127.0.0.1:1/x"],
                     timeout=60)
    assert result.returncode == 1, result.stderr
    assert "cannot use the database" in result.stderr and "S3cret" not in result.stderr, result.stderr


async def test_a_bus_token_is_never_logged() -> None:
    """A NATS server that is not there: the server starts (not ready) and says so, with the token masked."""
    with ServerProcess(["--bus", "nats://T0kenS3cret@127.0.0.1:1", "--local-probe", "false"]) as server:
        async def said() -> bool:
            return "cannot reach the bus at nats://***@127.0.0.1:1" in server.stderr()
        await eventually(said, 60)
        printed = run_cli(["serve", "--bus", "nats://T0kenS3cret@127.0.0.1:1", "--print-config"])
    assert printed.returncode == 0, printed.stderr
    assert "nats://***@127.0.0.1:1" in printed.stdout, printed.stdout
    assert "T0kenS3cret" not in server.stderr() + printed.stdout + printed.stderr
