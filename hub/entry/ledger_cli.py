"""The ``hub ledger`` and ``hub token`` verbs: finance's view of the ledger.

Wired into ``hub/entry/cli.py``'s ``build_parser`` with
``add_ledger_verbs(verbs)``. Each read first brings the ``ledger`` projection
up to the log, so it answers for everything recorded so far (docs/ledger.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from domain.calendar import CHINA_TIME
from hub.infra.settings import Settings, SettingsError

T = TypeVar("T")


def add_ledger_verbs(verbs: Any) -> None:
    """Add ``ledger …`` and ``token issue`` to the sub-parsers.

    Args:
        verbs: The object ``ArgumentParser.add_subparsers`` returned.
    """
    ledger = verbs.add_parser("ledger", help="the commission ledger (finance)")
    lverbs = ledger.add_subparsers(dest="lverb", required=True)

    balances = lverbs.add_parser("balances", help="every account's balance")
    balances.add_argument(
        "--at", type=parse_instant, default=None, help="ISO time (default: now)"
    )
    balances.add_argument(
        "--basis",
        choices=("effective", "recorded"),
        default="effective",
        help="take the time as when money moved (effective) or when recorded",
    )
    balances.add_argument(
        "--status", choices=("posted", "pending", "voided"), default="posted"
    )
    balances.add_argument("--json", action="store_true", help="print JSON")
    balances.set_defaults(func=cmd_balances)

    trial = lverbs.add_parser(
        "trial-balance", help="debits, credits and any unbalanced transaction"
    )
    trial.add_argument("--json", action="store_true", help="print JSON")
    trial.set_defaults(func=cmd_trial_balance)

    export = lverbs.add_parser("export", help="postings of a period as CSV")
    export.add_argument("--from", dest="start", type=parse_day, required=True)
    export.add_argument("--to", dest="end", type=parse_day, required=True)
    export.add_argument("--out", default="-", help="file, or - for stdout")
    export.set_defaults(func=cmd_export)

    reconcile = lverbs.add_parser(
        "reconcile", help="compare the platforms' statements of a day with the ledger"
    )
    reconcile.add_argument("--date", type=parse_day, required=True)
    reconcile.add_argument("--json", action="store_true", help="print JSON")
    reconcile.set_defaults(func=cmd_reconcile)

    rebuild = lverbs.add_parser(
        "rebuild",
        help="empty the ledger's tables and replay the log into them (in place: "
        "its triggers keep it out of blue-green rebuilds)",
    )
    rebuild.set_defaults(func=cmd_rebuild)

    token = verbs.add_parser("token", help="finance API access tokens")
    tverbs = token.add_subparsers(dest="tverb", required=True)
    issue = tverbs.add_parser("issue", help="mint a JWT signed with HUB_JWT_KEY")
    issue.add_argument("--scope", action="append", required=True)
    issue.add_argument("--ttl", default="1h", help="e.g. 15m, 1h, 7d")
    issue.add_argument("--subject", default="finance")
    issue.set_defaults(func=cmd_token_issue)


def parse_instant(text: str) -> datetime:
    """An ISO time; without an offset it is China time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO time (e.g. 2026-11-27T08:00:00+08:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA_TIME)


