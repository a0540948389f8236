"""The running hub: the service layer's one entry for commands.

:class:`Hub` holds the store, the group committer, the relay, the projection
runners and the process managers that :func:`hub.bootstrap.bootstrap` wired,
and runs commands on them. It lives here, not in the composition root, so
the code it is handed to (inbound, outbound, NATS) imports it without
importing what wires it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from domain.events import DomainError
from domain.policy import PolicyBook
from eventlog.supervision import Supervisor, TaskHealth, default_supervisor
from hub.messages import CommandReply, ErrorInfo, event_type
from hub.service.commands import CommandDecodeError, command_rules, decode_command
from hub.service.commit import GroupCommitter, Outcome, StoreUnavailableError
from hub.service.policies import load_policy_book

if TYPE_CHECKING:
    from hub.infra.relay import Relay
    from hub.infra.store import HubApplication
    from projections.base import ProjectionRunner

log = logging.getLogger(__name__)

#: A command not answered within this many seconds is answered
#: ``store_unavailable`` (the store is down or stuck); it may still be stored.
COMMAND_DEADLINE_S = 5.0
#: How often expired request ids are deleted.
FORGET_REQUESTS_EVERY_S = 3600.0


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
    #: Process managers (:mod:`hub.service.processes`): they follow the log and run
    #: commands through :attr:`committer`.
    processes: list[ProjectionRunner] = field(default_factory=list)
    #: The platform policy book the binding rules read (default: bundled).
    policy_book: PolicyBook | None = None
    #: Each command's rules, those that read the policy book reading this one's.
    rules: dict[str, Any] = field(default_factory=dict)
    #: Runs and reports every long-running task (the process's by default).
    supervisor: Supervisor = field(default_factory=default_supervisor)
    #: See :data:`COMMAND_DEADLINE_S`.
    command_deadline_s: float = COMMAND_DEADLINE_S
    _janitor: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

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
        self._janitor = self.supervisor.spawn("request ids", self._forget_requests)

    async def _forget_requests(self) -> None:
        while True:
            forgotten = await self.committer.forget_requests()
            if forgotten:
                log.info("forgot %d expired request ids", forgotten)
            await asyncio.sleep(FORGET_REQUESTS_EVERY_S)

    def health(self) -> list[TaskHealth]:
        """The state of every supervised task of this process."""
        return self.supervisor.health()

    async def stop(self) -> None:
        """Stop everything started, finishing queued commands first.

        The process managers stop first: what they had queued is committed,
        and what they had not yet tracked they handle again on the next start.
        """
        if self._janitor is not None:
            self._janitor.cancel()
            await asyncio.gather(self._janitor, return_exceptions=True)
            self._janitor = None
        for process in self.processes:
            await process.stop()
        await self.committer.stop()
        if self.committer.snapshots is not None:
            await self.committer.snapshots.drain()
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
        """Decode, run and answer one command; never raises, never hangs.

        Bad input and refusals are answered with their code; a store that
        fails or does not answer within :attr:`command_deadline_s` with
        ``store_unavailable``.
        """
        try:
            command = decode_command(name, payload)
            async with asyncio.timeout(self.command_deadline_s):
                outcome = await self.execute(name, command)
        except (CommandDecodeError, DomainError, StoreUnavailableError) as exc:
            return CommandReply(
                ok=False, error=ErrorInfo(code=exc.code, message=str(exc))
            )
        except TimeoutError:
            return CommandReply(
                ok=False,
                error=ErrorInfo(
                    code=StoreUnavailableError.code,
                    message=(
                        f"{name}: not stored within {self.command_deadline_s:g} s "
                        "(the store is down or overloaded); it may still be: "
                        "send it again with the same request_id"
                    ),
                ),
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
    # A campaign's buyers, orders, friends and devices (``hub marketing show``).
    "holders",
    "redeemed_orders",
    "credited",
    "devices",
    "progress",
    "rewards_by_day",
    "refused_shares",
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
