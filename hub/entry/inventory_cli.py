"""The ``hub stock``, ``hub orders`` and ``hub process`` verbs.

Wired into ``hub/entry/cli.py``'s ``build_parser`` with ``add_inventory_verbs(verbs)``.
``stock show`` and ``orders show`` read the log (and the ``stock_drift``
view, brought up to the log first); ``process NAME`` runs one process manager
alone, as a scale-out worker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from hub.infra.runtime import run as run_loop
from hub.infra.settings import Settings


def add_inventory_verbs(verbs: Any) -> None:
    """Add ``stock show``, ``orders show`` and ``process`` to the sub-parsers.

    Args:
        verbs: The object ``ArgumentParser.add_subparsers`` returned.
    """
    stock = verbs.add_parser("stock", help="stock of hub SKUs")
    sverbs = stock.add_subparsers(dest="sverb", required=True)
    show_stock = sverbs.add_parser(
        "show",
        help="every state of a SKU, its open orders and each platform's drift",
    )
    show_stock.add_argument("sku", help="hub SKU code")
    show_stock.set_defaults(func=cmd_stock_show)

    orders = verbs.add_parser("orders", help="platform orders")
    overbs = orders.add_subparsers(dest="overb", required=True)
    show_order = overbs.add_parser(
        "show", help="an order's state and full history from the log"
    )
    show_order.add_argument("platform", help="platform code, e.g. wechat_shop")
    show_order.add_argument("order_id", help="the order's id on the platform")
    show_order.set_defaults(func=cmd_orders_show)

    process = verbs.add_parser(
        "process", help="run only one process manager (scale-out worker)"
    )
    process.add_argument("name", help="a process manager, e.g. order_stock")
    process.set_defaults(func=cmd_process)


async def _stock_show(database_url: str, sku: str) -> str:
    from hub.entry.catch_up import catch_up
    from hub.service.inventory import format_stock, read_drift, stock_history
    from projections.inventory import StockDriftProjection

    history = await stock_history(database_url, sku)
    await catch_up(database_url, StockDriftProjection())
    return format_stock(history, await read_drift(database_url, sku))


def cmd_stock_show(settings: Settings, args: argparse.Namespace) -> int:
    """``hub stock show SKU``."""
    from hub.bootstrap import say, servers
    from hub.infra.migrate import migrate
    from hub.service.inventory import NotFoundError

    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        try:
            text = asyncio.run(_stock_show(db, args.sku))
        except NotFoundError as exc:
            print(f"hub: error: {exc}", file=sys.stderr)
            return 1
    say(text)
    return 0


def cmd_orders_show(settings: Settings, args: argparse.Namespace) -> int:
    """``hub orders show PLATFORM ORDER_ID``."""
    from hub.bootstrap import say, servers
    from hub.service.inventory import NotFoundError, format_order, order_history

    with servers(settings, start_embedded=False) as (db, _):
        try:
            history = asyncio.run(order_history(db, args.platform, args.order_id))
        except NotFoundError as exc:
            print(f"hub: error: {exc}", file=sys.stderr)
            return 1
    say(format_order(history))
    return 0


async def _run_process(database_url: str, name: str) -> None:
    from hub.bootstrap import bootstrap
    from hub.infra.runtime import run_until_signal

    hub = bootstrap(
        database_url=database_url,
        nats_url=None,
        run_relay=False,
        projections=[],
        apply_migrations=False,
    )
    runner = hub.process(name)
    hub.processes = [runner]
    await hub.start()
    try:
        await run_until_signal(_forever)
    finally:
        await hub.stop()


async def _forever() -> None:
    await asyncio.Event().wait()


def cmd_process(settings: Settings, args: argparse.Namespace) -> int:
    """``hub process NAME``: one process manager with its own committer."""
    from hub.bootstrap import servers
    from hub.infra.migrate import migrate
    from hub.infra.settings import SettingsError
    from hub.service.processes import PROCESSES

    if args.name not in PROCESSES:
        raise SettingsError(
            f"process manager {args.name!r} does not exist; known: "
            f"{', '.join(sorted(PROCESSES))}"
        )
    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        run_loop(_run_process(db, args.name))
    return 0
