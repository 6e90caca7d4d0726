"""Which allocator ``trioscope serve`` runs and when it re-executes itself
(``trioscope.allocator.plan``: a pure function of the environment, the
libraries found and the files mapped)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from trioscope import allocator, cli
from trioscope.allocator import MARKER, Allocator, AllocatorUnavailable, find_libraries, plan, running

MIMALLOC = "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
BOTH = {Allocator.MIMALLOC: MIMALLOC, Allocator.JEMALLOC: JEMALLOC}
PYTHON_ONLY = {"/usr/bin/python3.11", "/usr/lib/x86_64-linux-gnu/libc.so.6"}


def test_auto_preloads_jemalloc_for_every_object_with_its_tuning() -> None:
    chosen = plan("auto", {"PATH": "/usr/bin"}, BOTH, PYTHON_ONLY)
    assert chosen.running.allocator is Allocator.PYMALLOC
    assert chosen.reexec_env is not None
    assert chosen.reexec_env["LD_PRELOAD"] == JEMALLOC
    assert chosen.reexec_env["PYTHONMALLOC"] == "malloc"
    assert chosen.reexec_env[MARKER] == "jemalloc"
    assert "background_thread:true" in chosen.reexec_env["MALLOC_CONF"]
    assert chosen.reexec_env["PATH"] == "/usr/bin"


def test_auto_without_jemalloc_stays_on_pymalloc_and_says_why() -> None:
    # mimalloc kept more after clients left than the target allows: only by name.
    for found in ({}, {Allocator.MIMALLOC: MIMALLOC}):
        chosen = plan("auto", {}, found, PYTHON_ONLY)
        assert chosen.reexec_env is None
        assert chosen.running.allocator is Allocator.PYMALLOC
        assert "no libjemalloc.so.2 installed" in chosen.reason


def test_mimalloc_asked_by_name_is_preloaded() -> None:
    chosen = plan("mimalloc", {}, BOTH, PYTHON_ONLY)
    assert chosen.reexec_env is not None
    assert chosen.reexec_env["LD_PRELOAD"] == MIMALLOC and chosen.reexec_env[MARKER] == "mimalloc"
    assert "MALLOC_CONF" not in chosen.reexec_env


def test_the_reexecuted_process_never_reexecutes_again() -> None:
    env = {MARKER: "jemalloc", "PYTHONMALLOC": "malloc", "LD_PRELOAD": JEMALLOC}
    chosen = plan("auto", env, BOTH, PYTHON_ONLY | {JEMALLOC})
    assert chosen.reexec_env is None
    assert chosen.running == allocator.Running(allocator=Allocator.JEMALLOC, library=JEMALLOC)
    # Even when the preload did not take (the library failed to load): it says so, once.
    failed = plan("jemalloc", env, BOTH, PYTHON_ONLY)
    assert failed.reexec_env is None
    assert failed.running.allocator is Allocator.MALLOC
    assert "not trying again" in failed.reason


def test_auto_leaves_a_pythonmalloc_set_by_whoever_started_it() -> None:
    chosen = plan("auto", {"PYTHONMALLOC": "pymalloc"}, BOTH, PYTHON_ONLY)
    assert chosen.reexec_env is None
    assert "PYTHONMALLOC=pymalloc" in chosen.reason


def test_a_name_that_is_not_installed_is_an_error_naming_the_key() -> None:
    with pytest.raises(AllocatorUnavailable, match=r"server.allocator: jemalloc: libjemalloc.so.2"):
        plan("jemalloc", {}, {Allocator.MIMALLOC: MIMALLOC}, PYTHON_ONLY)


def test_a_name_already_running_or_pymalloc_asked_under_pymalloc_does_nothing() -> None:
    env = {MARKER: "jemalloc", "PYTHONMALLOC": "malloc"}
    assert plan("jemalloc", env, BOTH, {JEMALLOC}).reexec_env is None
    assert plan("pymalloc", {}, BOTH, PYTHON_ONLY).reexec_env is None


def test_pymalloc_asked_under_a_c_allocator_reexecutes_with_pymalloc() -> None:
    chosen = plan("pymalloc", {"PYTHONMALLOC": "malloc"}, BOTH, PYTHON_ONLY)
    assert chosen.reexec_env is not None and chosen.reexec_env["PYTHONMALLOC"] == "pymalloc"


def test_preloads_already_set_and_tuning_set_by_hand_are_kept() -> None:
    env = {"LD_PRELOAD": "/opt/libfoo.so:/opt/libbar.so", "MALLOC_CONF": "narenas:1"}
    chosen = plan("jemalloc", env, BOTH, PYTHON_ONLY)
    assert chosen.reexec_env is not None
    assert chosen.reexec_env["LD_PRELOAD"] == f"{JEMALLOC} /opt/libfoo.so /opt/libbar.so"
    assert chosen.reexec_env["MALLOC_CONF"] == "narenas:1"


def test_running_is_read_from_pythonmalloc_and_the_mapped_library() -> None:
    mapped = PYTHON_ONLY | {"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}
    assert running({"PYTHONMALLOC": "malloc"}, mapped).allocator is Allocator.JEMALLOC
    assert running({}, mapped).allocator is Allocator.PYMALLOC  # preloaded, but Python's objects are pymalloc's
    assert running({"PYTHONMALLOC": "malloc"}, PYTHON_ONLY).allocator is Allocator.MALLOC
    real_name = "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0"
    assert running({"PYTHONMALLOC": "malloc_debug"}, {real_name}).library == real_name


def test_libraries_are_found_by_file_name(tmp_path: Path) -> None:
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    assert find_libraries([tmp_path / "missing", tmp_path]) == {Allocator.JEMALLOC: str(tmp_path / "libjemalloc.so.2")}
    assert find_libraries([]) == {}


def test_serve_falls_back_to_pymalloc_and_logs_why(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.delenv(MARKER, raising=False)
    monkeypatch.setattr(allocator._preload, "find_libraries", lambda dirs=None: {})
    monkeypatch.setattr(allocator, "reexec", lambda env: pytest.fail("re-executed"))
    caplog.set_level(logging.DEBUG, logger="trioscope")
    cli._use_allocator(allocator.plan_here("auto"), can_reexec=True)
    assert "allocator: pymalloc (auto: no libjemalloc.so.2 installed, so Python's own allocator" in caplog.text


def test_serve_refuses_an_allocator_asked_by_name_that_is_not_installed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(MARKER, raising=False)
    monkeypatch.setattr(allocator._preload, "find_libraries", lambda dirs=None: {})
    monkeypatch.setattr(allocator, "reexec", lambda env: pytest.fail("re-executed"))
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--allocator", "jemalloc", "--database", "sqlite:/nonexistent/x.db"])
    assert exited.value.code == 2
    assert "configuration error: server.allocator: jemalloc: libjemalloc.so.2 is not installed" in capsys.readouterr().err


def test_serve_called_in_process_is_not_replaced(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.delenv(MARKER, raising=False)
    monkeypatch.setattr(allocator._preload, "find_libraries", lambda dirs=None: {Allocator.JEMALLOC: JEMALLOC})
    monkeypatch.setattr(allocator, "reexec", lambda env: pytest.fail("re-executed"))
    caplog.set_level(logging.DEBUG, logger="trioscope")
    cli._use_allocator(allocator.plan_here("auto"), can_reexec=False)
    assert "not re-executed: called from another program" in caplog.text
