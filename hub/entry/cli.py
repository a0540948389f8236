"""The ``hub`` command line.

Verbs: ``serve`` (everything, on the embedded servers by default), ``migrate``,
``status``, ``docs``, ``send`` (one command over NATS), ``relay`` and
``project`` (one worker alone, for scaling out), ``projections rebuild``,
``policies show`` (a platform's policy profile) and ``bindings
request|suspend|unbind|show|list|connect`` (see ``docs/bindings.md``).

``HUB_POLICIES_FILE`` points every verb at another policy book.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from hub.bootstrap import (
    connectors_config_of,
    master_key_of,
    policy_book_of,
    serve,
    servers,
)
from hub.entry.bindings_cli import add_connect
from hub.entry.remote_command import run_command
from hub.infra.runtime import configure_logging, leave, run_until_signal
from hub.infra.runtime import run as run_loop
from hub.infra.settings import Settings, SettingsError, nats_servers

if TYPE_CHECKING:
    from domain.policy import PolicyBook
    from hub.infra.shops import ConnectorsConfig
    from projections.base import Projection


def _print(*args: object) -> None:
    print(*args, flush=True)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    try:
        configure_logging()
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    book = policy_book_of(settings)
    key = master_key_of(settings)
    platforms_config = connectors_config_of(settings, key)
    with servers(settings, start_embedded=True) as (db, nats_url):
        _print(f"HUB_DATABASE_URL={db}")
        _print(f"HUB_NATS_URL={nats_url}")
        from hub.infra.migrate import migrate

        applied = migrate(db)
        if applied:
            _print(f"migrations applied: {', '.join(applied)}")
        _print(
            f"policy book: {settings.policies_file or 'bundled'} "
            f"(revision {book.revision})"
        )
        run_loop(
            serve(
                db,
                nats_url,
                book,
                platforms_config,
                settings.http_port,
                master_key=key,
                stream_replicas=settings.stream_replicas,
                public_url=settings.public_url,
            )
        )
    _print("stopped")
    return leave(0)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from hub.infra.migrate import migrate

    with servers(settings, start_embedded=False) as (db, _):
        applied = migrate(db)
    _print(f"applied: {', '.join(applied)}" if applied else "nothing to apply")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from hub.entry.status import format_status, read_status
    from hub.infra.migrate import migrate

    health = f"http://127.0.0.1:{settings.http_port}/health"
    with servers(settings, start_embedded=False) as (db, nats_url):
        migrate(db)
        status = asyncio.run(read_status(db, nats_url, health_url=health))
    if args.json:
        _print(json.dumps(msgspec.to_builtins(status)))
    else:
        _print(format_status(status))
    return 0


def cmd_docs(settings: Settings, args: argparse.Namespace) -> int:
    from hub.entry.nats_api import asyncapi_document

    # Keys sorted: the same hub gives the same document, byte for byte.
    text = (
        json.dumps(asyncapi_document(), indent=2, ensure_ascii=False, sort_keys=True)
        + "\n"
    )
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        _print(f"AsyncAPI document written to {args.out}")
    return 0


async def _send(nats_url: str, name: str, payload: bytes, timeout: float) -> bytes:
    import nats

    nc = await nats.connect(nats_servers(nats_url))
    try:
        msg = await nc.request(f"hub.cmd.{name}", payload, timeout=timeout)
        return bytes(msg.data)
    finally:
        await nc.close()


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    nats_url = settings.nats_url or f"nats://127.0.0.1:{settings.nats_port}"
    reply = asyncio.run(_send(nats_url, args.name, args.json.encode(), args.timeout))
    _print(reply.decode())
    return 0 if json.loads(reply).get("ok") else 1


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    from hub.infra.relay import Relay

    with servers(settings, start_embedded=False) as (db, nats_url):
        relay = Relay(db, nats_url, replicas=settings.stream_replicas)
        run_loop(run_until_signal(relay.run))
    return 0


def cmd_project(settings: Settings, args: argparse.Namespace) -> int:
    from hub.bootstrap import default_projections
    from hub.infra.migrate import migrate
    from projections.base import READ_MODEL_LINGER_S, ProjectionRunner

    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        book = policy_book_of(settings)
        names = args.names or [p.name for p in default_projections(book)]
        linger = READ_MODEL_LINGER_S if args.linger is None else args.linger
        runners = [
            ProjectionRunner(_projection(name, book), db, linger=linger)
            for name in names
        ]

        async def run_all() -> None:
            await asyncio.gather(*(runner.run() for runner in runners))

        run_loop(run_until_signal(run_all))
    return 0


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds, got {text!r}"
        ) from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def _projection(name: str, policy_book: PolicyBook | None = None) -> Projection:
    from hub.bootstrap import default_projections

    found = {p.name: p for p in default_projections(policy_book)}
    if name not in found:
        raise SettingsError(
            f"projection {name!r} does not exist; known: {', '.join(sorted(found))}"
        )
    return found[name]


def cmd_policies_show(settings: Settings, args: argparse.Namespace) -> int:
    from domain.policy import UnknownPlatformError
    from hub.service.policies import format_profile

    book = policy_book_of(settings)
    try:
        profile = book.profile(args.platform)
    except UnknownPlatformError as exc:
        print(f"hub: error: {exc}", file=sys.stderr)
        return 1
    _print(format_profile(profile))
    return 0


# -- bindings -------------------------------------------------------------------

BINDINGS_TRANSPORT_HELP = (
    "Commands go over NATS (hub.cmd.binding.*) to a running hub (hub serve); "
    "when no hub answers, they run in this process against the database (the "
    "events reach HUB_EVENTS when a hub's relay next runs)."
)


def _describe_reply(name: str, reply: dict[str, Any], via: str) -> str:
    if not reply.get("ok"):
        error = reply.get("error") or {}
        return f"{name}: refused {via}: [{error.get('code')}] {error.get('message')}"
    state = reply.get("state") or {}
    events = ", ".join(reply.get("events") or []) or "none (nothing to change)"
    lines = [
        f"{name}: ok {via}",
        f"  binding {reply.get('aggregate_id')} is {state.get('status')} "
        f"(version {reply.get('version')})",
        f"  events: {events}",
    ]
    failures = state.get("failures") or []
    if failures:
        lines.append(f"  qualification rejected, {len(failures)} failed:")
        lines.extend(f"    - {failure['message']}" for failure in failures)
    return "\n".join(lines)


def _run_binding_command(
    settings: Settings, args: argparse.Namespace, name: str, fields: dict[str, Any]
) -> int:
    payload = msgspec.json.encode(
        {
            "channel_account": args.channel_account,
            "platform": args.platform,
            "shop_id": args.shop_id,
            **fields,
        }
    )
    book = policy_book_of(settings)
    with servers(settings, start_embedded=False) as (db, nats_url):
        raw, via = asyncio.run(
            run_command(
                db,
                nats_url,
                name,
                payload,
                book=book,
                timeout=args.timeout,
                projection="bindings",
            )
        )
    reply = json.loads(raw)
    _print(raw.decode() if args.json else _describe_reply(name, reply, via))
    return 0 if reply.get("ok") else 1


def cmd_bindings_request(settings: Settings, args: argparse.Namespace) -> int:
    return _run_binding_command(
        settings, args, "binding.request", {"materials": args.material}
    )


def cmd_bindings_suspend(settings: Settings, args: argparse.Namespace) -> int:
    return _run_binding_command(
        settings, args, "binding.suspend", {"reason": args.reason, "cause": args.cause}
    )


def cmd_bindings_unbind(settings: Settings, args: argparse.Namespace) -> int:
    return _run_binding_command(
        settings, args, "binding.unbind", {"reason": args.reason}
    )


def cmd_bindings_show(settings: Settings, args: argparse.Namespace) -> int:
    from hub.service.bindings import (
        BindingNotFoundError,
        binding_history,
        format_binding,
        parse_binding_id,
        today_in_china,
    )
    from hub.service.commit import utc_now

    try:
        binding_id = parse_binding_id(args.binding)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    book = policy_book_of(settings)
    with servers(settings, start_embedded=False) as (db, _):
        try:
            history = asyncio.run(binding_history(db, binding_id))
        except BindingNotFoundError as exc:
            print(f"hub: error: {exc}", file=sys.stderr)
            return 1
    _print(format_binding(history, today_in_china(utc_now()), book.holiday_calendar))
    return 0


async def _caught_up_bindings(
    database_url: str, book: PolicyBook, platform: str | None
) -> list[Any]:
    """The bindings table, first brought up to the log's head."""
    from hub.entry.catch_up import catch_up
    from hub.service.bindings import read_bindings
    from projections.bindings import BindingsProjection

    await catch_up(database_url, BindingsProjection(book.holiday_calendar))
    return await read_bindings(database_url, platform=platform)


