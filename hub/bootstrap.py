"""The composition root: builds the hub from settings, and nothing else does.

Keyword arguments carry production defaults; tests call :func:`bootstrap` with
their own servers, clock and id factory. Nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from connectors.transport import TokenStore
from domain.events import DomainError
from domain.policy import PolicyBook
from hub.commands import CommandDecodeError, command_rules, decode_command
from hub.commit import GroupCommitter, Outcome, utc_now
from hub.connectors import Connectors, ConnectorsConfig
from hub.inbound import OrderIntake
from hub.messages import CommandReply, ErrorInfo, event_type
from hub.migrate import migrate
from hub.outbound import DEFAULT_MAX_ROUNDS, LedgerStore, OutboundDispatcher
from hub.platforms import Platforms
from hub.policies import load_policy_book
from hub.processes import ProcessRunner, default_processes
from hub.relay import Relay
from hub.settings import eventsourcing_env
from hub.store import HubApplication
from hub.sync import PollCursors, SyncScheduler
from projections.base import Projection, ProjectionRunner
from projections.bindings import BindingsProjection
from projections.inventory import InventoryProjection, StockDriftProjection
from projections.orders import OrdersProjection
from projections.stock import StockOnHandProjection
from projections.stock_pushes import StockPushesProjection


def default_projections(policy_book: PolicyBook | None = None) -> list[Projection]:
    """Every read model the hub keeps.

    ``policy_book`` (default: the bundled one) gives the holiday calendar that
    review due dates are counted in.
    """
    book = load_policy_book() if policy_book is None else policy_book
    return [
        StockOnHandProjection(),
        BindingsProjection(calendar=book.holiday_calendar),
        InventoryProjection(),
        OrdersProjection(),
        StockDriftProjection(),
        StockPushesProjection(),
    ]


@dataclass
class Hub:
    """A running hub: store, committer, relay, projections and process managers.

    Use :meth:`execute` (typed commands) or :meth:`handle` (name + JSON bytes,
    as NATS and the CLI do).
    """

    database_url: str
    nats_url: str | None
    app: HubApplication
    committer: GroupCommitter
    relay: Relay | None
    projections: list[ProjectionRunner] = field(default_factory=list)
    #: Process managers (:mod:`hub.processes`): they follow the log and run
    #: commands through :attr:`committer`.
    processes: list[ProjectionRunner] = field(default_factory=list)
    #: The platform policy book the binding rules read (default: bundled).
    policy_book: PolicyBook | None = None
    #: Each command's rules, those that read the policy book reading this one's.
    rules: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Load the bundled policy book and bind the rules when not given."""
        if self.policy_book is None:
            self.policy_book = load_policy_book()
        if not self.rules:
            self.rules = command_rules(self.policy_book)

    async def start(self) -> None:
        """Start committing, relaying, projecting and the process managers."""
        await self.committer.start()
        if self.relay is not None:
            await self.relay.start()
        for runner in self.projections:
            await runner.start()
        for process in self.processes:
            await process.start()

    async def stop(self) -> None:
        """Stop everything started, finishing queued commands first.

        The process managers stop first: what they had queued is committed,
        and what they had not yet tracked they handle again on the next start.
        """
        for process in self.processes:
            await process.stop()
        await self.committer.stop()
        for runner in self.projections:
            await runner.stop()
        if self.relay is not None:
            await self.relay.stop()
        await asyncio.to_thread(self.app.close)

    async def execute(self, name: str, command: msgspec.Struct) -> Outcome:
        """Run a typed command; return once its events are durable."""
        return await self.committer.execute(self.rules[name], command)

    def submit(self, name: str, command: msgspec.Struct) -> asyncio.Future[Outcome]:
        """Queue a typed command now; its future resolves once its events are
        durable (or raises its refusal).

        The pipelined form of :meth:`execute` for an in-process caller with
        many commands in flight (as JetStream's ``publish_async`` is for
        publishing): no task per command, so keeping thousands in flight costs
        a future each. Commands submitted one after another are decided in that
        order.
        """
        return self.committer.submit(self.rules[name], command)

    async def handle(self, name: str, payload: bytes) -> CommandReply:
        """Decode, run and answer one command; never raises for bad input."""
        try:
            command = decode_command(name, payload)
            outcome = await self.execute(name, command)
        except CommandDecodeError as exc:
            return CommandReply(
                ok=False, error=ErrorInfo(code=exc.code, message=str(exc))
            )
        except DomainError as exc:
            return CommandReply(
                ok=False, error=ErrorInfo(code=exc.code, message=str(exc))
            )
        return CommandReply(
            ok=True,
            aggregate_id=outcome.aggregate_id,
            version=outcome.version,
            positions=list(outcome.positions),
            events=[event_type(e) for e in outcome.events],
            state=_public_state(outcome.state),
        )

    def projection(self, name: str) -> ProjectionRunner:
        """The runner of projection ``name``."""
        for runner in self.projections:
            if runner.projection.name == name:
                return runner
        raise LookupError(f"no projection named {name!r}")

    def process(self, name: str) -> ProjectionRunner:
        """The runner of process manager ``name`` (e.g. ``order_stock``)."""
        for runner in self.processes:
            if runner.projection.name == name:
                return runner
        raise LookupError(f"no process manager named {name!r}")


