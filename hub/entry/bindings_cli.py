"""``hub bindings connect PLATFORM SHOP_ID``: run a shop's binding route.

The shop must be in ``HUB_CONNECTORS_FILE`` (its app credentials, no token)
and its binding must have met its requirements. A platform whose grant the hub
obtains alone (an app secret, a self-use grant) is bound at once; for an OAuth
2.0 code flow this prints the consent URL to send the merchant to, and the
platform sends them back to ``HUB_PUBLIC_URL/oauth/PLATFORM/callback``, which
``hub serve`` answers (see ``docs/bindings.md``). The route runs in this
process against the database; tokens are sealed under the master key.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from typing import Any

from connectors.common import PlatformCallError
from domain.events import DomainError
from domain.policy import PolicyBook
from hub.infra.settings import Settings
from hub.infra.shops import ConnectorsConfig, UnknownShopError
from hub.service.authorisation import AuthorisationError, Connection


async def _connect(
    database_url: str,
    config: ConnectorsConfig,
    book: PolicyBook,
    args: argparse.Namespace,
    *,
    key: bytes | None,
    callback_base: str,
) -> Connection:
    from hub.bootstrap import bootstrap, connect_platforms, token_store_of

    # The bindings table catches up when read (hub bindings list) or in
    # hub serve; this process only records the route's events.
    hub = bootstrap(
        database_url=database_url,
        nats_url=None,
        run_relay=False,
        projections=[],
        policy_book=book,
    )
    await hub.start()
    tokens = token_store_of(database_url, config, key)
    platforms = connect_platforms(
        hub, config, token_store=tokens, callback_base=callback_base
    )
    try:
        assert platforms.routes is not None
        mapped = [kind for text in args.map for kind in text.split(",") if kind]
        connection = await platforms.routes.connect(
            args.platform, args.shop_id, mapped_data=mapped
        )
    finally:
        await platforms.stop()
        await hub.stop()
        close = getattr(tokens, "close", None)
        if close is not None:
            close()
    return connection


def describe(connection: Connection) -> str:
    """What ``hub bindings connect`` prints."""
    where = (
        f"{connection.platform}/{connection.shop_id} of {connection.channel_account}"
    )
    if connection.status == "consent_needed":
        return (
            f"{where}: the merchant consents at\n  {connection.consent_url}\n"
            "the platform then sends them back to the hub's OAuth callback "
            "(hub serve must be running there); the binding goes active then"
        )
    return f"{where}: {connection.status} on grant {connection.grant_ref}"


def cmd_bindings_connect(settings: Settings, args: argparse.Namespace) -> int:
    """Run one shop's binding route (see the module's docstring)."""
    from hub.bootstrap import (
        connectors_config_of,
        master_key_of,
        policy_book_of,
        servers,
    )
    from hub.infra.migrate import migrate

    key = master_key_of(settings)
    config = connectors_config_of(settings, key)
    book = policy_book_of(settings)
    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        try:
            connection = asyncio.run(
                _connect(
                    db,
                    config,
                    book,
                    args,
                    key=key,
                    callback_base=settings.callback_base,
                )
            )
        except (
            UnknownShopError,
            AuthorisationError,
            DomainError,
            PlatformCallError,
        ) as exc:
            print(f"hub: error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(dataclasses.asdict(connection)), flush=True)
    else:
        print(describe(connection), flush=True)
    return 0


def add_connect(bverbs: Any) -> None:
    """Add ``bindings connect`` to the ``bindings`` verbs."""
    connect = bverbs.add_parser(
        "connect",
        help="run a shop's binding route (its grant, or the OAuth consent URL)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    connect.add_argument("platform", help="platform code, e.g. youzan")
    connect.add_argument("shop_id", help="the shop's id (in HUB_CONNECTORS_FILE)")
    connect.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="KINDS",
        help="data a custom-mapping binding maps, e.g. products,orders",
    )
    connect.add_argument("--json", action="store_true", help="print JSON")
    connect.set_defaults(func=cmd_bindings_connect)
