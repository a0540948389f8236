"""The replay verbs: ``hub history``, ``hub state``, ``hub trace`` and
``hub projections rebuild|list``.

Wired into :func:`hub.entry.cli.build_parser` with
``add_replay_verbs(verbs, projection_verbs)``. The reads come from
:mod:`hub.service.replay` (the log itself); the projection verbs from
:mod:`projections.rebuild` (blue-green versions).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from hub.infra.settings import Settings, SettingsError

if TYPE_CHECKING:
    from projections.base import Projection


def add_replay_verbs(verbs: Any, projection_verbs: Any) -> None:
    """Add ``history``, ``state``, ``trace`` and ``projections rebuild|list``.

    Args:
        verbs: The object ``ArgumentParser.add_subparsers`` returned.
        projection_verbs: The sub-parsers of ``hub projections``.
    """
    from hub.service.replay import REF_FORMS

    # The forms resolve() understands, from the one list of them.
    ref_help = "one of: " + ", ".join(REF_FORMS)
    history = verbs.add_parser(
        "history", help="every event of one aggregate, oldest first"
    )
    history.add_argument("ref", help=ref_help)
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(func=cmd_history)
    state = verbs.add_parser("state", help="one aggregate as it was at a point")
    state.add_argument("ref", help=ref_help)
    state.add_argument(
        "--at", required=True, help="log position (integer) or ISO 8601 time"
    )
    state.add_argument("--json", action="store_true", help="print JSON")
    state.set_defaults(func=cmd_state)
    trace = verbs.add_parser(
        "trace", help="every event caused by the inputs behind one aggregate"
    )
    trace.add_argument("ref", help=ref_help + ", or a correlation id")
    trace.add_argument("--json", action="store_true", help="print JSON")
    trace.set_defaults(func=cmd_trace)
    rebuild = projection_verbs.add_parser(
        "rebuild",
        help="build a new version of a projection's tables beside the serving one, "
        "then switch to it (resumes a killed rebuild)",
    )
    rebuild.add_argument(
        "name", help="a projection, or all (every one in one pass over the log)"
    )
    rebuild.add_argument(
        "--batch", type=int, default=None, help="events per transaction"
    )
    rebuild.set_defaults(func=cmd_projections_rebuild)
    listing = projection_verbs.add_parser(
        "list", help="each projection's version, position and lag"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_projections_list)


def _read(
    settings: Settings,
    args: argparse.Namespace,
    read: Callable[[str], Coroutine[Any, Any, Any]],
    text: Callable[[Any], str],
) -> int:
    from hub.bootstrap import say, servers
    from hub.service.replay import ReplayError

    with servers(settings, start_embedded=False) as (db, _):
        try:
            result: Any = asyncio.run(read(db))
        except ReplayError as exc:
            print(f"hub: error: {exc}", file=sys.stderr)
            return 1
    say(msgspec.json.encode(result).decode() if args.json else text(result))
    return 0


def cmd_history(settings: Settings, args: argparse.Namespace) -> int:
    """``hub history REF [--json]``."""
    from hub.service import replay

    read = functools.partial(replay.history, ref=args.ref)
    return _read(settings, args, read, replay.format_history)


def cmd_state(settings: Settings, args: argparse.Namespace) -> int:
    """``hub state REF --at POSITION|TIME [--json]``."""
    from hub.service import replay

    read = functools.partial(replay.state_at, ref=args.ref, at=args.at)
    return _read(settings, args, read, replay.format_state)


def cmd_trace(settings: Settings, args: argparse.Namespace) -> int:
    """``hub trace REF [--json]``."""
    from hub.service import replay

    read = functools.partial(replay.trace, ref=args.ref)
    return _read(settings, args, read, replay.format_history)


def _projections(settings: Settings) -> dict[str, Projection]:
    from hub.bootstrap import default_projections, policy_book_of

    return {p.name: p for p in default_projections(policy_book_of(settings))}


def cmd_projections_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    """``hub projections rebuild NAME|all``: blue-green, with a progress bar.

    ``all`` builds every projection that can be rebuilt blue-green in one pass
    over the log and names the others (their tables cannot be copied).
    """
    from hub.bootstrap import say, servers
    from hub.infra.migrate import migrate
    from hub.infra.runtime import run
    from projections.rebuild import (
        REBUILD_BATCH,
        ProgressBar,
        RebuildError,
        rebuild_many,
        uncopyable,
    )

    known = _projections(settings)
    if args.name == "all":
        chosen = list(known.values())
    elif args.name in known:
        chosen = [known[args.name]]
    else:
        names = ", ".join(sorted(known))
        raise SettingsError(
            f"projection {args.name!r} does not exist; known: {names}, or all"
        )
    bar = ProgressBar(args.name, sys.stderr.write)
    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        refused = asyncio.run(uncopyable(db, chosen)) if args.name == "all" else {}
        try:
            done = run(  # the hub's event loop: uvloop waits on I/O for less CPU
                rebuild_many(
                    db,
                    [p for p in chosen if p.name not in refused],
                    batch=args.batch or REBUILD_BATCH,
                    progress=bar,
                )
            )
        except RebuildError as exc:
            print(f"hub: error: {exc}", file=sys.stderr)
            return 1
    for name, (version, position) in done.items():
        say(f"projection {name} version {version} serving from log position {position}")
    for name, why in refused.items():
        say(f"projection {name} not rebuilt: {why}")
    return 0


def cmd_projections_list(settings: Settings, args: argparse.Namespace) -> int:
    """``hub projections list [--json]``."""
    from hub.bootstrap import say, servers
    from hub.infra.migrate import migrate
    from projections.rebuild import list_versions

    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        infos = asyncio.run(list_versions(db, list(_projections(settings).values())))
    if args.json:
        say(msgspec.json.encode(infos).decode())
        return 0
    say(
        f"{'projection':<20} {'version':>7} {'position':>10} "
        f"{'behind':>8} {'seconds':>8}"
    )
    for info in infos:
        building = (
            f"  (building v{info.building} at {info.building_position})"
            if info.building is not None
            else ""
        )
        say(
            f"{info.name:<20} {info.version:>7} {info.position:>10} "
            f"{info.events_behind:>8} {info.seconds_behind:>8.1f}{building}"
        )
    return 0