#: State fields never put in a reply: de-duplication memory and the per-order
#: and per-reservation maps of a stock item, which grow with every open order
#: (a hot SKU in a live session holds thousands). A reply stays a few hundred
#: bytes; ``hub stock show`` prints the maps.
PRIVATE_STATE_FIELDS = (
    "recent_requests",
    "commitments",
    "reservations",
    "closed_orders",
)


def _public_state(state: Any) -> dict[str, Any] | None:
    if state is None:
        return None
    data: dict[str, Any] = msgspec.to_builtins(state)
    for name in PRIVATE_STATE_FIELDS:
        data.pop(name, None)
    if hasattr(state, "available"):
        data["available"] = state.available
    return data


def bootstrap(
    *,
    database_url: str,
    nats_url: str | None,
    clock: Callable[[], datetime] = utc_now,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
    run_relay: bool = True,
    run_processes: bool = True,
    projections: Sequence[Projection] | None = None,
    apply_migrations: bool = True,
    policy_book: PolicyBook | None = None,
) -> Hub:
    """Build a hub on the given servers (it starts nothing until ``start``).

    Args:
        database_url: PostgreSQL for the log and the read models.
        nats_url: NATS for the relay; ``None`` runs without a relay.
        clock: the time source of every event.
        new_id: the id source of every event.
        run_relay: whether this process publishes the log to ``HUB_EVENTS``.
        run_processes: whether this process runs the process managers
            (:func:`hub.processes.default_processes`: orders move stock).
        projections: read models to keep current here (default: all).
        apply_migrations: apply pending migrations first.
        policy_book: the platform policy book the binding rules and the
            bindings projection read; default: the bundled ``hub/policies.json``
            (the CLI passes the book of ``HUB_POLICIES_FILE`` when it is set).
    """
    if apply_migrations:
        migrate(database_url)
    app = HubApplication(env=eventsourcing_env(database_url))
    committer = GroupCommitter(app, clock=clock, new_id=new_id)
    relay = Relay(database_url, nats_url) if (run_relay and nats_url) else None
    book = load_policy_book() if policy_book is None else policy_book
    chosen = default_projections(book) if projections is None else list(projections)
    runners = [ProjectionRunner(p, database_url) for p in chosen]
    processes: list[ProjectionRunner] = (
        [ProcessRunner(p, database_url) for p in default_processes(committer)]
        if run_processes
        else []
    )
    return Hub(
        database_url=database_url,
        nats_url=nats_url,
        app=app,
        committer=committer,
        relay=relay,
        projections=runners,
        processes=processes,
        policy_book=book,
        rules=command_rules(book),
    )


def connect_platforms(
    hub: Hub,
    config: ConnectorsConfig,
    *,
    clock: Callable[[], datetime] = utc_now,
    client_options: Mapping[str, Any] | None = None,
    token_store: TokenStore | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    jitter: Callable[[], float] = random.random,
    max_push_rounds: int = DEFAULT_MAX_ROUNDS,
) -> Platforms:
    """Build the hub's side of the shop platforms (it starts nothing).

    Args:
        hub: The hub whose committer stores what the platforms say.
        config: The connectors registry (``HUB_CONNECTORS_FILE``).
        clock: The time the sync schedule reads.
        client_options: Passed to every connector client (``clock``,
            ``sleep``, ``jitter``, ``http``, ``timeout_s``).
        token_store: Where the clients keep tokens (default: in memory).
        sleep: The wait between rounds of a failing stock push.
        jitter: Numbers in [0, 1) for that wait's jitter.
        max_push_rounds: Rounds of a stock push before it is dead-lettered.
    """
    connectors = Connectors(
        config, token_store=token_store, client_options=client_options
    )
    intake = OrderIntake(hub, connectors)
    outbound = OutboundDispatcher(
        hub,
        connectors,
        sleep=sleep,
        jitter=jitter,
        max_rounds=max_push_rounds,
        ledger_store=LedgerStore(hub.database_url),
    )
    scheduler = SyncScheduler(
        intake, outbound, clock=clock, cursors=PollCursors(hub.database_url)
    )
    return Platforms(
        connectors=connectors, intake=intake, outbound=outbound, scheduler=scheduler
    )