def cmd_bindings_list(settings: Settings, args: argparse.Namespace) -> int:
    from hub.infra.migrate import migrate
    from hub.service.bindings import format_bindings, overdue_only, today_in_china
    from hub.service.commit import utc_now

    book = policy_book_of(settings)
    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        rows = asyncio.run(_caught_up_bindings(db, book, args.platform))
    today = today_in_china(utc_now())
    if args.overdue:
        rows = overdue_only(rows, today, book.holiday_calendar)
    if args.json:
        _print(
            json.dumps(
                [
                    {
                        **msgspec.to_builtins(row),
                        "overdue": row.is_overdue(today, book.holiday_calendar),
                    }
                    for row in rows
                ],
                ensure_ascii=False,
            )
        )
    else:
        _print(format_bindings(rows, today, book.holiday_calendar))
    return 0


async def _sync_orders(
    database_url: str,
    config: ConnectorsConfig,
    binding: str,
    hours: float,
    policy_book: PolicyBook,
    *,
    key: bytes | None = None,
) -> tuple[str, bool]:
    """Pull one binding's orders of the last ``hours`` in this process, under
    the sync policies of ``policy_book`` (tokens sealed under ``key``)."""
    from datetime import timedelta

    from hub.bootstrap import (
        bootstrap,
        connect_platforms,
        crm_outbox_of,
        personal_data_of,
        token_store_of,
    )
    from hub.service.bindings import parse_binding_id
    from hub.service.commands import BINDING_RULES
    from hub.service.commit import utc_now

    hub = bootstrap(
        database_url=database_url,
        nats_url=None,
        projections=[],
        policy_book=policy_book,
    )
    await hub.start()
    personal = personal_data_of(database_url, key)
    # Kuaishou's orders come this way: their profiles go to the CRM before
    # this process ends (what fails stays pending for hub serve).
    crm = crm_outbox_of(database_url, personal, key, background=False)
    platforms = connect_platforms(
        hub,
        config,
        token_store=token_store_of(database_url, config, key),
        personal=personal,
        crm=crm,
    )
    try:
        state = await hub.committer.load(
            BINDING_RULES, parse_binding_id(binding.split())
        )
        if state is None:
            return f"no binding {binding}", False
        shop = platforms.connectors.shop(state.platform, state.shop_id)
        report = await platforms.scheduler.sync_orders(
            shop, since=utc_now() - timedelta(hours=hours)
        )
        if crm is not None:
            await crm.deliver_pending()
    finally:
        await platforms.stop()
        await hub.stop()
    lines = [
        f"{report.shop}: {report.orders} orders updated {report.since:%Y-%m-%d %H:%M}"
        f" .. {report.until:%Y-%m-%d %H:%M} UTC, {report.events} events stored"
    ]
    if report.refused:
        lines.append(f"  refused: {report.refused}")
    if report.failed:
        lines.append(f"  failed: {report.failed}")
    lines += [f"  order {oid}: {why}" for oid, why in report.errors.items()]
    return "\n".join(lines), report.ok


