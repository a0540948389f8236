"""Identity numbers of binding subjects and the subject-consistency check.

A channel account's certified subject must match the shop's business licence
exactly (docs/domain.md §1, 主体一致性). Enterprises carry a Unified Social Credit Code
(GB 32100-2015, with the GB 11714 organisation code embedded in positions 9-17);
individual businesses carry the legal person's resident identity number
(GB 11643-1999).

The validators are strict: they take the canonical form (upper-case, half-width,
no spaces). :func:`normalise_code` turns typed or OCR'd input into that form, so
input is normalised once, at the boundary, and checked as it is stored.
"""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Annotated, Literal

import msgspec

#: The 31 characters of a Unified Social Credit Code (no I, O, S, V, Z), in value order.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
#: GB 32100-2015 weights of positions 1-17 (3^(i-1) mod 31).
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
#: GB 11714 weights of the eight body characters of an organisation code.
ORGANISATION_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
#: GB 11643-1999 weights of the 17 body digits of a resident identity number.
RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: GB 11643-1999 check character, indexed by the weighted sum mod 11.
RESIDENT_ID_CHECK = "10X98765432"

_DIGITS = frozenset("0123456789")
_USCC_VALUES = {char: value for value, char in enumerate(USCC_ALPHABET)}

SubjectKind = Literal["enterprise", "individual"]


# -- codes ----------------------------------------------------------------------


def uscc_check_char(body: str) -> str:
    """The GB 32100-2015 check character of the first 17 characters ``body``.

    Raises:
        ValueError: ``body`` is not 17 characters of the code alphabet.
    """
    if len(body) != 17 or any(char not in _USCC_VALUES for char in body):
        raise ValueError(f"{body!r} is not 17 characters of {USCC_ALPHABET}")
    total = sum(
        _USCC_VALUES[char] * weight
        for char, weight in zip(body, USCC_WEIGHTS, strict=True)
    )
    return USCC_ALPHABET[(31 - total % 31) % 31]


def _organisation_char_value(char: str) -> int:
    # GB 11714: digits are their value, letters A-Z are 10-35.
    if char in _DIGITS:
        return ord(char) - ord("0")
    return ord(char) - ord("A") + 10


def organisation_code_check_char(body: str) -> str:
    """The GB 11714 check character of an organisation code's 8-character ``body``.

    Raises:
        ValueError: ``body`` is not 8 digits or upper-case letters.
    """
    if len(body) != 8 or any(
        not (char in _DIGITS or "A" <= char <= "Z") for char in body
    ):
        raise ValueError(f"{body!r} is not 8 digits or upper-case letters")
    total = sum(
        _organisation_char_value(char) * weight
        for char, weight in zip(body, ORGANISATION_CODE_WEIGHTS, strict=True)
    )
    check = 11 - total % 11
    if check == 10:
        return "X"
    if check == 11:
        return "0"
    return str(check)


def is_valid_uscc(code: str) -> bool:
    """Whether ``code`` is a well-formed Unified Social Credit Code.

    Checks the length and alphabet, that positions 3-8 (the registering
    authority's division code) are digits, the GB 11714 check character of the
    embedded organisation code (positions 9-17) and the GB 32100-2015 check
    character (position 18). ``code`` must already be in canonical form.
    """
    if len(code) != 18 or any(char not in _USCC_VALUES for char in code):
        return False
    if any(char not in _DIGITS for char in code[2:8]):
        return False
    if organisation_code_check_char(code[8:16]) != code[16]:
        return False
    return uscc_check_char(code[:17]) == code[17]


def resident_id_check_char(body: str) -> str:
    """The GB 11643-1999 check character of the 17 digits ``body``.

    Raises:
        ValueError: ``body`` is not 17 digits.
    """
    if len(body) != 17 or any(char not in _DIGITS for char in body):
        raise ValueError(f"{body!r} is not 17 digits")
    total = sum(
        (ord(char) - ord("0")) * weight
        for char, weight in zip(body, RESIDENT_ID_WEIGHTS, strict=True)
    )
    return RESIDENT_ID_CHECK[total % 11]


