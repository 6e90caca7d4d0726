"""``trioscope audit`` on a database it cannot read: one line naming it, exit 1."""

from __future__ import annotations

from pathlib import Path

from tests.server_process import run_cli


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
