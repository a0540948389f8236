"""``/health`` and ``hub status``'s view of the supervised tasks (no servers)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import msgspec

from eventlog.supervision import Supervisor, TaskHealth
from hub.entry.health import health_app, health_report
from hub.entry.status import Status, format_status

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


async def _get(supervisor: Supervisor) -> httpx.Response:
    transport = httpx.ASGITransport(app=health_app(supervisor))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
        return await c.get("/health")


async def test_health_is_503_with_the_cause_while_a_task_retries() -> None:
    retrying = asyncio.Event()

    async def sleep(seconds: float) -> None:
        retrying.set()
        await asyncio.Event().wait()

    supervisor = Supervisor(sleep=sleep, clock=lambda: NOW)

    async def runs() -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise ConnectionRefusedError("port 15432")

    tasks = [supervisor.spawn("relay", runs), supervisor.spawn("projection p", fails)]
    try:
        await retrying.wait()
        response = await _get(supervisor)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["tasks"] == [
        {
            "name": "projection p",
            "state": "retrying",
            "since": NOW.isoformat(),
            "last_error": "ConnectionRefusedError: port 15432",
            "failures": 1,
        },
        {
            "name": "relay",
            "state": "running",
            "since": NOW.isoformat(),
            "last_error": None,
            "failures": 0,
        },
    ]


async def test_health_is_200_when_every_task_runs() -> None:
    response = await _get(Supervisor())
    assert response.status_code == 200 and response.json() == {"ok": True, "tasks": []}


def test_status_lists_the_running_hubs_tasks_in_text_and_json() -> None:
    tasks = [
        TaskHealth("committer", "running", NOW),
        TaskHealth("relay", "retrying", NOW, last_error="OSError: down", failures=2),
    ]
    status = Status(
        head=3, consumers=[], tasks=health_report(tasks).tasks, health="url"
    )
    text = format_status(status)
    assert "tasks (url):" in text
    assert "retrying" in text and "failures 2, last: OSError: down" in text
    as_json = json.loads(json.dumps(msgspec.to_builtins(status)))
    assert [t["state"] for t in as_json["tasks"]] == ["running", "retrying"]
