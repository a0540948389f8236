"""The ``hub profiles`` and ``hub secrets`` verbs.

Wired into ``hub/entry/cli.py``'s ``build_parser`` with
``add_profiles_verbs(verbs)``. ``profiles show`` masks every personal field
unless ``--reveal`` is given with the operator's key (the master key's file);
``profiles erase`` deletes a subject's keys (crypto-shredding: the log keeps
its ciphertext, every read then shows "erased"); ``profiles rotate`` gives a
subject a newer key. ``secrets seal`` seals an app secret for the connectors
file (read from standard input, so it never shows in a process list), and
``secrets rotate`` seals every subject key again under a new master key.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import sys
from pathlib import Path
from typing import Any

from hub.infra.settings import Settings, SettingsError


def add_profiles_verbs(verbs: Any) -> None:
    """Add ``profiles …`` and ``secrets …`` to the sub-parsers.

    Args:
        verbs: The object ``ArgumentParser.add_subparsers`` returned.
    """
    profiles = verbs.add_parser("profiles", help="buyers' profiles (personal data)")
    pverbs = profiles.add_subparsers(dest="profiles_verb", required=True)
    listing = pverbs.add_parser("list", help="the newest profiles, masked")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=cmd_profiles_list)
    show = pverbs.add_parser("show", help="one subject's profile (masked)")
    show.add_argument("subject", help="a subject id, sub_…")
    show.add_argument(
        "--reveal", action="store_true", help="show the fields in the clear"
    )
    show.add_argument(
        "--key-file",
        type=Path,
        help="the operator's key (the master key file); needed by --reveal",
    )
    show.set_defaults(func=cmd_profiles_show)
    erase = pverbs.add_parser(
        "erase", help="delete a subject's keys: every copy reads 'erased'"
    )
    erase.add_argument("subject")
    erase.set_defaults(func=cmd_profiles_erase)
    rotate = pverbs.add_parser("rotate", help="give a subject a newer key")
    rotate.add_argument("subject")
    rotate.set_defaults(func=cmd_profiles_rotate)

    secrets = verbs.add_parser("secrets", help="the master key and sealed secrets")
    sverbs = secrets.add_subparsers(dest="secrets_verb", required=True)
    seal = sverbs.add_parser(
        "seal", help="seal an app secret (from stdin) for the connectors file"
    )
    seal.add_argument("platform")
    seal.add_argument("shop_id")
    seal.add_argument("name", help="the credential's name, e.g. app_secret")
    seal.set_defaults(func=cmd_secrets_seal)
    rotate_master = sverbs.add_parser(
        "rotate", help="seal every subject key again under a new master key"
    )
    rotate_master.add_argument("new_key_file", type=Path)
    rotate_master.set_defaults(func=cmd_secrets_rotate)


def _master_key(settings: Settings) -> bytes:
    from hub.infra.keys import MasterKeyError, master_key

    try:
        return master_key(settings.home, create=False)
    except MasterKeyError as exc:
        raise SettingsError(str(exc)) from None


def _check_operator_key(key_file: Path | None, master: bytes) -> None:
    from hub.infra.keys import MasterKeyError, read_key_file

    if key_file is None:
        raise SettingsError("--reveal needs the operator's key: --key-file FILE")
    try:
        given = read_key_file(key_file)
    except MasterKeyError as exc:
        raise SettingsError(f"--key-file: {exc}") from None
    if not hmac.compare_digest(given, master):
        raise SettingsError(f"--key-file {key_file}: not the hub's master key")


def _personal(database_url: str, master: bytes) -> Any:
    from hub.infra.subjects import SubjectKeys
    from hub.service.personal import PersonalData

    return PersonalData(SubjectKeys(database_url, master), master)


async def _caught_up_profiles(database_url: str) -> None:
    """Bring ``customer_profiles`` up to the log's head."""
    from hub.entry.catch_up import catch_up
    from projections.profiles import CustomerProfilesProjection

    await catch_up(database_url, CustomerProfilesProjection())


