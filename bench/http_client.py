"""HTTP client benchmark: the connectors' client against httpx, CPU per call.

The connectors make thousands of small platform calls a minute in a flash sale
(a signed query string, a JSON body of a few hundred bytes, a JSON answer), so
the client's own CPU per call is a cost per order. This bench sends the same
call, eight at a time on keep-alive connections, with
:class:`connectors.http.HttpClient` (aiohttp underneath; what the connectors
use) and with ``httpx.AsyncClient`` (what they used before), alternating the two
``--rounds`` times in one process on uvloop, against one loopback server in a
child process (uvicorn, answering a WeChat-sized JSON body). It reports the
client process's CPU (user + system) per call, the median of the rounds, and
the ratio ours / httpx; the server's CPU is not counted.

Usage: ``python bench/http_client.py [--calls N] [--rounds R]``. The last line
printed is one JSON object: ``hub_client_cpu_us_per_call``,
``httpx_cpu_us_per_call`` and ``ratio_vs_httpx``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.http import HttpClient

IN_FLIGHT = 8
BODY = {
    "order_id": "3705115058471208928",
    "sku_id": "1001",
    "product_id": "2001",
    "diff_type": 2,
    "num": 1,
}
ANSWER = json.dumps(
    {
        "errcode": 0,
        "errmsg": "ok",
        "order": {
            "order_id": "3705115058471208928",
            "status": 20,
            "product_infos": [{"sku_id": "1001", "sku_cnt": 2, "sale_price": 1990}],
        },
    }
).encode()


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Answer every request with :data:`ANSWER` (the server side)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(ANSWER)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


def serve(port: int) -> None:
    """Run the server (in the child process)."""
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _cpu_per_call(call: Callable[[], Awaitable[None]], calls: int) -> float:
    """Microseconds of this process's CPU per call, ``IN_FLIGHT`` at a time."""
    await asyncio.gather(*(call() for _ in range(IN_FLIGHT)))  # connections up
    started = time.process_time()
    for _ in range(calls // IN_FLIGHT):
        await asyncio.gather(*(call() for _ in range(IN_FLIGHT)))
    return (time.process_time() - started) * 1e6 / (calls // IN_FLIGHT * IN_FLIGHT)


async def measure(url: str, calls: int, rounds: int) -> dict[str, list[float]]:
    """Both clients, alternating, ``rounds`` times each."""
    params = {"access_token": "t" * 32}
    headers = {"X-Request-Id": "bench-0001"}
    ours = HttpClient(timeout=10.0)
    theirs = httpx.AsyncClient(timeout=10.0)

    async def ours_call() -> None:
        answer = await ours.post(url, params=params, json=BODY, headers=headers)
        answer.json()

    async def httpx_call() -> None:
        answer = await theirs.post(url, params=params, json=BODY, headers=headers)
        answer.json()

    results: dict[str, list[float]] = {"hub": [], "httpx": []}
    try:
        for _ in range(rounds):
            results["hub"].append(await _cpu_per_call(ours_call, calls))
            results["httpx"].append(await _cpu_per_call(httpx_call, calls))
    finally:
        await ours.aclose()
        await theirs.aclose()
    return results


async def _wait_listening(port: int, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)  # polling under the deadline above
                continue
            writer.close()
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="calls a round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
    )
    try:
        url = f"http://127.0.0.1:{port}/channels/ec/order/get"

        async def run() -> dict[str, list[float]]:
            await _wait_listening(port)
            return await measure(url, args.calls, args.rounds)

        results = uvloop.run(run())
    finally:
        server.terminate()
        server.wait(timeout=30)
    hub = statistics.median(results["hub"])
    theirs = statistics.median(results["httpx"])
    for name, values in results.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name}: CPU µs per call, each round: {shown}")
    print(
        json.dumps(
            {
                "hub_client_cpu_us_per_call": round(hub, 1),
                "httpx_cpu_us_per_call": round(theirs, 1),
                "ratio_vs_httpx": round(hub / theirs, 3),
                "calls_per_round": args.calls,
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
