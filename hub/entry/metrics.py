"""``GET /metrics`` on the hub's HTTP port, in the Prometheus text format.

What it shows:

* ``hub_log_head``: position of the newest event in the log;
* ``hub_consumer_position``, ``hub_consumer_lag_events`` and
  ``hub_consumer_lag_seconds`` for each projection, process manager and the
  relay (label ``consumer``), as ``hub status`` reads them;
* ``hub_stock_pushes`` per platform and status (``requested`` and ``failed``
  are the outbound queue, ``dead_lettered`` the dead letters);
* ``hub_webhook_requests_total`` per platform and answer status;
* ``hub_commit_batch_events`` and ``hub_commit_latency_seconds``: histograms
  of the events in each durable batch and of the time from a batch's decision
  to its being durable.

The format is a handful of lines (no client library needed): ``# HELP``,
``# TYPE``, then one sample per line.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.events import Event
from hub.entry.status import read_status
from hub.service.hub import Hub

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Upper bounds of the batch size buckets (events).
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
#: Upper bounds of the commit latency buckets (seconds).
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)

WEBHOOK_PREFIX = "/webhooks/"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: dict[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in pairs.items()) + "}"


@dataclass
class Histogram:
    """A cumulative histogram in Prometheus' sense: buckets, sum and count."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        """One count per bound, and one for +Inf."""
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        """The histogram's samples."""
        out = []
        running = 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{le="{le}"}} {running}')
        out += [f"{name}_sum {self.total:g}", f"{name}_count {self.count}"]
        return out


class CommitMetrics:
    """Sizes and latencies of durable batches (a committer listener).

    The latency is the time from the batch's decision (its events' time) to
    the moment the listener hears it is durable.
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.sizes = Histogram(BATCH_BUCKETS)
        self.latencies = Histogram(LATENCY_BUCKETS)
        self._clock = clock or (lambda: datetime.now(UTC))

    def __call__(self, events: Sequence[Event]) -> None:
        """Count one durable batch."""
        if not events:
            return
        self.sizes.observe(len(events))
        decided = events[-1].occurred_at
        self.latencies.observe(max((self._clock() - decided).total_seconds(), 0.0))


@dataclass
class WebhookCounts:
    """Webhook answers by platform and status."""

    answered: dict[tuple[str, int], int] = field(default_factory=dict)

    def count(self, platform: str, status: int) -> None:
        """Count one answer."""
        key = (platform, status)
        self.answered[key] = self.answered.get(key, 0) + 1


#: The process's webhook counts (as a metrics library keeps one registry).
WEBHOOKS = WebhookCounts()
#: Each committer's batch metrics, by the committer's id.
_COMMITS: dict[int, CommitMetrics] = {}


class CountWebhooks:
    """ASGI middleware counting each ``/webhooks/<platform>`` answer in
    :data:`WEBHOOKS`."""

    def __init__(self, app: ASGIApp, counts: WebhookCounts | None = None) -> None:
        self.app = app
        self.counts = counts or WEBHOOKS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count the status its answer starts with."""
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not path.startswith(WEBHOOK_PREFIX):
            await self.app(scope, receive, send)
            return
        platform = path[len(WEBHOOK_PREFIX) :].split("/", 1)[0] or "-"

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.counts.count(platform, int(message["status"]))
            await send(message)

        await self.app(scope, receive, counted)


def commit_metrics(hub: Hub) -> CommitMetrics:
    """The batch metrics of ``hub``'s committer (listening from the first call;
    a stand-in hub without a committer gets metrics that stay empty)."""
    committer = getattr(hub, "committer", None)
    key = id(committer)
    if key not in _COMMITS:
        _COMMITS[key] = CommitMetrics()
        if committer is not None:
            committer.listen(_COMMITS[key])
    return _COMMITS[key]


async def stock_push_counts(database_url: str) -> list[tuple[str, str, int]]:
    """Stock pushes per platform and status: ``(platform, status, count)``."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT to_regclass('stock_pushes') IS NOT NULL")
        row = await cur.fetchone()
        if not row or not row[0]:
            return []
        cur = await conn.execute(
            "SELECT platform, status, count(*) FROM stock_pushes "
            "GROUP BY platform, status ORDER BY platform, status"
        )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in await cur.fetchall()]


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


async def render(
    hub: Hub, commits: CommitMetrics, webhooks: WebhookCounts = WEBHOOKS
) -> str:
    """Every metric of the hub, in the Prometheus text format."""
    status = await read_status(hub.database_url, hub.nats_url)
    lines = _family("hub_log_head", "gauge", "Position of the newest event.")
    lines.append(f"hub_log_head {status.head}")
    for name, attr, help_text in (
        ("hub_consumer_position", "position", "Last log position a consumer did."),
        ("hub_consumer_lag_events", "events_behind", "Events a consumer is behind."),
        (
            "hub_consumer_lag_seconds",
            "seconds_behind",
            "Age of the oldest event a consumer has not done.",
        ),
    ):
        lines += _family(name, "gauge", help_text)
        lines += [
            f"{name}{_labels({'consumer': c.name})} {getattr(c, attr):g}"
            for c in status.consumers
        ]
    lines += _family(
        "hub_stock_pushes",
        "gauge",
        "Stock pushes by platform and status (requested and failed: queued).",
    )
    lines += [
        f"hub_stock_pushes{_labels({'platform': p, 'status': s})} {n}"
        for p, s, n in await stock_push_counts(hub.database_url)
    ]
    lines += _family(
        "hub_webhook_requests_total",
        "counter",
        "Webhook requests answered, by platform and status.",
    )
    lines += [
        f"hub_webhook_requests_total{_labels({'platform': p, 'status': str(s)})} {n}"
        for (p, s), n in sorted(webhooks.answered.items())
    ]
    lines += _family("hub_commit_batch_events", "histogram", "Events per batch.")
    lines += commits.sizes.lines("hub_commit_batch_events")
    lines += _family(
        "hub_commit_latency_seconds",
        "histogram",
        "Seconds from a batch's decision to its being durable.",
    )
    lines += commits.latencies.lines("hub_commit_latency_seconds")
    return "\n".join(lines) + "\n"


def metrics_endpoint(hub: Hub) -> Callable[[Request], Awaitable[Response]]:
    """The ``GET /metrics`` endpoint of ``hub``."""
    commits = commit_metrics(hub)

    async def metrics(request: Request) -> Response:
        return Response(await render(hub, commits), media_type=CONTENT_TYPE)

    return metrics
