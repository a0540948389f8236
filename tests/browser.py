"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium``
(``.ci/run`` installs it), started the way this machine's closed network needs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

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
#: Where the browser tests save their screenshots: ``docs/screenshots`` (the
#: docs show them) when ``HUB_SCREENSHOTS=docs``, else a folder under the
#: system's temporary one, so a test run leaves the checkout as it was.
SCREENSHOTS = (
    Path(__file__).resolve().parents[1] / "docs" / "screenshots"
    if os.environ.get("HUB_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "hub-screenshots"
)

#: The browser tests need Chromium: on a machine without it they are skipped
#: with this reason, except under ``.ci/run`` (``HUB_REQUIRE_BROWSER=1``, which
#: installs it), where its absence fails them.
needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK) and not os.environ.get("HUB_REQUIRE_BROWSER"),
    reason=f"no {CHROMIUM} (Debian's chromium package; .ci/run installs it)",
)
