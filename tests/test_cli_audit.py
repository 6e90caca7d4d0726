"""``trioscope audit`` on a database it cannot read: one line naming it, exit 1."""

from __future__ import annotations

from pathlib import Path

from tests.server_process import run_cli
from trioscope.store import AuditEntry, SqliteWriter


def test_a_data_dir_whose_store_is_no_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "trioscope.sqlite3").write_text("not a database\n")
    result = run_cli(["audit", "--data-dir", str(tmp_path)])
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"trioscope audit: cannot read {tmp_path / 'trioscope.sqlite3'}: file is not a database\n"


def test_a_database_without_trioscope_tables_is_one_line(postgres_url: str) -> None:
    result = run_cli(["audit", "--database", postgres_url])
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("trioscope audit: postgresql://") and "Traceback" not in result.stderr
    assert result.stderr.endswith(" holds no trioscope data (give the server's --data-dir or --database)\n")


def test_columns_escape_what_clients_wrote(tmp_path: Path) -> None:
    """A record's fields are partly a client's (its address, a resource id from
    a URL): an escape sequence in them must not reach the operator's terminal."""
    writer = SqliteWriter(tmp_path / "trioscope.sqlite3")
    try:
        entry = AuditEntry(at=1_800_000_000.0, tenant="t", actor="anonymous", action="auth.failed",
                           resource_type="command", resource_id="x\x1b[2J\u009b31m\nforged line", outcome="denied",
                           address="198.51.100.7")
        assert writer.commit([[entry]]) == [None]
    finally:
        writer.close()
    result = run_cli(["audit", "--data-dir", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "command:x\\x1b[2J\\x9b31m\\nforged line" in result.stdout
