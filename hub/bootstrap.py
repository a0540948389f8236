"""The composition root: builds the hub from settings, and nothing else does.

Keyword arguments carry production defaults; tests call :func:`bootstrap` with
their own servers, clock and id factory. Nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.transport import TokenStore
from domain.policy import PolicyBook
from eventlog.supervision import Supervisor, default_supervisor
from hub.entry.platforms import Platforms
from hub.infra.embedded import EmbeddedError
from hub.infra.ledgers import LedgerStore
from hub.infra.migrate import migrate
from hub.infra.oauth_states import OAuthStates
from hub.infra.redaction import install_log_redaction
from hub.infra.relay import Relay
from hub.infra.runtime import freeze_heap
from hub.infra.settings import Settings, SettingsError, eventsourcing_env
from hub.infra.shops import Connectors, ConnectorsConfig
from hub.infra.store import HubApplication
from hub.service.authorisation import BindingRoutes
from hub.service.catalog_sync import CatalogSync
from hub.service.commands import command_rules
from hub.service.commit import GroupCommitter, utc_now
from hub.service.crm import CrmOutbox
from hub.service.hub import Hub
from hub.service.inbound import OrderIntake
from hub.service.outbound import DEFAULT_MAX_ROUNDS, OutboundDispatcher
from hub.service.payouts import payout_runners
from hub.service.personal import PersonalData, profile_policies
from hub.service.policies import load_policy_book, sync_policies
from hub.service.processes import ProcessRunner, default_processes
from hub.service.reconciliation import daily_reconciliation
from hub.service.risk import suspension_reactor
from hub.service.shipments import ShipmentNotifier
from hub.service.snapshots import Snapshots
from hub.service.sync import PollCursors, SyncScheduler
from projections.base import Projection, ProjectionRunner
from projections.bindings import BindingsProjection
from projections.catalog import CatalogProjection
from projections.inventory import InventoryProjection, StockDriftProjection
from projections.ledger import LedgerProjection
from projections.marketing import MarketingProjection
from projections.orders import OrdersProjection
from projections.profiles import CustomerProfilesProjection
from projections.sales import SalesProjection
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
        CustomerProfilesProjection(),
        LedgerProjection(),
        SalesProjection(),
        CatalogProjection(),
        MarketingProjection(),
    ]


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
    supervisor: Supervisor | None = None,
    stream_replicas: int = 1,
) -> Hub:
    """Build a hub on the given servers (it starts nothing until ``start``).

    Args:
        database_url: PostgreSQL for the log and the read models.
        nats_url: NATS for the relay; ``None`` runs without a relay.
        clock: the time source of every event.
        new_id: the id source of every event.
        run_relay: whether this process publishes the log to ``HUB_EVENTS``.
        run_processes: whether this process runs the process managers
            (:func:`hub.service.processes.default_processes`: orders move stock).
        projections: read models to keep current here (default: all).
        apply_migrations: apply pending migrations first.
        policy_book: the platform policy book the binding rules and the
            bindings projection read; default: the bundled ``hub/policies.json``
            (the CLI passes the book of ``HUB_POLICIES_FILE`` when it is set).
        supervisor: runs and reports every long-running task of the hub
            (default: the process's, which ``/health`` reads).
        stream_replicas: copies of ``HUB_EVENTS`` when the relay creates it
            (``HUB_STREAM_REPLICAS``).
    """
    if apply_migrations:
        migrate(database_url)
    sup = supervisor or default_supervisor()
    app = HubApplication(env=eventsourcing_env(database_url))
    committer = GroupCommitter(app, clock=clock, new_id=new_id, supervisor=sup)
    committer.snapshots = Snapshots(app)
    committer.listen(committer.snapshots.on_durable)
    relay = (
        Relay(database_url, nats_url, replicas=stream_replicas, supervisor=sup)
        if (run_relay and nats_url)
        else None
    )
    book = load_policy_book() if policy_book is None else policy_book
    chosen = default_projections(book) if projections is None else list(projections)
    runners = [ProjectionRunner(p, database_url, supervisor=sup) for p in chosen]
    processes: list[ProjectionRunner] = (
        [
            *(ProcessRunner(p, database_url) for p in default_processes(committer)),
            *payout_runners(committer, book, database_url, clock),
        ]
        if run_processes
        else []
    )
    for process in processes:
        process.supervisor = sup
    rules = command_rules(book)
    # A violation report that reaches the rule's count suspends the binding in
    # the same transaction.
    committer.react(suspension_reactor(rules["binding.suspend"]))
    return Hub(
        database_url=database_url,
        nats_url=nats_url,
        app=app,
        committer=committer,
        relay=relay,
        projections=runners,
        processes=processes,
        policy_book=book,
        rules=rules,
        supervisor=sup,
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
    personal: PersonalData | None = None,
    crm: CrmOutbox | None = None,
    callback_base: str = "http://127.0.0.1:8780",
    catalog_poll_s: float | None = 60.0,
) -> Platforms:
    """Build the hub's side of the shop platforms (it starts nothing).

    The hub's policy book is the only source of the platforms' sync policies:
    its ``sync`` sections go to every shop's client (rate limit, retries), the
    webhooks (whether order pushes are taken in), the outbound dispatcher
    (stock mode, retry rounds) and the sync schedule (polls, calibrations).

    Args:
        hub: The hub whose committer stores what the platforms say, and whose
            policy book the platforms obey.
        config: The connectors registry (``HUB_CONNECTORS_FILE``).
        clock: The time the sync schedule reads.
        client_options: Passed to every connector client (``clock``,
            ``sleep``, ``jitter``, ``http``, ``timeout_s``).
        token_store: Where the clients keep tokens (default: in memory).
        sleep: The wait between rounds of a failing stock push.
        jitter: Numbers in [0, 1) for that wait's jitter.
        max_push_rounds: Rounds of a stock push before it is dead-lettered.
        personal: Seals the buyers of incoming orders under the profile policy
            of the book (None: buyers are dropped).
        crm: Where the profiles of the CRM transfer mode are sent.
        callback_base: Where the platforms reach the hub's HTTP port: the
            OAuth callbacks are ``<callback_base>/oauth/<platform>/callback``.
        catalog_poll_s: Seconds between reads of the shops' products for
            edits made on the platforms (None: only when asked).

    Raises:
        hub.infra.shops.ConnectorsConfigError: a shop's platform has no sync
            policy in the book.
    """
    book = load_policy_book() if hub.policy_book is None else hub.policy_book
    policies = sync_policies(book)
    install_log_redaction()
    connectors = Connectors(
        config,
        policies=policies,
        token_store=token_store,
        client_options=client_options,
    )
    intake = OrderIntake(
        hub, connectors, personal=personal, crm=crm, profiles=profile_policies(book)
    )
    outbound = OutboundDispatcher(
        hub,
        connectors,
        policies=policies,
        sleep=sleep,
        jitter=jitter,
        max_rounds=max_push_rounds,
        ledger_store=LedgerStore(hub.database_url),
    )
    scheduler = SyncScheduler(
        intake,
        outbound,
        clock=clock,
        policies=policies,
        cursors=PollCursors(hub.database_url),
    )
    routes = BindingRoutes(
        hub,
        connectors,
        OAuthStates(hub.database_url, clock=clock),
        callback_url=lambda platform: f"{callback_base}/oauth/{platform}/callback",
    )
    return Platforms(
        connectors=connectors,
        intake=intake,
        outbound=outbound,
        scheduler=scheduler,
        routes=routes,
        policies=policies,
        shipments=ShipmentNotifier(hub, connectors),
        catalog=CatalogSync(
            hub, connectors, policies=policies, poll_interval_s=catalog_poll_s
        ),
    )


# ----------------------------------------------------------------- from settings


log = logging.getLogger(__name__)


def say(*args: object) -> None:
    """Print a line of the running hub's console output at once."""
    print(*args, flush=True)


def policy_book_of(settings: Settings) -> PolicyBook:
    """The policy book of ``HUB_POLICIES_FILE``, or the bundled one."""
    from domain.policy import PolicyBookError
    from hub.service.policies import load_policy_book

    try:
        return load_policy_book(settings.policies_file)
    except OSError as exc:
        raise SettingsError(
            f"HUB_POLICIES_FILE={settings.policies_file}: cannot read it "
            f"({exc.strerror or exc})"
        ) from None
    except PolicyBookError as exc:
        raise SettingsError(str(exc)) from None


@contextlib.contextmanager
def servers(settings: Settings, *, start_embedded: bool) -> Iterator[tuple[str, str]]:
    """URLs to use: the configured ones, or embedded servers.

    Verbs other than ``serve`` first try embedded servers already running (a
    ``hub serve`` in another terminal) and start them only when none answers.
    """
    from hub.infra.embedded import port_free, start_servers

    db = settings.database_url
    nats_url = settings.nats_url
    if not start_embedded:
        if not db and not port_free("127.0.0.1", settings.pg_port):
            db = f"postgresql://postgres@127.0.0.1:{settings.pg_port}/hub"
        if not nats_url and not port_free("127.0.0.1", settings.nats_port):
            nats_url = f"nats://127.0.0.1:{settings.nats_port}"
    servers = start_servers(
        settings.home,
        database_url=db,
        nats_url=nats_url,
        pg_port=settings.pg_port,
        nats_port=settings.nats_port,
    )
    try:
        yield servers.database_url, servers.nats_url
    finally:
        servers.stop()


def master_key_of(settings: Settings, env: Mapping[str, str] | None = None) -> bytes:
    """The master key (``HUB_MASTER_KEY``, else ``HUB_HOME/master.key``, made once)."""
    from hub.infra.keys import MasterKeyError, master_key

    try:
        return master_key(settings.home, env)
    except MasterKeyError as exc:
        raise SettingsError(str(exc)) from None


def token_store_of(
    database_url: str, config: ConnectorsConfig, key: bytes | None = None
) -> Any:
    """The configured shops' tokens in PostgreSQL, sealed under the master key.

    ``key`` None reads ``HUB_MASTER_KEY`` (unset: tokens stored unsealed).
    """
    from hub.infra.tokens import PostgresTokenStore, TokenStoreError, token_key

    shops = {(shop.platform, shop.shop_id) for shop in config.shops}
    try:
        return PostgresTokenStore(
            database_url, key=token_key() if key is None else key, shops=shops
        )
    except TokenStoreError as exc:
        raise SettingsError(str(exc)) from None


def personal_data_of(
    database_url: str, master_key: bytes | None
) -> PersonalData | None:
    """Buyers sealed under subject keys kept under ``master_key`` (None: none)."""
    from hub.infra.subjects import SubjectKeys

    if master_key is None:
        return None
    return PersonalData(SubjectKeys(database_url, master_key), master_key)


def crm_outbox_of(
    database_url: str,
    personal: PersonalData | None,
    master_key: bytes | None,
    env: Mapping[str, str] | None = None,
    *,
    background: bool = True,
) -> CrmOutbox | None:
    """The CRM of ``HUB_CRM_URL`` with the key of ``HUB_CRM_KEY`` (or none).

    The key is 32 bytes in base64, or a ``sealed:`` value (``hub secrets seal
    crm - crm_key``) opened with the master key.
    """
    import os

    from hub.infra.keys import (
        MasterKeyError,
        Sealer,
        SealError,
        credential_context,
        decode_key,
    )

    env = os.environ if env is None else env
    url = env.get("HUB_CRM_URL", "")
    if not url or personal is None or master_key is None:
        return None
    raw = env.get("HUB_CRM_KEY", "")
    try:
        opened = Sealer(master_key).open_text(
            raw, credential_context("crm", "-", "crm_key")
        )
        key = decode_key(opened, "HUB_CRM_KEY")
    except (SealError, MasterKeyError) as exc:
        raise SettingsError(str(exc)) from None
    return CrmOutbox(
        database_url, personal.keys, url=url, key=key, background=background
    )


def connectors_config_of(
    settings: Settings, key: bytes | None = None
) -> ConnectorsConfig:
    """The registry of ``HUB_CONNECTORS_FILE`` (empty when unset).

    Its ``sealed:`` credentials are opened with ``key`` (the master key).
    """
    from hub.infra.keys import SealError, open_credentials
    from hub.infra.shops import ConnectorsConfigError, load_connectors_config

    try:
        return open_credentials(load_connectors_config(settings.connectors_file), key)
    except ConnectorsConfigError as exc:
        raise SettingsError(str(exc)) from None
    except SealError as exc:
        raise SettingsError(f"HUB_CONNECTORS_FILE: {exc}") from None


async def serve(
    database_url: str,
    nats_url: str,
    policy_book: PolicyBook | None = None,
    platforms_config: ConnectorsConfig | None = None,
    http_port: int | None = None,
    *,
    stream_replicas: int = 1,
    master_key: bytes | None = None,
    public_url: str | None = None,
) -> None:
    """Run the hub until SIGINT/SIGTERM, then stop it (see :func:`_run`).

    Raises:
        ServeError: an embedded server could not be kept running.
    """
    from hub.entry.nats_api import build_broker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    hub = bootstrap(
        database_url=database_url,
        nats_url=nats_url,
        policy_book=policy_book,
        stream_replicas=stream_replicas,
    )
    await hub.start()
    broker = build_broker(nats_url, hub)
    await broker.start()
    platforms = None
    personal = personal_data_of(database_url, master_key)
    crm = crm_outbox_of(database_url, personal, master_key)
    if crm is not None:
        crm.resume()
    if platforms_config is not None:
        platforms = connect_platforms(
            hub,
            platforms_config,
            token_store=token_store_of(database_url, platforms_config, master_key),
            personal=personal,
            crm=crm,
            callback_base=public_url or f"http://127.0.0.1:{http_port}",
        )
        # The HTTP port and the schedule are served under supervision (_run).
        await platforms.start(http_port=None, schedule=False, nats_url=nats_url)
        daily_reconciliation(hub, platforms.connectors)
        say(
            f"webhooks: http://127.0.0.1:{http_port}/webhooks/<platform> "
            f"({len(platforms_config.shops)} shops)"
        )
    await _run(hub, broker, platforms, stop, http_port)


class ServeError(EmbeddedError):
    """``hub serve`` cannot go on (it exits non-zero rather than half alive)."""


#: The longest each part of the hub may take to stop.
STOP_STEP_S = 10.0


async def _run(
    hub: Hub,
    broker: Any,
    platforms: Platforms | None,
    stop: asyncio.Event,
    http_port: int | None,
) -> None:
    """Serve until ``stop`` is set, then stop every part, each within
    :data:`STOP_STEP_S` (a part that fails or hangs is logged and skipped).

    Beside the parts already started, this runs under the hub's supervisor:
    the HTTP port (``/health`` and the webhooks), the sync schedule, and a
    watch on every server this process started, which starts a dead one
    again; one that cannot be started again ends the hub (:class:`ServeError`).
    """
    from eventlog.supervision import describe
    from hub.entry.dashboard import with_dashboard
    from hub.entry.health import health_app
    from hub.entry.http import HttpServer
    from hub.infra.embedded import watch_started

    supervisor = hub.supervisor
    watchers = watch_started(supervisor)
    tasks: list[asyncio.Task[None]] = []
    if http_port is not None:
        app = health_app(
            supervisor,
            with_dashboard(
                hub.database_url, supervisor, platforms.app() if platforms else None
            ),
        )

        async def serve_http() -> None:
            server = await HttpServer(app, "127.0.0.1", http_port).start()
            try:
                if server._task is not None:
                    await server._task
            finally:
                await server.stop()
            raise ServeError(f"the HTTP server on port {http_port} stopped serving")

        tasks.append(supervisor.spawn("http", serve_http))
    if platforms is not None:
        tasks.append(supervisor.spawn("sync schedule", platforms.scheduler.run))
    freeze_heap()  # the hub's parts, started: see its docstring
    say("hub is running; Ctrl-C stops it")
    waiter = asyncio.ensure_future(stop.wait())
    gave_up: BaseException | None = None
    try:
        done, _ = await asyncio.wait(
            {waiter, *watchers}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in watchers:
            if task in done and not task.cancelled():
                gave_up = gave_up or task.exception()
    finally:
        say("stopping ...")
        waiter.cancel()
        for task in [*watchers, *tasks]:
            task.cancel()
        await asyncio.gather(waiter, *watchers, *tasks, return_exceptions=True)
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if platforms is not None:
            steps.append(("the platforms", platforms.stop))
        steps += [("the NATS commands", broker.stop), ("the hub", hub.stop)]
        for name, step in steps:
            try:
                async with asyncio.timeout(STOP_STEP_S):
                    await step()
            except Exception as exc:
                log.error("stopping %s failed: %s", name, describe(exc), exc_info=exc)
    if gave_up is not None:
        raise ServeError(f"hub serve gives up: {gave_up}") from gave_up
