"""The web UI's files against a real server: served from memory by exact name,
with an ETag, never a 500 for an odd name or range."""

from __future__ import annotations

import httpx

from tests.server_process import ServerProcess


def test_odd_names_and_ranges_get_the_file_or_a_404_never_a_500() -> None:
    """A name over 255 bytes raised OSError on disk; a suffix range and one past
    2^64 raised in werkzeug and h11: each a 500 and a traceback in the log."""
    with ServerProcess() as server, httpx.Client(base_url=server.base_url) as client:
        script = client.get("/ui/js/main.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert "script-src 'self'" in script.headers["Content-Security-Policy"]
        for path in ("/ui/" + "a" * 300, "/ui/" + "a/" * 3000, "/ui/js", "/ui/../_ui.py", "/ui/%2e%2e/_ui.py"):
            missing = client.get(path)
            assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found"), path[:40]
        for path in ("/", "/docs", "/ui/js/main.js"):
            for byte_range in ("bytes=-1", "bytes=0-99999999999999999999", "bytes=5-1"):
                whole = client.get(path, headers={"Range": byte_range})
                assert whole.status_code == 200 and whole.content == client.get(path).content, (path, byte_range)
        again = client.get("/ui/js/main.js", headers={"If-None-Match": script.headers["ETag"]})
        assert (again.status_code, again.content) == (304, b"")
        assert "Traceback" not in server.stderr()
