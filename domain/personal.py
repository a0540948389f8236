"""Buyers' personal data as the log keeps it: sealed per subject, masked when shown.

A buyer's name, phone, address and platform open id never enter an event in the
clear. The hub seals each field with the key of its data subject before the
command is made (``hub/service/personal.py``); an event carries a
:class:`SealedBuyer`: the subject's id, the key version and the sealed fields.
Deleting the subject's key erases the person from every copy of the log
(crypto-shredding): the ciphertext stays, nothing can open it.

How a platform's buyers become profiles is the binding policy's
``user_profile.mode`` (:data:`PROFILE_MODES`, see ``docs/privacy.md``).

This module is pure: the sealing itself needs a cipher and a key store, which
live in ``hub/``.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

#: The personal fields of a buyer, in the order they are shown.
PersonalField = Literal["name", "phone", "address", "buyer_ref"]
PERSONAL_FIELDS: Final[tuple[PersonalField, ...]] = (
    "name",
    "phone",
    "address",
    "buyer_ref",
)

#: One customer profile per person across platforms, keyed by a keyed hash of
#: the buyer's phone (else the platform's open id); only masked values shown.
DE_IDENTIFIED_MERGE: Final = "de_identified_merge"
#: One profile per platform account (platform, shop, buyer), never merged.
STORED_SEPARATELY: Final = "stored_separately"
#: Sent encrypted and signed to the merchant's CRM; the hub keeps the reference.
ENCRYPTED_TRANSFER_TO_CRM: Final = "encrypted_transfer_to_crm"
#: The binding's own field mapping: which fields are kept, and whether merged.
CUSTOM_MAPPING: Final = "custom_mapping"
PROFILE_MODES: Final[tuple[str, ...]] = (
    DE_IDENTIFIED_MERGE,
    STORED_SEPARATELY,
    ENCRYPTED_TRANSFER_TO_CRM,
    CUSTOM_MAPPING,
)

#: What a read shows for a field whose subject key was deleted.
ERASED: Final = "erased"

#: A data subject's id: ``sub_`` and 32 hex digits of a keyed hash.
SubjectId = Annotated[str, msgspec.Meta(pattern=r"^sub_[0-9a-f]{32}$")]
#: One sealed field: base64 of nonce, ciphertext and tag.
SealedField = Annotated[str, msgspec.Meta(max_length=4096)]


class SealedBuyer(msgspec.Struct, frozen=True, kw_only=True):
    """A buyer as an event keeps it: sealed fields under the subject's key.

    Attributes:
        subject_id: The data subject (a keyed hash, never the raw identifier).
        key_version: The subject key the fields were sealed with.
        mode: The profile mode the binding's policy gave (:data:`PROFILE_MODES`).
        fields: Personal field → sealed value; a field not kept is absent.
        crm_ref: For :data:`ENCRYPTED_TRANSFER_TO_CRM`: the delivery's
            reference (the fields then stay empty: the CRM holds them).
    """

    subject_id: SubjectId
    key_version: Annotated[int, msgspec.Meta(ge=1)] = 1
    mode: Annotated[str, msgspec.Meta(max_length=64)] = DE_IDENTIFIED_MERGE
    fields: dict[PersonalField, SealedField] = {}
    crm_ref: Annotated[str, msgspec.Meta(max_length=128)] = ""


def mask_phone(phone: str) -> str:
    """``13812341234`` → ``138****1234``: the first three and last four digits."""
    digits = phone.strip()
    if len(digits) <= 7:
        return "*" * len(digits)
    return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


def mask_name(name: str) -> str:
    """``张三丰`` → ``张**``: the first character."""
    name = name.strip()
    return name[:1] + "*" * (len(name) - 1) if name else ""


def mask_address(address: str) -> str:
    """The first word (a province) and stars for the rest."""
    first, _, rest = address.strip().partition(" ")
    return f"{first} ***" if rest else "***"


def mask_ref(ref: str) -> str:
    """An open id: its first two and last two characters."""
    return f"{ref[:2]}***{ref[-2:]}" if len(ref) > 4 else "***"


_MASKS = {
    "name": mask_name,
    "phone": mask_phone,
    "address": mask_address,
    "buyer_ref": mask_ref,
}


def mask(field: PersonalField, value: str) -> str:
    """The masked form of ``value`` of ``field`` (what reads show by default)."""
    return _MASKS[field](value)


class ProfilePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How one platform's buyers become profiles (from the binding's policy).

    Attributes:
        mode: One of :data:`PROFILE_MODES`.
        fields: The personal fields kept (the others are dropped at the door).
        merge: One profile per person across platforms (keyed by the phone's
            keyed hash) rather than one per platform account.
    """

    mode: str
    fields: tuple[PersonalField, ...] = PERSONAL_FIELDS
    merge: bool = False


class UnknownProfileModeError(ValueError):
    """A policy names a profile mode the hub does not know."""


def profile_policy(
    mode: str,
    *,
    fields: tuple[PersonalField, ...] | None = None,
    merge: bool | None = None,
) -> ProfilePolicy:
    """The profile policy of ``mode``, with its defaults.

    De-identified merge keeps every field and merges; stored separately keeps
    every field per account; the CRM transfer keeps none (the CRM holds them);
    a custom mapping keeps the fields it names (default: name and phone) and
    merges when it says so.

    Raises:
        UnknownProfileModeError: ``mode`` is not one of :data:`PROFILE_MODES`.
    """
    if mode == DE_IDENTIFIED_MERGE:
        return ProfilePolicy(mode=mode, fields=fields or PERSONAL_FIELDS, merge=True)
    if mode == STORED_SEPARATELY:
        return ProfilePolicy(mode=mode, fields=fields or PERSONAL_FIELDS, merge=False)
    if mode == ENCRYPTED_TRANSFER_TO_CRM:
        return ProfilePolicy(mode=mode, fields=fields or PERSONAL_FIELDS, merge=False)
    if mode == CUSTOM_MAPPING:
        return ProfilePolicy(
            mode=mode, fields=fields or ("name", "phone"), merge=bool(merge)
        )
    raise UnknownProfileModeError(
        f"user_profile.mode {mode!r} is not a profile mode "
        f"(known: {', '.join(PROFILE_MODES)})"
    )


def normalise_phone(phone: str) -> str:
    """The digits of a phone, without China's ``+86`` / ``0086`` prefix."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            return digits[len(prefix) :]
    return digits


def subject_identity(
    policy: ProfilePolicy,
    *,
    platform: str,
    shop_id: str,
    order_id: str,
    phone: str | None,
    buyer_ref: str | None,
) -> str:
    """The stable identifier the subject id is a keyed hash of.

    Merged: the phone (one person across platforms), else the platform's open
    id. Separate: the person within one platform account (platform and shop),
    by phone, else open id. With no identifier at all, the order itself is the
    subject.
    """
    if policy.merge and phone:
        return f"phone:{normalise_phone(phone)}"
    account = (normalise_phone(phone) if phone else None) or buyer_ref
    if account:
        scope = platform if policy.merge else f"{platform}/{shop_id}"
        return f"account:{scope}:{account}"
    return f"order:{platform}/{shop_id}:{order_id}"
