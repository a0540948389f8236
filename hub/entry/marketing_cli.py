"""The ``hub marketing`` verbs: publish a campaign, show it, price a cart.

Wired into ``hub/entry/cli.py``'s ``build_parser`` with
``add_marketing_verbs(verbs)``. ``publish`` sends ``marketing.publish`` to a
running hub over NATS (or, when none answers, runs it in this process);
``show`` and ``price`` fold the campaign from the log, so they need no running
hub. ``price`` runs the same pricing a redemption records
(:func:`domain.marketing.price_order`): the shop's reduction first, then the
coupon, each line's share in fen (``docs/marketing.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec

from hub.entry.remote_command import fail
from hub.infra.settings import Settings

CAMPAIGN_REF_HELP = (
    "a campaign id, or campaign:CHANNEL_ACCOUNT:PLATFORM:SHOP_ID:CAMPAIGN"
)


def add_marketing_verbs(verbs: Any) -> None:
    """Add ``marketing …`` to the sub-parsers.

    Args:
        verbs: The object ``ArgumentParser.add_subparsers`` returned.
    """
    marketing = verbs.add_parser(
        "marketing", help="campaigns: coupons stacking with the shop's reduction"
    )
    mverbs = marketing.add_subparsers(dest="marketing_verb", required=True)
    publish = mverbs.add_parser(
        "publish",
        help="publish a campaign from a JSON file (the marketing.publish payload)",
    )
    publish.add_argument("file", type=Path, help="JSON file, or - for stdin")
    publish.add_argument("--timeout", type=float, default=10.0)
    publish.set_defaults(func=cmd_publish)
    show = mverbs.add_parser("show", help="a campaign's terms and counters")
    show.add_argument("campaign", help=CAMPAIGN_REF_HELP)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_show)
    price = mverbs.add_parser(
        "price", help="price a cart under a campaign's offers (records nothing)"
    )
    price.add_argument("campaign", help=CAMPAIGN_REF_HELP)
    price.add_argument(
        "lines",
        help='JSON array of {"sku", "quantity", "unit_price_fen", '
        '"discount_fen"?}, or @FILE',
    )
    price.add_argument(
        "--coupon",
        choices=("live_room", "fission", "none"),
        default="live_room",
        help="which coupon stacks with the reduction (default: live_room)",
    )
    price.add_argument("--json", action="store_true", help="print JSON")
    price.set_defaults(func=cmd_price)


def cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    """``hub marketing publish FILE``."""
    from hub.entry.remote_command import file_command

    reply, via = file_command(
        settings,
        "marketing.publish",
        args.file,
        timeout=args.timeout,
        projection="marketing",
    )
    if reply is None:
        return 1
    events = ", ".join(reply.get("events") or []) or "none (published already)"
    print(
        f"marketing.publish: ok {via}: campaign {reply.get('aggregate_id')}; "
        f"events: {events}"
    )
    return 0


def _campaign(settings: Settings, ref: str) -> Any:
    from hub.bootstrap import servers
    from hub.service.marketing import read_campaign

    with servers(settings, start_embedded=False) as (db, _):
        return asyncio.run(read_campaign(db, ref))


def describe_campaign(state: Any) -> str:
    """A campaign's terms and counters, as ``hub marketing show`` prints them."""
    from domain.marketing import shard_len

    lines = [
        f"campaign {state.campaign} ({state.title or 'untitled'}) of "
        f"{state.channel_account} on {state.platform}/{state.shop_id}: "
        f"{'closed' if state.closed else 'published'}",
        f"  window: {state.starts_at.isoformat()} .. {state.ends_at.isoformat()}",
        f"  reduction: {_json_text(state.reduction)}",
        f"  coupon: {_json_text(state.coupon)} (per buyer {state.per_buyer_limit}, "
        f"quantity {state.total_quantity})",
        f"  fission: {_json_text(state.fission)}",
        f"  claimed {state.claimed}, fission rewards {state.rewarded}, "
        f"redeemed {state.redeemed}, discounts given {state.discount_fen} fen",
        f"  buyers holding coupons {shard_len(state.holders)}, friends credited "
        f"{shard_len(state.credited)}",
    ]
    return "\n".join(lines)


def _json_text(value: Any) -> str:
    return "none" if value is None else msgspec.json.encode(value).decode()


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    """``hub marketing show CAMPAIGN_REF``."""
    from hub.service.marketing import CampaignNotFoundError

    try:
        state = _campaign(settings, args.campaign)
    except CampaignNotFoundError as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps(msgspec.to_builtins(state), indent=2, ensure_ascii=False))
    else:
        print(describe_campaign(state))
    return 0


def cmd_price(settings: Settings, args: argparse.Namespace) -> int:
    """``hub marketing price CAMPAIGN_REF LINES_JSON``."""
    from domain.marketing import CartLine, price_order
    from hub.service.marketing import CampaignNotFoundError

    text = args.lines
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        lines = msgspec.json.decode(text, type=list[CartLine])
    except msgspec.ValidationError as exc:
        return fail(f"LINES_JSON: {exc}")
    except msgspec.DecodeError as exc:
        return fail(f"LINES_JSON: malformed JSON ({exc})")
    if not lines:
        return fail("LINES_JSON: no line (a cart has at least one)")
    try:
        state = _campaign(settings, args.campaign)
    except CampaignNotFoundError as exc:
        return fail(str(exc))
    coupon = None if args.coupon == "none" else args.coupon
    priced = price_order(lines, state.offers(coupon))
    rows = [
        {
            "sku": line.sku,
            "value_fen": share.value_fen,
            "reduction_fen": share.reduction_fen,
            "coupon_fen": share.coupon_fen,
            "discount_fen": share.discount_fen,
            "total_fen": share.value_fen - share.discount_fen,
        }
        for line, share in zip(lines, priced.lines, strict=True)
    ]
    result = {
        "campaign": state.campaign,
        "subtotal_fen": priced.subtotal_fen,
        "reduction_fen": priced.reduction_fen,
        "coupon": args.coupon,
        "coupon_applied": priced.coupon_applied,
        "coupon_fen": priced.coupon_fen,
        "discount_fen": priced.discount_fen,
        "payable_fen": priced.payable_fen,
        "lines": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"subtotal {priced.subtotal_fen} fen - reduction {priced.reduction_fen} - "
        f"{args.coupon} coupon {priced.coupon_fen}"
        f"{'' if priced.coupon_applied or coupon is None else ' (below its minimum)'}"
        f" = {priced.payable_fen} fen"
    )
    for row in rows:
        print(
            f"  {row['sku']}: {row['value_fen']} - {row['reduction_fen']} - "
            f"{row['coupon_fen']} = {row['total_fen']} fen"
        )
    return 0
