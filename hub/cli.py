"""The ``hub`` command line.

Verbs: ``serve`` (everything, on the embedded servers by default), ``migrate``,
``status``, ``docs``, ``send`` (one command over NATS), ``relay`` and
``project`` (one worker alone, for scaling out), ``projections rebuild``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec

from hub.settings import Settings, SettingsError


def _print(*args: object) -> None:
    print(*args, flush=True)


@contextlib.contextmanager
def _servers(settings: Settings, *, start_embedded: bool) -> Iterator[tuple[str, str]]:
    """URLs to use: the configured ones, or embedded servers.

    Verbs other than ``serve`` first try embedded servers already running (a
    ``hub serve`` in another terminal) and start them only when none answers.
    """
    from hub.embedded import port_free, start_servers

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


async def _serve(database_url: str, nats_url: str) -> None:
    from hub.bootstrap import bootstrap
    from hub.nats_api import build_broker

    hub = bootstrap(database_url=database_url, nats_url=nats_url)
    await hub.start()
    broker = build_broker(nats_url, hub)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _print("hub is running; Ctrl-C stops it")
    try:
        await stop.wait()
    finally:
        _print("stopping ...")
        await broker.stop()
        await hub.stop()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    with _servers(settings, start_embedded=True) as (db, nats_url):
        _print(f"HUB_DATABASE_URL={db}")
        _print(f"HUB_NATS_URL={nats_url}")
        from hub.migrate import migrate

        applied = migrate(db)
        if applied:
            _print(f"migrations applied: {', '.join(applied)}")
        asyncio.run(_serve(db, nats_url))
    _print("stopped")
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from hub.migrate import migrate

    with _servers(settings, start_embedded=False) as (db, _):
        applied = migrate(db)
    _print(f"applied: {', '.join(applied)}" if applied else "nothing to apply")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from hub.migrate import migrate
    from hub.status import format_status, read_status

    with _servers(settings, start_embedded=False) as (db, nats_url):
        migrate(db)
        status = asyncio.run(read_status(db, nats_url))
    if args.json:
        _print(json.dumps(msgspec.to_builtins(status)))
    else:
        _print(format_status(status))
    return 0


def cmd_docs(settings: Settings, args: argparse.Namespace) -> int:
    from hub.nats_api import asyncapi_document

    text = json.dumps(asyncapi_document(), indent=2, ensure_ascii=False) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        _print(f"AsyncAPI document written to {args.out}")
    return 0


async def _send(nats_url: str, name: str, payload: bytes, timeout: float) -> bytes:
    import nats

    nc = await nats.connect(nats_url)
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


async def _run_worker(coro_factory: object) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(coro_factory())  # type: ignore[operator]
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    waiter.cancel()


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    from hub.relay import Relay

    with _servers(settings, start_embedded=False) as (db, nats_url):
        relay = Relay(db, nats_url)
        asyncio.run(_run_worker(relay.run))
    return 0


def cmd_project(settings: Settings, args: argparse.Namespace) -> int:
    from hub.bootstrap import default_projections
    from hub.migrate import migrate
    from projections.base import ProjectionRunner

    with _servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        projection = _projection(args.name)
        runner = ProjectionRunner(projection, db)
        asyncio.run(_run_worker(runner.run))
    del default_projections
    return 0


def _projection(name: str) -> object:
    from hub.bootstrap import default_projections

    found = {p.name: p for p in default_projections()}
    if name not in found:
        raise SettingsError(
            f"projection {name!r} does not exist; known: {', '.join(sorted(found))}"
        )
    return found[name]


def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    from hub.migrate import migrate
    from projections.base import rebuild

    with _servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        position = asyncio.run(rebuild(db, _projection(args.name)))  # type: ignore[arg-type]
    _print(f"projection {args.name} rebuilt up to log position {position}")
    return 0


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
    project = verbs.add_parser("project", help="run only one projection")
    project.add_argument("name")
    project.set_defaults(func=cmd_project)
    projections = verbs.add_parser("projections", help="manage read models")
    pverbs = projections.add_subparsers(dest="pverb", required=True)
    rebuild = pverbs.add_parser("rebuild", help="empty and replay one projection")
    rebuild.add_argument("name")
    rebuild.set_defaults(func=cmd_rebuild)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hub`` command."""
    args = build_parser().parse_args(argv)
    from hub.embedded import EmbeddedError
    from hub.migrate import MigrationError

    try:
        settings = Settings.from_env()
        return int(args.func(settings, args))
    except (SettingsError, EmbeddedError, MigrationError) as exc:
        print(f"hub: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
