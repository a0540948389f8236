"""The connectors' HTTP client against a loopback server that echoes requests.

The server is a few lines of asyncio: it answers each request with a JSON
body naming its method, target, content type and body, or (path ``/hold``)
leaves it unanswered until the client hangs up, so a timeout can be seen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from connectors.http import HttpClient, HttpError, HttpTimeoutError


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, target, _ = lines[0].split(" ")
            headers = {
                k.lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if target.startswith("/hold"):
                await reader.read()  # unanswered until the client hangs up
                return
            answer = json.dumps(
                {
                    "method": method,
                    "target": target,
                    "content_type": headers.get("content-type"),
                    "body": body.decode(),
                }
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def test_a_post_sends_its_json_and_query_and_reads_the_answer(
    echo_url: str,
) -> None:
    http = HttpClient(timeout=5.0)
    try:
        answer = await http.post(
            f"{echo_url}/api/x?v=1",
            params={"access_token": "a b/c"},
            json={"n": 12345678901234567890, "名": "值"},
            headers={"X-Request-Id": "r-1"},
        )
    finally:
        await http.aclose()
    echoed = answer.json()
    assert answer.status_code == 200
    assert echoed["method"] == "POST"
    assert echoed["target"] == "/api/x?v=1&access_token=a%20b%2Fc"
    assert echoed["content_type"] == "application/json"
    assert json.loads(echoed["body"]) == {"n": 12345678901234567890, "名": "值"}


async def test_a_form_is_sent_url_encoded(echo_url: str) -> None:
    http = HttpClient(timeout=5.0)
    try:
        answer = await http.post(f"{echo_url}/f", data={"param": '{"a":1}', "k": "v"})
    finally:
        await http.aclose()
    echoed = answer.json()
    assert echoed["content_type"] == "application/x-www-form-urlencoded"
    assert echoed["body"] == "param=%7B%22a%22%3A1%7D&k=v"


async def test_no_answer_in_time_is_a_timeout_without_the_query(
    echo_url: str,
) -> None:
    http = HttpClient(timeout=5.0)
    try:
        with pytest.raises(HttpTimeoutError) as caught:
            await http.get(
                f"{echo_url}/hold", params={"access_token": "secret"}, timeout=0.2
            )
    finally:
        await http.aclose()
    assert "/hold" in str(caught.value)
    assert "secret" not in str(caught.value)


async def test_a_refused_connection_is_an_http_error() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    http = HttpClient(timeout=5.0)
    try:
        with pytest.raises(HttpError) as caught:
            await http.get(f"http://127.0.0.1:{port}/x")
    finally:
        await http.aclose()
    assert not isinstance(caught.value, HttpTimeoutError)