def cmd_sync_orders(settings: Settings, args: argparse.Namespace) -> int:
    from hub.infra.migrate import migrate
    from hub.infra.shops import UnknownShopError

    key = master_key_of(settings)
    config = connectors_config_of(settings, key)
    book = policy_book_of(settings)
    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        try:
            text, ok = asyncio.run(
                _sync_orders(db, config, args.binding, args.hours, book, key=key)
            )
        except (UnknownShopError, ValueError) as exc:
            print(f"hub: error: {exc}", file=sys.stderr)
            return 1
    _print(text)
    return 0 if ok else 1


def _add_sync(verbs: Any) -> None:
    sync = verbs.add_parser("sync", help="pull from the shop platforms by hand")
    sverbs = sync.add_subparsers(dest="sverb", required=True)
    orders = sverbs.add_parser(
        "orders",
        help="pull one binding's orders now (Kuaishou's manual trigger)",
        description="BINDING is a binding id, or 'CHANNEL_ACCOUNT PLATFORM SHOP_ID' "
        "in one argument. The shop must be in HUB_CONNECTORS_FILE.",
    )
    orders.add_argument("--binding", required=True, metavar="BINDING")
    orders.add_argument(
        "--hours", type=float, default=24.0, help="window: orders updated since"
    )
    orders.set_defaults(func=cmd_sync_orders)


def _binding_verb(bverbs: Any, name: str, help: str) -> argparse.ArgumentParser:
    """Add ``hub bindings NAME``, a verb sent over NATS naming one binding."""
    parser: argparse.ArgumentParser = bverbs.add_parser(
        name, help=help, description=BINDINGS_TRANSPORT_HELP
    )
    parser.add_argument("channel_account", help="channel (视频号) account id")
    parser.add_argument("platform", help="platform code, e.g. wechat_shop")
    parser.add_argument("shop_id", help="the shop's id on the platform")
    parser.add_argument("--json", action="store_true", help="print the raw reply")
    parser.add_argument("--timeout", type=float, default=10.0)
    return parser


