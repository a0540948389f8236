"""No secret in a log line: tokens, app secrets and signatures are starred out.

The platforms' APIs take tokens and secrets in the query string (WeChat's
``secret`` and ``access_token``, Kuaishou's ``app_secret``, Douyin's ``sign``),
and an HTTP client may log a request's URL. :func:`install_log_redaction`
wraps the process's log record factory once, so every record of every logger
(the hub's own, the HTTP clients', uvicorn) has such values replaced by
``***`` before any handler sees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: Names whose values are secret, as query parameters or JSON keys.
SECRET_NAMES = (
    "secret",
    "app_secret",
    "client_secret",
    "access_token",
    "refresh_token",
    "code",
    "sign",
    "token",
    "push_token",
    "encoding_aes_key",
    "message_key",
    "sign_secret",
)
_NAMES = "|".join(sorted(SECRET_NAMES, key=len, reverse=True))
_QUERY = re.compile(rf"(?i)(?<![\w-])({_NAMES})=([^&\s'\"<>)]+)")
_JSON = re.compile(rf"(?i)([\"']({_NAMES})[\"']\s*:\s*[\"'])([^\"']+)")

_INSTALLED = "_hub_redacting"


def redact(text: str) -> str:
    """``text`` with every secret parameter's value replaced by ``***``."""
    return _JSON.sub(r"\1***", _QUERY.sub(r"\1=***", text))


def install_log_redaction() -> None:
    """Redact every log record of this process from now on (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, _INSTALLED, False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return record
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return record

    setattr(factory, _INSTALLED, True)
    logging.setLogRecordFactory(factory)
