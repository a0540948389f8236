"""Kuaishou Shop's platform code.

Its sync policy (order modes, stock mode, rate limit, retries) is data in
the hub's policy book (``hub/policies.json``, see docs/policies.md), which
the hub hands to the client; the protocol's own facts (token lifetimes,
rate-limit codes) are constants of ``protocol.py``.
"""

from __future__ import annotations

PLATFORM = "kuaishou_shop"
