"""The probe's state directory is used only if no other user can change what
is in it: a world-writable one under /tmp let a local user have the probe,
as root, truncate a file, chmod and prune another directory, and load planted
credentials (a reviewer's). Run as whatever user the tests run as; another
user's ownership is made with os.chown where the tests run as root."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from trioscope_probe._agent import Credentials, check_writable, load_credentials, save_credentials
from trioscope_probe._executor import ControlError
from trioscope_probe._pending import PendingReports
from trioscope_probe.cli import _credentials

OTHER_UID = 54321
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


async def _enroll_in(state: Path) -> Credentials:
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"agent_id": "agent-1", "agent_token": "secret"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="http://server") as client:
        args = argparse.Namespace(state_dir=str(state), deployment_hash="dep", enrollment_token="tok",
                                  server="http://server")
        return await _credentials(client, args, ())


async def test_a_world_writable_state_dir_is_refused_naming_the_flag(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    with pytest.raises(ControlError, match=r"--state-dir .*state is writable by group or others \(mode 0777\)"):
        await _enroll_in(state)
    assert list(state.iterdir()) == []


async def test_a_state_dir_that_is_a_symbolic_link_another_user_could_change_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # another user could have put the link there, or swap it
    (shared / "state").symlink_to(tmp_path / "real")
    with pytest.raises(ControlError, match=r"--state-dir .* is a symbolic link .*writable by group or others"):
        await _enroll_in(shared / "state")
    assert list((tmp_path / "real").iterdir()) == []


@as_root
async def test_a_state_dir_that_is_another_users_symbolic_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(tmp_path / "real")
    os.chown(tmp_path / "state", OTHER_UID, -1, follow_symlinks=False)
    with pytest.raises(ControlError, match=rf"--state-dir .* is a symbolic link .*owned by uid {OTHER_UID}"):
        await _enroll_in(tmp_path / "state")


def test_a_state_dir_that_is_a_link_only_its_user_could_make_is_followed(tmp_path: Path) -> None:
    # systemd's DynamicUser= with StateDirectory=: /var/lib/NAME -> /var/lib/private/NAME.
    from trioscope_probe._state_dir import trusted_state_dir

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "probe").mkdir(mode=0o755)
    (tmp_path / "probe").symlink_to(private / "probe")
    assert trusted_state_dir(tmp_path / "probe") == (private / "probe").resolve()


def test_directories_made_above_a_state_dir_are_the_users_alone_whatever_the_umask(tmp_path: Path) -> None:
    # A user's umask 002 made ~/.local and ~/.local/state 0775: then refused as writable by the group.
    from trioscope_probe._state_dir import trusted_state_dir

    before = os.umask(0o002)
    try:
        state = trusted_state_dir(tmp_path / "home" / ".local" / "state" / "trioscope-probe")
    finally:
        os.umask(before)
    for level in (tmp_path / "home", tmp_path / "home" / ".local", tmp_path / "home" / ".local" / "state", state):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700, level


def test_a_directory_writable_by_the_users_private_group_only_is_the_users(tmp_path: Path) -> None:
    # Made by a umask of 002 on a system of user private groups (the group of
    # the user's name, no other member): as private as 0755.
    import grp
    import pwd

    from trioscope_probe._state_dir import trusted_state_dir

    user = pwd.getpwuid(os.geteuid())
    if grp.getgrgid(user.pw_gid).gr_name != user.pw_name or grp.getgrgid(user.pw_gid).gr_mem:
        pytest.skip("the user's primary group is not a private one here")
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o775)
    assert trusted_state_dir(home / "state").parent == home.resolve()


@as_root
async def test_a_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, OTHER_UID, -1)
    with pytest.raises(ControlError, match=f"--state-dir .* is owned by uid {OTHER_UID}"):
        await _enroll_in(state)


async def test_a_state_dir_under_a_directory_others_may_write_is_refused_but_not_under_a_sticky_one(
        tmp_path: Path) -> None:
    from trioscope_probe._state_dir import trusted_state_dir

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # another user could rename the state directory and put a link in its place
    with pytest.raises(ControlError, match="shared, above it, is writable by group or others without the sticky"):
        trusted_state_dir(shared / "state")
    shared.chmod(0o1777)  # as /tmp: nobody may rename another's entries
    assert trusted_state_dir(shared / "state") == (shared / "state").resolve()
    assert stat.S_IMODE((shared / "state").stat().st_mode) == 0o700


async def test_a_state_dir_reached_through_a_link_above_it_is_used_resolved(tmp_path: Path) -> None:
    from trioscope_probe._state_dir import trusted_state_dir

    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert trusted_state_dir(tmp_path / "link" / "state") == tmp_path.resolve() / "real" / "state"


@as_root
def test_credentials_planted_by_another_user_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    save_credentials(path, Credentials("dep", "agent-evil", "planted"))
    os.chown(path, OTHER_UID, -1)
    with pytest.raises(ControlError, match=f"is owned by uid {OTHER_UID}"):
        load_credentials(path, "dep")


def test_credentials_others_may_read_or_a_link_to_them_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    save_credentials(path, Credentials("dep", "agent-1", "token-1"))
    path.chmod(0o644)
    with pytest.raises(ControlError, match=r"may be read or written by group or others \(mode 0644\)"):
        load_credentials(path, "dep")
    path.chmod(0o600)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "credentials.json").symlink_to(path)
    with pytest.raises(ControlError, match="is a symbolic link"):
        load_credentials(tmp_path / "state" / "credentials.json", "dep")


def test_the_write_test_never_writes_through_a_link_planted_at_its_name(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / f".write-test.{os.getpid()}").symlink_to(victim)  # the name the probe used to write
    check_writable(state)
    assert victim.read_text() == "precious"


def test_kept_reports_are_never_chmod_nor_pruned_through_a_link(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir(mode=0o755)
    for name in ("a.json", "b.partial", *(f"r{n}.json" for n in range(70))):
        (other / name).write_text("{}")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "pending-reports").symlink_to(other)
    pending = PendingReports(state / "pending-reports")
    pending.keep("cmd_1", b'{"command_id": "cmd_1"}')
    assert pending.waiting() == []
    assert stat.S_IMODE(other.stat().st_mode) == 0o755 and len(list(other.iterdir())) == 72


def test_a_kept_report_that_is_a_link_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"command_id": "cmd_1", "status": "completed", "result": {"shadow": "x"}}))
    kept = tmp_path / "pending-reports"
    kept.mkdir(mode=0o700)
    (kept / "0123.json").symlink_to(secret)
    pending = PendingReports(kept)
    assert [pending.read(path) for path in pending.waiting()] == [None]


def test_the_probe_refuses_a_world_writable_state_dir_at_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIOSCOPE_PROBE")}
    result = subprocess.run(
        [sys.executable, "-m", "trioscope_probe", "--server", "http://127.0.0.1:9", "--deployment-hash", "dep",
         "--state-dir", str(state), "--no-processes", "--no-connections"], capture_output=True, text=True,
        timeout=60, env={**clean, "TRIOSCOPE_PROBE_ENROLLMENT_TOKEN": "tok"})
    assert result.returncode == 2, result.stderr
    assert f"--state-dir {state} is writable by group or others (mode 0777)" in result.stderr, result.stderr


def _no_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container's user: HOME unset and no entry in the password file."""
    import pwd

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(RuntimeError):
        Path("~/x").expanduser()


def test_the_default_state_dir_with_no_home_directory_is_one_line_naming_the_flag(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """It was a traceback (RuntimeError: Could not determine home directory) out of the probe's start."""
    from trioscope_probe._state_dir import trusted_state_dir

    _no_home(monkeypatch)
    with pytest.raises(ControlError, match="no home directory .* give --state-dir .*TRIOSCOPE_PROBE_STATE_DIR"):
        trusted_state_dir(Path("~/.local/state/trioscope-probe"))