def parse_day(text: str) -> date:
    """An ISO date."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date (e.g. 2026-11-27)"
        ) from None


def day_start(day: date) -> datetime:
    """When ``day`` begins in China time."""
    return datetime.combine(day, time(0), CHINA_TIME)


def _with_ledger(settings: Settings, read: Callable[[str], Awaitable[T]]) -> T:
    """Run ``read`` on the database once the ledger view has caught up."""
    from hub.bootstrap import servers
    from hub.infra.migrate import migrate

    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        return asyncio.run(_caught_up_then(db, read))


async def _caught_up_then(database_url: str, read: Callable[[str], Awaitable[T]]) -> T:
    from hub.entry.catch_up import catch_up
    from projections.ledger import LedgerProjection

    await catch_up(database_url, LedgerProjection())
    return await read(database_url)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def cmd_balances(settings: Settings, args: argparse.Namespace) -> int:
    """``hub ledger balances [--at TIME] [--json]``."""
    import psycopg

    from projections.ledger import balances

    at = args.at or datetime.now(UTC)

    async def read(db: str) -> list[Any]:
        async with await psycopg.AsyncConnection.connect(db) as conn:
            return await balances(conn, at, args.basis, args.status)

    rows = _with_ledger(settings, read)
    if args.json:
        print(
            _json(
                {
                    "at": at.isoformat(),
                    "basis": args.basis,
                    "status": args.status,
                    "balances": [
                        {
                            "account": r.account,
                            "kind": r.kind,
                            "balance_fen": r.balance_fen,
                        }
                        for r in rows
                    ],
                }
            )
        )
        return 0
    print(f"balances at {at.isoformat()} ({args.basis} time, {args.status})")
    for row in rows:
        print(f"  {row.account:<40} {row.balance_fen:>14,d} fen")
    if not rows:
        print("  (no balances)")
    return 0


def cmd_trial_balance(settings: Settings, args: argparse.Namespace) -> int:
    """``hub ledger trial-balance [--json]``; exit 1 when anything is unbalanced."""
    import psycopg

    from projections.ledger import TrialBalance, trial_balance

    async def read(db: str) -> TrialBalance:
        async with await psycopg.AsyncConnection.connect(db) as conn:
            return await trial_balance(conn)

    trial = _with_ledger(settings, read)
    data = {
        "debits_fen": trial.debits_fen,
        "credits_fen": trial.credits_fen,
        "transactions": trial.transactions,
        "unbalanced": trial.unbalanced,
    }
    if args.json:
        print(_json(data))
    else:
        print(
            f"debits {trial.debits_fen:,d} fen, credits {trial.credits_fen:,d} fen "
            f"over {trial.transactions} transactions; unbalanced: "
            f"{', '.join(trial.unbalanced) or 'none'}"
        )
    balanced = trial.debits_fen == trial.credits_fen and not trial.unbalanced
    return 0 if balanced else 1


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """``hub ledger export --from D --to D``: the days' postings as CSV."""
    import psycopg

    from projections.ledger import export_rows, write_csv

    if args.end < args.start:
        raise SettingsError(f"--to {args.end} is before --from {args.start}")
    start, end = day_start(args.start), day_start(args.end + timedelta(days=1))

    async def read(db: str) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(db) as conn:
            return await export_rows(conn, start, end)

    rows = _with_ledger(settings, read)
    if args.out == "-":
        write_csv(sys.stdout, rows)
    else:
        # A byte-order mark makes spreadsheets read the file as UTF-8.
        with open(args.out, "w", newline="", encoding="utf-8-sig") as out:
            write_csv(out, rows)
    return 0


async def _reconcile(settings: Settings, database_url: str, day: date) -> list[Any]:
    from hub.bootstrap import (
        bootstrap,
        connect_platforms,
        connectors_config_of,
        policy_book_of,
        token_store_of,
    )
    from hub.service.reconciliation import reconcile_day
    from projections.ledger import LedgerProjection

    book = policy_book_of(settings)
    config = connectors_config_of(settings)
    hub = bootstrap(
        database_url=database_url,
        nats_url=None,
        run_relay=False,
        run_processes=False,
        projections=[LedgerProjection()],
        apply_migrations=False,
        policy_book=book,
    )
    platforms = connect_platforms(
        hub, config, token_store=token_store_of(database_url, config)
    )
    await hub.start()
    try:
        await _caught_up_then(database_url, _nothing)
        return await reconcile_day(
            hub.committer, database_url, book, platforms.connectors, day
        )
    finally:
        await platforms.connectors.aclose()
        await hub.stop()


async def _nothing(database_url: str) -> None:
    return None


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    """``hub ledger reconcile --date D [--json]``: each configured shop's
    statement of the day against the ledger; every difference is recorded as
    an event. Exit 1 when anything differs or a statement could not be read."""
    from hub.bootstrap import servers
    from hub.infra.migrate import migrate

    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        reports = asyncio.run(_reconcile(settings, db, args.date))
    if args.json:
        print(
            _json(
                {"date": args.date.isoformat(), "shops": [r.as_dict() for r in reports]}
            )
        )
    else:
        for report in reports:
            state = report.error or f"{len(report.differences)} differences"
            print(
                f"{report.platform}/{report.shop_id} {args.date}: "
                f"{report.lines} lines, {state}"
            )
            for d in report.differences:
                print(
                    f"  order {d.order_id} {d.field}: statement {d.statement_fen}, "
                    f"ledger {'none' if d.ledger_fen is None else d.ledger_fen}"
                )
        if not reports:
            print("no shop with settlement terms is configured")
    clean = all(not r.differences and not r.error for r in reports)
    return 0 if clean else 1


def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    """``hub ledger rebuild``: the ledger rebuilt from the log, in place."""
    from hub.bootstrap import say, servers
    from hub.infra.migrate import migrate
    from projections.base import rebuild
    from projections.ledger import LedgerProjection

    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        position = asyncio.run(rebuild(db, LedgerProjection()))
    say(f"ledger rebuilt from the log up to position {position}")
    return 0


def cmd_token_issue(settings: Settings, args: argparse.Namespace) -> int:
    """``hub token issue --scope ledger:read --ttl 1h``: print a token."""
    from hub.infra.access_tokens import AccessKeyError, issue, parse_ttl, signing_key

    try:
        key = signing_key()
        ttl = parse_ttl(args.ttl)
    except (AccessKeyError, ValueError) as exc:
        raise SettingsError(str(exc)) from None
    print(
        issue(
            key,
            scopes=list(args.scope),
            ttl=ttl,
            now=datetime.now(UTC),
            subject=args.subject,
        )
    )
    return 0
