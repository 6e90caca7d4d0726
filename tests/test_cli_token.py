"""`trioscope token create`, run as a separate process as an operator would."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from trioscope.domain.principals import InvalidToken, Principal, Role, read_user_token
from trioscope.store import load_or_create_secret

SECRET = "a-configured-secret-of-more-than-32-characters"


def run_token_create(*args: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Only what Python needs, so the tester's own TRIOSCOPE_* variables cannot leak in.
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRIOSCOPE_")}
    env.update(environ or {})
    return subprocess.run(
        [sys.executable, "-m", "trioscope", "token", "create", *args],
        capture_output=True, text=True, env=env, timeout=60,
    )


def server_data_dir(path):
    """``path`` as the server leaves its data directory on first start: with its secret."""
    load_or_create_secret(path)
    return path


def good_args(data_dir, **overrides: str) -> list[str]:
    options = {"user": "alice", "tenant": "acme", "role": "OPERATOR", "ttl": "24h", "data-dir": str(data_dir)}
    options.update(overrides)
    return [part for name, value in options.items() for part in (f"--{name}", value)]


def test_prints_a_token_signed_with_the_servers_secret(tmp_path):
    data_dir = server_data_dir(tmp_path / "data")
    before = time.time()
    result = run_token_create(*good_args(data_dir))
    after = time.time()  # the token's clock read falls between (imports can take seconds)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (token,) = result.stdout.splitlines()
    assert result.stdout == token + "\n"
    secret = (data_dir / "jwt-secret").read_bytes().strip()
    assert read_user_token(secret, token, now=time.time()) == Principal("alice", "acme", Role.OPERATOR)
    # Valid for the ttl, not longer.
    assert read_user_token(secret, token, now=before + 24 * 3600 - 60).user_id == "alice"
    with pytest.raises(InvalidToken, match="expired"):
        read_user_token(secret, token, now=after + 24 * 3600 + 2)


def test_a_token_is_valid_for_a_day_unless_told_otherwise(tmp_path):
    data_dir = server_data_dir(tmp_path / "data")
    before = time.time()
    args = [a for a in good_args(data_dir) if a not in ("--ttl", "24h")]
    result = run_token_create(*args)
    after = time.time()
    assert result.returncode == 0, result.stderr
    secret = (data_dir / "jwt-secret").read_bytes().strip()
    token = result.stdout.strip()
    assert read_user_token(secret, token, now=before + 24 * 3600 - 60).user_id == "alice"
    with pytest.raises(InvalidToken, match="expired"):
        read_user_token(secret, token, now=after + 24 * 3600 + 2)


def test_secret_file_is_reused_and_left_as_it_is(tmp_path):
    data_dir = server_data_dir(tmp_path / "data")
    path = data_dir / "jwt-secret"
    secret = path.read_bytes()
    first = run_token_create(*good_args(data_dir))
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == secret
    second = run_token_create(*good_args(data_dir, role="viewer"))
    assert second.returncode == 0, second.stderr
    assert path.read_bytes() == secret
    principal = read_user_token(secret.strip(), second.stdout.strip(), now=time.time())
    assert principal.role is Role.VIEWER


def test_configured_secret_from_env_wins_and_no_file_is_made(tmp_path):
    data_dir = tmp_path / "data"
    result = run_token_create(*good_args(data_dir, role="ADMIN"), environ={"TRIOSCOPE_AUTH_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    assert read_user_token(SECRET.encode(), result.stdout.strip(), now=time.time()).role is Role.ADMIN
    assert not (data_dir / "jwt-secret").exists()


def test_data_dir_from_config_file(tmp_path):
    data_dir = server_data_dir(tmp_path / "from-file")
    config = tmp_path / "t.yaml"
    config.write_text(f"storage:\n  data_dir: {data_dir}\n")
    args = good_args(tmp_path)
    without_data_dir = args[: args.index("--data-dir")]
    result = run_token_create(*without_data_dir, "--config", str(config))
    assert result.returncode == 0, result.stderr
    secret = (data_dir / "jwt-secret").read_bytes().strip()
    assert read_user_token(secret, result.stdout.strip(), now=time.time()).user_id == "alice"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"role": "boss"}, "--role: unknown role 'boss'; use one of ADMIN, OPERATOR, VIEWER"),
        ({"ttl": "24"}, '--ttl: "24" has no unit; did you mean 24s?'),
        ({"ttl": "0s"}, "--ttl: 0s is not positive"),
        ({"ttl": "--ttl=-5s"}, '--ttl: "-5s" is negative; durations must be zero or more'),
        ({"ttl": "100ms"}, "--ttl: 100ms is out of range; allowed 1s..365d"),
        ({"ttl": "999ms"}, "--ttl: 999ms is out of range; allowed 1s..365d"),
        ({"ttl": "366d"}, "--ttl: 366d is out of range; allowed 1s..365d"),
        ({"ttl": "3000000d"}, "--ttl: 3000000d is out of range; allowed 1s..365d"),
        ({"user": ""}, "--user: '' must be 1-128 characters"),
        ({"tenant": "t" * 129}, f"--tenant: {'t' * 64!r} must be 1-128 characters"),
        # A dotless i is no i: str.upper made "admın" ADMIN.
        ({"role": "admın"}, "--role: unknown role 'admın'; use one of ADMIN, OPERATOR, VIEWER"),
        # A Latin-1 terminal's "jürg" on a UTF-8 machine: a token of it made the store's writes fail.
        ({"user": "j\udcffrg"}, "--user: 'j\\udcffrg' must be text (UTF-8): it holds bytes of another encoding"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, overrides, message):
    # Wherever the data directory is: arguments are checked before it is looked at.
    args = good_args(tmp_path / "missing", **overrides)
    if overrides.get("ttl", "").startswith("--ttl="):  # argparse reads a separate "-5s" as an option
        index = args.index("--ttl")
        args[index:index + 2] = [overrides["ttl"]]
    result = run_token_create(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"trioscope token create: {message}\n"


def test_bad_configuration_exits_2_without_showing_the_secret(tmp_path):
    result = run_token_create(*good_args(tmp_path / "data"), environ={"TRIOSCOPE_AUTH_SECRET": "hunter2"})
    assert result.returncode == 2
    assert result.stdout == ""
    assert "auth.secret" in result.stderr and "hunter2" not in result.stderr


@pytest.mark.parametrize(("ttl", "seconds"), [("1s", 1), ("365d", 365 * 86400)])
def test_the_ttl_limits_are_accepted(tmp_path, ttl, seconds):
    data_dir = server_data_dir(tmp_path / "data")
    before = time.time()
    result = run_token_create(*good_args(data_dir, ttl=ttl))
    assert result.returncode == 0, result.stderr
    secret = (data_dir / "jwt-secret").read_bytes().strip()
    assert read_user_token(secret, result.stdout.strip(), now=before - 1 + seconds).user_id == "alice"


def test_a_data_directory_that_does_not_exist_is_refused_and_not_made(tmp_path):
    mistyped = tmp_path / "typo" / "data"
    result = run_token_create(*good_args(mistyped))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"trioscope token create: no data directory {mistyped}: give the server's data "
                             "directory (the server creates it, with its jwt-secret, when it first starts)\n")
    assert not (tmp_path / "typo").exists()


def test_a_data_directory_that_is_a_file_is_said_so(tmp_path):
    """It said "no data directory afile", where serve says it is a file."""
    afile = tmp_path / "afile"
    afile.write_text("")
    result = run_token_create(*good_args(afile))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"trioscope token create: {afile} is a file, not a directory\n"


def test_a_data_directory_without_a_secret_is_refused_and_left_as_it_is(tmp_path):
    result = run_token_create(*good_args(tmp_path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"trioscope token create: no jwt-secret in the data directory {tmp_path}: give the "
                             "server's data directory, or start the server once with this one to generate it\n")
    assert list(tmp_path.iterdir()) == []


def test_a_configured_secret_needs_no_data_directory(tmp_path):
    result = run_token_create(*good_args(tmp_path / "missing"), environ={"TRIOSCOPE_AUTH_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    assert read_user_token(SECRET.encode(), result.stdout.strip(), now=time.time()).user_id == "alice"
    assert not (tmp_path / "missing").exists()