def _add_policies_and_bindings(verbs: Any) -> None:
    policies = verbs.add_parser("policies", help="platform policy book")
    polverbs = policies.add_subparsers(dest="polverb", required=True)
    show = polverbs.add_parser(
        "show", help="print one platform's profile (HUB_POLICIES_FILE or bundled)"
    )
    show.add_argument("platform", help="platform code, e.g. kuaishou_shop")
    show.set_defaults(func=cmd_policies_show)

    bindings = verbs.add_parser(
        "bindings",
        help="channel account ↔ shop bindings",
        description=BINDINGS_TRANSPORT_HELP,
    )
    bverbs = bindings.add_subparsers(dest="bverb", required=True)
    request = _binding_verb(bverbs, "request", "request a binding (binding.request)")
    request.add_argument(
        "--material",
        action="append",
        default=[],
        metavar="CODE",
        help="a submitted material (repeat), e.g. business_licence",
    )
    request.set_defaults(func=cmd_bindings_request)
    suspend = _binding_verb(
        bverbs, "suspend", "suspend an active binding (binding.suspend)"
    )
    suspend.add_argument("--reason", required=True)
    suspend.add_argument("--cause", default="other", help="a code for machines")
    suspend.set_defaults(func=cmd_bindings_suspend)
    unbind = _binding_verb(bverbs, "unbind", "end a binding (binding.unbind)")
    unbind.add_argument("--reason", default="")
    unbind.set_defaults(func=cmd_bindings_unbind)
    show_binding = bverbs.add_parser(
        "show",
        help="a binding's state and full history from the log",
        description="BINDING is a binding id, or CHANNEL_ACCOUNT PLATFORM SHOP_ID.",
    )
    show_binding.add_argument("binding", nargs="+", metavar="BINDING")
    show_binding.set_defaults(func=cmd_bindings_show)
    listing = bverbs.add_parser(
        "list",
        help="bindings from the bindings table (brought up to the log first)",
    )
    listing.add_argument(
        "--overdue",
        action="store_true",
        help="only those whose platform review ran past its working days "
        "(China time, the policy book's holiday calendar)",
    )
    listing.add_argument("--platform", help="only this platform")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_bindings_list)
    add_connect(bverbs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(
        prog="hub", description="Event-sourced integration hub."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser(
        "serve", help="run the hub (embedded PostgreSQL and NATS by default)"
    ).set_defaults(func=cmd_serve)
    verbs.add_parser("migrate", help="apply pending SQL migrations").set_defaults(
        func=cmd_migrate
    )
    status = verbs.add_parser("status", help="log head and every consumer's lag")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)
    docs = verbs.add_parser("docs", help="write the AsyncAPI document")
    docs.add_argument("--out", default="docs/asyncapi.json", help="file, or - ")
    docs.set_defaults(func=cmd_docs)
    send = verbs.add_parser("send", help="send one command over NATS, print reply")
    send.add_argument("name", help="command name, e.g. stock.receive")
    send.add_argument("json", help='payload, e.g. \'{"sku":"A1","quantity":5}\'')
    send.add_argument("--timeout", type=float, default=10.0)
    send.set_defaults(func=cmd_send)
    verbs.add_parser("relay", help="run only the relay to HUB_EVENTS").set_defaults(
        func=cmd_relay
    )
    project = verbs.add_parser(
        "project",
        help="run only projections (named ones, or with no name every read model)",
    )
    project.add_argument("names", nargs="*", metavar="name")
    project.add_argument(
        "--linger",
        type=_seconds,
        default=None,
        help="seconds each read model waits after a notification before it "
        "reads, so a rush's commits go into one step (default 0.25)",
    )
    project.set_defaults(func=cmd_project)
    projections = verbs.add_parser("projections", help="manage read models")
    pverbs = projections.add_subparsers(dest="pverb", required=True)
    _add_policies_and_bindings(verbs)
    _add_sync(verbs)
    from hub.entry.sandbox_cli import add_sandbox_parser

    add_sandbox_parser(verbs)
    from hub.entry.inventory_cli import add_inventory_verbs

    add_inventory_verbs(verbs)
    from hub.entry.ledger_cli import add_ledger_verbs

    add_ledger_verbs(verbs)
    from hub.entry.replay_cli import add_replay_verbs

    add_replay_verbs(verbs, pverbs)
    from hub.entry.profiles_cli import add_profiles_verbs

    add_profiles_verbs(verbs)
    from hub.entry.marketing_cli import add_marketing_verbs

    add_marketing_verbs(verbs)
    from hub.entry.catalog_cli import add_products_verbs

    add_products_verbs(verbs)
    from hub.entry.users_cli import add_users_verbs

    add_users_verbs(verbs)
    from hub.entry.demo import add_demo_parser

    add_demo_parser(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hub`` command."""
    args = build_parser().parse_args(argv)
    from hub.infra.embedded import EmbeddedError
    from hub.infra.migrate import MigrationError

    try:
        settings = Settings.from_env()
        return int(args.func(settings, args))
    except (SettingsError, EmbeddedError, MigrationError) as exc:
        print(f"hub: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