def resident_id_birth_date(number: str) -> date | None:
    """The birth date in positions 7-14 of ``number``, or None if not a real date."""
    digits = number[6:14]
    if len(digits) != 8 or any(char not in _DIGITS for char in digits):
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def is_valid_resident_id(number: str, today: date | None = None) -> bool:
    """Whether ``number`` is a well-formed 18-character resident identity number.

    Checks 17 digits and a check character (``X`` upper-case), that positions
    7-14 are a real calendar date, not after ``today`` when given (the domain
    has no clock), and the GB 11643-1999 check character.
    """
    if len(number) != 18 or any(char not in _DIGITS for char in number[:17]):
        return False
    birth = resident_id_birth_date(number)
    if birth is None or (today is not None and birth > today):
        return False
    return resident_id_check_char(number[:17]) == number[17]


def is_valid_subject_code(kind: SubjectKind, code: str, today: date | None) -> bool:
    """Whether ``code`` is a valid identifier for a subject of ``kind``.

    An enterprise carries a Unified Social Credit Code. An individual business
    carries the legal person's resident identity number (docs/domain.md §1); licences
    issued since 2016 also carry a credit code, which is accepted too.
    """
    if kind == "enterprise":
        return is_valid_uscc(code)
    return is_valid_resident_id(code, today) or is_valid_uscc(code)


# -- normalisation --------------------------------------------------------------


def normalise_subject_name(name: str) -> str:
    """``name`` in the form that is compared: NFKC-folded, with no whitespace.

    NFKC turns full-width letters, digits and brackets into half-width ones
    (``（深圳）`` → ``(深圳)``) and the ideographic space U+3000 into a space;
    every whitespace character is then removed.
    """
    folded = unicodedata.normalize("NFKC", name)
    return "".join(char for char in folded if not char.isspace())


def normalise_code(code: str) -> str:
    """A credit code or identity number in canonical form: half-width, upper-case,
    no whitespace (a typed ``ｘ`` or an OCR'd space is fixed here, once)."""
    return normalise_subject_name(code).upper()


def mask_identifier(code: str) -> str:
    """``code`` with all but its first and last four characters hidden.

    Identity numbers are personal data: events and replies carry the mask.
    """
    if len(code) <= 8:
        return "*" * len(code)
    return code[:4] + "*" * (len(code) - 8) + code[-4:]


# -- subject consistency --------------------------------------------------------


class Subject(msgspec.Struct, frozen=True, kw_only=True):
    """A certified subject: the name and code on an account or a licence."""

    kind: SubjectKind
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class SubjectMismatch(msgspec.Struct, frozen=True, kw_only=True):
    """One field where the account's subject and the licence's differ.

    Codes are masked (:func:`mask_identifier`) and individuals' names too
    (:func:`displayed_name`): the values show the difference without carrying
    personal data into the log.
    """

    field: Literal["kind", "name", "code"]
    account_value: str
    licence_value: str


def displayed_name(subject: Subject) -> str:
    """The normalised name of ``subject`` as events and replies may carry it.

    An individual business's name is often the person's own name, which is
    personal data: all but its first character are hidden.
    """
    name = normalise_subject_name(subject.name)
    if subject.kind == "enterprise":
        return name
    return name[:1] + "*" * (len(name) - 1)


def subject_mismatches(account: Subject, licence: Subject) -> list[SubjectMismatch]:
    """Every field where ``account`` and ``licence`` differ after normalising.

    Names compare after :func:`normalise_subject_name`, codes after
    :func:`normalise_code`; anything else must be equal. An empty list means the
    subjects are consistent.
    """
    mismatches: list[SubjectMismatch] = []
    if account.kind != licence.kind:
        mismatches.append(
            SubjectMismatch(
                field="kind", account_value=account.kind, licence_value=licence.kind
            )
        )
    if normalise_subject_name(account.name) != normalise_subject_name(licence.name):
        mismatches.append(
            SubjectMismatch(
                field="name",
                account_value=displayed_name(account),
                licence_value=displayed_name(licence),
            )
        )
    account_code = normalise_code(account.code)
    licence_code = normalise_code(licence.code)
    if account_code != licence_code:
        mismatches.append(
            SubjectMismatch(
                field="code",
                account_value=mask_identifier(account_code),
                licence_value=mask_identifier(licence_code),
            )
        )
    return mismatches
