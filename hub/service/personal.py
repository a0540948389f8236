"""Buyers' personal data in and out of the log: sealed per data subject.

:class:`PersonalData` turns the buyer a platform reported
(:class:`connectors.common.BuyerPersonalData`) into the
:class:`domain.personal.SealedBuyer` an order's placement carries, under the
profile policy of the binding's platform, and opens it again for a read (or
says it was erased). The subject id is a keyed hash (HMAC-SHA256 under a key
derived from the master key) of the buyer's stable identifier, so the same
phone gives the same subject on every platform that merges, and nobody without
the master key can tell which phone a subject id stands for.

Every field is sealed with AES-256-GCM under the subject's key
(:class:`hub.infra.subjects.SubjectKeys`), bound to the subject and the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

from connectors.common import BuyerPersonalData
from domain.personal import (
    ENCRYPTED_TRANSFER_TO_CRM,
    ERASED,
    PersonalField,
    ProfilePolicy,
    SealedBuyer,
    mask,
    profile_policy,
    subject_identity,
)
from hub.infra.keys import Sealer

if TYPE_CHECKING:
    from domain.policy import PolicyBook
    from hub.infra.subjects import SubjectKeys


def subject_pepper(master_key: bytes) -> bytes:
    """The HMAC key of subject ids, derived from the master key."""
    return hmac.new(master_key, b"hub: subject id pepper v1", hashlib.sha256).digest()


class PersonalData:
    """Seals buyers for the log and opens them for reads.

    Args:
        keys: The subjects' key store.
        master_key: The hub's master key (the subject ids' HMAC key derives
            from it).
    """

    def __init__(self, keys: SubjectKeys, master_key: bytes) -> None:
        self.keys = keys
        self._pepper = subject_pepper(master_key)

    def subject_id(self, identity: str) -> str:
        """``sub_`` + 32 hex digits of the identity's keyed hash."""
        digest = hmac.new(self._pepper, identity.encode(), hashlib.sha256)
        return "sub_" + digest.hexdigest()[:32]

    async def seal(
        self,
        policy: ProfilePolicy,
        *,
        platform: str,
        shop_id: str,
        order_id: str,
        buyer: BuyerPersonalData,
        crm_ref: str = "",
    ) -> SealedBuyer | None:
        """The buyer as the log keeps it (None: the order names no one).

        Fields the policy does not keep are dropped; in the CRM mode none is
        kept (the CRM holds them) and ``crm_ref`` names the delivery.
        """
        values = plain_fields(buyer, policy.fields)
        if not values:
            return None
        subject = self.subject_id(
            subject_identity(
                policy,
                platform=platform,
                shop_id=shop_id,
                order_id=order_id,
                phone=buyer.phone,
                buyer_ref=buyer.buyer_ref,
            )
        )
        version, key = await self.keys.current(subject)
        kept = {} if policy.mode == ENCRYPTED_TRANSFER_TO_CRM else values
        return SealedBuyer(
            subject_id=subject,
            key_version=version,
            mode=policy.mode,
            fields={
                name: seal_field(key, subject, name, value)
                for name, value in kept.items()
            },
            crm_ref=crm_ref,
        )

    async def open(
        self,
        subject_id: str,
        key_version: int,
        fields: Mapping[PersonalField, str],
        *,
        reveal: bool = False,
    ) -> dict[PersonalField, str] | None:
        """The fields in the clear (``reveal``) or masked; None once erased."""
        key = (await self.keys.versions(subject_id)).get(key_version)
        if key is None:
            return None
        shown: dict[PersonalField, str] = {}
        for name, sealed in fields.items():
            value = open_field(key, subject_id, name, sealed)
            if value is None:
                return None
            shown[name] = value if reveal else mask(name, value)
        return shown

    async def show(
        self,
        subject_id: str,
        key_version: int,
        fields: Mapping[PersonalField, str],
        *,
        reveal: bool = False,
    ) -> dict[PersonalField, str]:
        """Like :meth:`open`, with every field ``"erased"`` once erased."""
        opened = await self.open(subject_id, key_version, fields, reveal=reveal)
        if opened is None:
            return dict.fromkeys(fields, ERASED)
        return opened


def plain_fields(
    buyer: BuyerPersonalData, kept: tuple[PersonalField, ...]
) -> dict[PersonalField, str]:
    """The buyer's non-empty fields among ``kept``."""
    values: dict[PersonalField, str] = {}
    for name in kept:
        value = getattr(buyer, name)
        if value:
            values[name] = str(value)
    return values


def seal_field(key: bytes, subject_id: str, name: str, value: str) -> str:
    """One field sealed under the subject's key (base64)."""
    blob = Sealer(key).seal(value.encode(), f"{subject_id}/{name}")
    return base64.b64encode(blob).decode()


def open_field(key: bytes, subject_id: str, name: str, sealed: str) -> str | None:
    """One field's text, or None when it does not open under ``key``."""
    try:
        blob = base64.b64decode(sealed, validate=True)
        return Sealer(key).open(blob, f"{subject_id}/{name}").decode()
    except (binascii.Error, ValueError):
        return None


def profile_policies(book: PolicyBook) -> dict[str, ProfilePolicy]:
    """Each platform's profile policy, from its ``sync.user_profile`` in the book.

    A platform whose profile names no user profile mode keeps no personal data.

    Raises:
        domain.personal.UnknownProfileModeError: a mode the hub does not know.
    """
    policies: dict[str, ProfilePolicy] = {}
    for code, profile in book.profiles.items():
        rule = profile.sync.user_profile if profile.sync is not None else None
        if rule is not None:
            policies[code] = profile_policy(
                rule.mode, fields=rule.fields or None, merge=rule.merge
            )
    return policies
