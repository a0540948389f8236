"""Pure helpers every ``translate.py`` uses to read platform payloads.

Platform ids arrive as JSON numbers larger than 2^53 (WeChat, Douyin) or as
strings; they become strings here, exactly. Times arrive as Unix seconds,
Unix milliseconds or Beijing wall-clock text; they become aware UTC
datetimes. Money arrives as integer fen or as yuan text; it becomes integer
fen without passing through a float.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.common import ProtocolError

#: Beijing time, in which Youzan writes its times.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")


class TranslateError(ProtocolError, ValueError):
    """A platform payload lacks a field or holds a value of the wrong shape."""


def field(payload: Mapping[str, Any], name: str, where: str) -> Any:
    """A required field of a payload object.

    Args:
        payload: The object.
        name: The field's name.
        where: What the object is, for the message (``"WeChat order"``).

    Returns:
        The value.

    Raises:
        TranslateError: If the payload is not an object or lacks the field.
    """
    if not isinstance(payload, Mapping):
        raise TranslateError(f"{where} is {type(payload).__name__}, not an object")
    if name not in payload or payload[name] is None:
        raise TranslateError(f"{where} has no {name!r}")
    return payload[name]


def platform_id(value: Any, what: str) -> str:
    """A platform id as an exact string (never through a float).

    Args:
        value: An int or a non-empty string.
        what: What the id is, for the message.

    Returns:
        The id as text.

    Raises:
        TranslateError: If it is neither (a float would already have lost digits).
    """
    if isinstance(value, bool):
        raise TranslateError(f"{what} is a boolean, not an id")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise TranslateError(f"{what} is {value!r}: ids must be integers or text")


def integer(value: Any, what: str) -> int:
    """An integer that may arrive as a number or as digits.

    Args:
        value: The value.
        what: What it is, for the message.

    Returns:
        The integer.

    Raises:
        TranslateError: If it is not an integer.
    """
    if isinstance(value, bool):
        raise TranslateError(f"{what} is a boolean, not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise TranslateError(f"{what} is {value!r}, not an integer")


def from_unix_s(value: Any, what: str) -> datetime:
    """A UTC datetime from Unix seconds.

    Args:
        value: Seconds since the epoch (int or digits).
        what: What it is, for the message.

    Returns:
        The aware datetime.
    """
    return datetime.fromtimestamp(integer(value, what), UTC)


def from_unix_ms(value: Any, what: str) -> datetime:
    """A UTC datetime from Unix milliseconds.

    Args:
        value: Milliseconds since the epoch (int or digits).
        what: What it is, for the message.

    Returns:
        The aware datetime (millisecond precision).
    """
    millis = integer(value, what)
    return datetime.fromtimestamp(millis // 1000, UTC) + timedelta(
        milliseconds=millis % 1000
    )


def from_beijing_text(value: Any, what: str) -> datetime:
    """A UTC datetime from ``"yyyy-MM-dd HH:mm:ss"`` Beijing time.

    Args:
        value: The text.
        what: What it is, for the message.

    Returns:
        The aware UTC datetime.

    Raises:
        TranslateError: If the text is not in that form.
    """
    if not isinstance(value, str):
        raise TranslateError(f"{what} is {value!r}, not 'yyyy-MM-dd HH:mm:ss'")
    try:
        local = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise TranslateError(
            f"{what} is {value!r}, not 'yyyy-MM-dd HH:mm:ss'"
        ) from None
    return local.replace(tzinfo=BEIJING).astimezone(UTC)


def to_beijing_text(moment: datetime) -> str:
    """``"yyyy-MM-dd HH:mm:ss"`` in Beijing time, for requests.

    Args:
        moment: An aware datetime.

    Returns:
        The text.
    """
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def yuan_to_fen(value: Any, what: str) -> int:
    """Integer fen from yuan text such as ``"12.30"`` (or a whole number).

    Args:
        value: Yuan as text or int.
        what: What it is, for the message.

    Returns:
        The amount in fen.

    Raises:
        TranslateError: If it is not a number of yuan with at most two decimals.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TranslateError(f"{what} is {value!r}, not yuan text")
    try:
        fen = Decimal(str(value)) * 100
    except InvalidOperation:
        raise TranslateError(f"{what} is {value!r}, not a number of yuan") from None
    if fen != fen.to_integral_value():
        raise TranslateError(f"{what} is {value!r}: more than two decimals of yuan")
    return int(fen)


def fen_to_yuan(fen: int) -> str:
    """Yuan text with two decimals from integer fen (for sandbox payloads).

    Args:
        fen: The amount in fen.

    Returns:
        ``"12.30"`` for 1230.
    """
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def join_address(parts: Iterable[Any]) -> str | None:
    """One address line from its non-empty parts.

    Args:
        parts: Province, city, district, street ... (None or "" skipped).

    Returns:
        The parts joined by spaces, or None when all are empty.
    """
    text = " ".join(str(part).strip() for part in parts if part not in (None, ""))
    return text or None


def optional_text(value: Any) -> str | None:
    """A text field that may be absent or empty.

    Args:
        value: The value.

    Returns:
        The text, or None when absent or empty.
    """
    if value is None or value == "":
        return None
    return str(value)


def id_value(text: str) -> int | str:
    """An id as the platform's JSON wants it: a number when all digits.

    Platforms that type their ids as int64 (Douyin, Kuaishou, Youzan item ids)
    get an exact JSON integer; other ids stay text.

    Args:
        text: The id as the hub keeps it.

    Returns:
        The int, or the text unchanged.
    """
    return int(text) if text.isdigit() else text