async def profile_text(
    database_url: str, master: bytes, subject: str, *, reveal: bool = False
) -> str | None:
    """A subject's profile as ``hub profiles show`` prints it (None: unknown)."""
    from projections.profiles import ProfilesView

    await _caught_up_profiles(database_url)
    row = await ProfilesView(database_url).profile(subject)
    if row is None:
        return None
    shown = await _personal(database_url, master).show(
        row.subject_id, row.key_version, row.sealed, reveal=reveal
    )
    lines = [
        f"subject {row.subject_id}  ({row.mode})",
        f"  accounts: {', '.join(row.accounts)}",
        f"  orders: {row.orders}, first {row.first_order_at:%Y-%m-%d %H:%M}, "
        f"last {row.last_order_at:%Y-%m-%d %H:%M} UTC",
    ]
    if row.crm_ref:
        lines.append(f"  crm reference: {row.crm_ref}")
    lines += [f"  {name}: {value}" for name, value in shown.items()]
    if not shown and not row.crm_ref:
        lines.append("  (no personal field kept)")
    return "\n".join(lines)


async def _list(database_url: str, master: bytes, limit: int) -> str:
    from projections.profiles import ProfilesView

    await _caught_up_profiles(database_url)
    personal = _personal(database_url, master)
    lines = []
    for row in await ProfilesView(database_url).subjects(limit):
        shown = await personal.show(row.subject_id, row.key_version, row.sealed)
        fields = " ".join(f"{k}={v}" for k, v in shown.items())
        lines.append(f"{row.subject_id} {row.mode} orders={row.orders} {fields}")
    return "\n".join(lines) or "no profiles"


def cmd_profiles_list(settings: Settings, args: argparse.Namespace) -> int:
    """``hub profiles list``."""
    from hub.bootstrap import say, servers
    from hub.infra.migrate import migrate

    master = _master_key(settings)
    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        text = asyncio.run(_list(db, master, args.limit))
    say(text)
    return 0


def cmd_profiles_show(settings: Settings, args: argparse.Namespace) -> int:
    """``hub profiles show SUBJECT [--reveal --key-file FILE]``."""
    from hub.bootstrap import say, servers
    from hub.infra.migrate import migrate

    master = _master_key(settings)
    if args.reveal:
        _check_operator_key(args.key_file, master)
    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        text = asyncio.run(profile_text(db, master, args.subject, reveal=args.reveal))
    if text is None:
        print(f"hub: error: no profile of subject {args.subject}", file=sys.stderr)
        return 1
    say(text)
    return 0


def _on_keys(settings: Settings, action: str, subject: str) -> int:
    """Run ``erase`` or ``rotate`` of the subject's keys; the result."""
    from hub.bootstrap import servers
    from hub.infra.migrate import migrate

    master = _master_key(settings)
    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        keys = _personal(db, master).keys
        run = keys.erase if action == "erase" else keys.rotate
        return int(asyncio.run(run(subject)))


def cmd_profiles_erase(settings: Settings, args: argparse.Namespace) -> int:
    """``hub profiles erase SUBJECT``."""
    from hub.bootstrap import say

    deleted = _on_keys(settings, "erase", args.subject)
    if not deleted:
        print(f"hub: error: subject {args.subject} has no key", file=sys.stderr)
        return 1
    say(f"erased {args.subject}: {deleted} key(s) deleted; every read shows 'erased'")
    return 0


def cmd_profiles_rotate(settings: Settings, args: argparse.Namespace) -> int:
    """``hub profiles rotate SUBJECT``."""
    from hub.bootstrap import say

    version = _on_keys(settings, "rotate", args.subject)
    say(f"{args.subject}: new data is sealed with key version {version}")
    return 0


def cmd_secrets_seal(settings: Settings, args: argparse.Namespace) -> int:
    """``hub secrets seal PLATFORM SHOP_ID NAME`` (the value on stdin)."""
    from hub.bootstrap import master_key_of, say
    from hub.infra.keys import Sealer, credential_context

    value = sys.stdin.readline().rstrip("\n")
    if not value:
        raise SettingsError("secrets seal: give the secret on standard input")
    master = master_key_of(settings)
    context = credential_context(args.platform, args.shop_id, args.name)
    say(Sealer(master).seal_text(value, context))
    return 0


def cmd_secrets_rotate(settings: Settings, args: argparse.Namespace) -> int:
    """``hub secrets rotate NEW_KEY_FILE``: subject keys sealed again."""
    from hub.bootstrap import say, servers
    from hub.infra.keys import MasterKeyError, read_key_file
    from hub.infra.migrate import migrate

    master = _master_key(settings)
    try:
        fresh = read_key_file(args.new_key_file)
    except MasterKeyError as exc:
        raise SettingsError(str(exc)) from None
    with servers(settings, start_embedded=False) as (db, _):
        migrate(db)
        count = asyncio.run(_personal(db, master).keys.reseal(fresh))
    say(
        f"{count} subject keys sealed under {args.new_key_file}; replace the "
        "master key with it before the next start"
    )
    return 0
