"""Live container logs (issue 22, item 7): what a batch of log lines costs,
from the agent's signed POST to the last ``log_entry`` event on a user's
/ws/user socket, against the same signed POST with no lines (the request, its
signature check and the follows actor's ask: the part a batch costs anyway),
measured in the same run, alternating, median of the rounds' ratios.

    .venv/bin/python bench/live_logs.py [--lines 200] [--batches 50] [--rounds 7]

Each line is ~100 bytes; the server runs with limits high enough to pass them all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
import trio
from trio_websocket import open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.test_commands import Operator, enroll  # noqa: E402  # after the path is set
from tests.server_process import ServerProcess  # noqa: E402

LOGS = "/api/v1/agent/commands/logs"


def entries(count: int, round_: int) -> list[dict[str, str]]:
    return [{"timestamp": "2026-12-02T11:00:00.123456Z", "level": "info", "source": "stdout",
             "message": f"round {round_} line {i:05d} " + "x" * 70} for i in range(count)]


async def main(lines: int, batches: int, rounds: int) -> None:
    flags = ["--log-follow-lines-per-second", "100000", "--log-follow-max-bytes", "1GiB",
             "--log-follow-max-duration", "1h", "--rate-per-agent", "1000000", "--ws-buffer-size", "4096"]
    with ServerProcess(flags) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator = Operator(server, "bench", "bench")
            agent = await enroll(client, server, operator)
            hash_ = agent.deployment_hash
            created = await client.post(operator.url(hash_, "/commands"), headers=operator.auth, json={
                "type": "docker.logs", "parameters": {"container": "web", "follow": True}, "timeout_seconds": 3600})
            command_id = created.json()["command_id"]
            token = operator.auth["Authorization"][7:]
            url = server.base_url.replace("http://", "ws://") + f"/ws/user/{operator.user_id}"
            async with open_websocket_url(url, subprotocols=["trioscope", f"bearer.{token}"]) as ws:
                async def post(batch: list[dict[str, str]]) -> None:
                    response = await agent.signed_post(client, LOGS, {"command_id": command_id,
                                                                      "deployment_hash": hash_, "entries": batch})
                    assert response.status_code == 200 and response.json()["accepted"] == len(batch), response.text

                async def with_lines(round_: int) -> float:
                    batch = entries(lines, round_)
                    started = time.perf_counter()
                    for _ in range(batches):
                        await post(batch)
                        seen = 0
                        while seen < lines:
                            if json.loads(await ws.get_message())["type"] == "log_entry":
                                seen += 1
                    return (time.perf_counter() - started) / batches

                async def empty() -> float:
                    started = time.perf_counter()
                    for _ in range(batches):
                        await post([])
                    return (time.perf_counter() - started) / batches

                await with_lines(-1)  # warm-up
                ratios, full, bare = [], [], []
                for round_ in range(rounds):
                    a = await empty()
                    b = await with_lines(round_)
                    bare.append(a)
                    full.append(b)
                    ratios.append(b / a)
            print(f"empty batch        {statistics.median(bare) * 1000:7.2f} ms per POST (median of {rounds})")
            print(f"{lines}-line batch    {statistics.median(full) * 1000:7.2f} ms from POST to the last event "
                  f"on /ws/user ({lines / statistics.median(full):,.0f} lines/s through one follow)")
            extra = (statistics.median(full) - statistics.median(bare)) / lines
            print(f"ratio {statistics.median(ratios):.2f}x of an empty batch (median of the rounds' ratios); "
                  f"about {extra * 1e6:.0f} us per line beyond the request")
            errors = [line for line in server.stderr().splitlines() if " ERROR " in line]
            print(f"server ERROR lines: {len(errors)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    trio.run(main, args.lines, args.batches, args.rounds)
