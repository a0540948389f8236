"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium``
(``.ci/run`` installs it), started the way this machine's closed network needs."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where the browser tests save their screenshots (the docs show them).
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
