"""The ``hub products`` verbs: define a product, show one, list the library.

Wired into ``hub/entry/cli.py``'s ``build_parser`` with
``add_products_verbs(verbs)``. ``define`` sends ``product.define`` to a running
hub over NATS (or, when none answers, runs it in this process); ``show`` folds
the product from the log; ``list`` reads the ``catalog`` projection, brought up
to the log first (``docs/catalog.md``).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from hub.entry.remote_command import fail
from hub.infra.settings import Settings


def add_products_verbs(verbs: Any) -> None:
    """Add ``products define|show|list`` to the sub-parsers.

    Args:
        verbs: The object ``ArgumentParser.add_subparsers`` returned.
    """
    products = verbs.add_parser("products", help="the product library")
    pverbs = products.add_subparsers(dest="pverb", required=True)
    define = pverbs.add_parser(
        "define",
        help="define a product from a JSON file (the product.define payload)",
    )
    define.add_argument("file", type=Path, help="JSON file, or - for stdin")
    define.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for a hub"
    )
    define.set_defaults(func=cmd_define)
    show = pverbs.add_parser(
        "show", help="a product's content, revision and what each shop holds"
    )
    show.add_argument("product", help="hub product code")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_show)
    listing = pverbs.add_parser("list", help="every product and its shops")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_list)


def cmd_define(settings: Settings, args: argparse.Namespace) -> int:
    """``hub products define FILE``."""
    from hub.entry.remote_command import file_command

    reply, via = file_command(
        settings,
        "product.define",
        args.file,
        timeout=args.timeout,
        projection="catalog",
    )
    if reply is None:
        return 1
    events = ", ".join(reply.get("events") or []) or "none (defined already)"
    print(f"product.define: ok {via}: revision {reply.get('version')}; {events}")
    return 0


def format_product(product: Any) -> str:
    """A product and what each shop holds, for ``hub products show``."""
    status = "retired" if product.retired else "active"
    lines = [
        f"{product.product}: {product.title} ({status}, revision "
        f"{product.revision}, changed {product.changed_at.isoformat()})",
        f"  price {product.price_fen} fen",
    ]
    for sku in product.skus:
        spec = ", ".join(f"{k}={v}" for k, v in sku.attributes.items())
        lines.append(f"  sku {sku.sku}: {sku.price_fen} fen {spec}".rstrip())
    lines.extend(f"  image {url}" for url in product.images)
    for key, held in sorted(product.synced.items()):
        behind = "" if held.revision >= product.revision else " (behind)"
        lines.append(
            f"  shop {key}: revision {held.revision}{behind}, platform id "
            f"{held.platform_product_id}"
        )
    return "\n".join(lines)


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    """``hub products show PRODUCT``."""
    import msgspec

    from hub.bootstrap import say, servers
    from hub.service.catalog import ProductNotFoundError, read_product

    with servers(settings, start_embedded=False) as (db, _):
        try:
            product = asyncio.run(read_product(db, args.product))
        except ProductNotFoundError as exc:
            return fail(str(exc))
    if args.json:
        say(msgspec.json.encode(product).decode())
    else:
        say(format_product(product))
    return 0


async def _listing(database_url: str) -> tuple[list[Any], list[Any]]:
    from hub.entry.catch_up import catch_up
    from projections.catalog import CatalogProjection, CatalogView

    await catch_up(database_url, CatalogProjection())
    view = CatalogView(database_url)
    return await view.products(), await view.shops()


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    """``hub products list``."""
    import msgspec

    from hub.bootstrap import say, servers
    from hub.infra.migrate import migrate

    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        products, shops = asyncio.run(_listing(db))
    if args.json:
        say(msgspec.json.encode({"products": products, "shops": shops}).decode())
        return 0
    if not products:
        say("no products")
    for row in products:
        held = [s for s in shops if s.product == row.product]
        synced = (
            ", ".join(f"{s.platform}/{s.shop_id} r{s.revision}" for s in held)
            or "no shop yet"
        )
        say(
            f"{row.product}: {row.title}, {row.price_fen} fen, revision "
            f"{row.revision} ({row.status}); refused edits {row.edits_refused}; "
            f"shops: {synced}"
        )
    return 0
