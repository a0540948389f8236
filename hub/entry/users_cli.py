"""The ``hub users add NAME`` verb: a person who may sign in to the dashboard.

The password is read from stdin (its first line; a terminal is asked without
echo) and kept only as its scrypt hash (:func:`hub.entry.dashboard.add_user`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from hub.infra.settings import Settings, SettingsError


def add_users_verbs(verbs: Any) -> None:
    """Add ``users add NAME`` to the sub-parsers."""
    users = verbs.add_parser("users", help="people who may sign in to the dashboard")
    uverbs = users.add_subparsers(dest="uverb", required=True)
    add = uverbs.add_parser(
        "add",
        help="add a dashboard user (or give one a new password, which ends their "
        "sessions); the password is the first line of stdin",
    )
    add.add_argument("name")
    add.set_defaults(func=cmd_users_add)


def cmd_users_add(settings: Settings, args: argparse.Namespace) -> int:
    """``hub users add NAME``: the password is the first line of stdin."""
    from hub.bootstrap import say, servers
    from hub.entry.dashboard import UserError, add_user
    from hub.infra.migrate import migrate

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        try:
            new = asyncio.run(add_user(db, args.name, password))
        except UserError as exc:
            raise SettingsError(str(exc)) from None
    say(f"dashboard user {args.name} {'added' if new else 'given a new password'}")
    return 0
