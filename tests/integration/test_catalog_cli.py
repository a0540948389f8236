"""``hub products define|show|list`` and ``hub.cmd.product.*`` on real servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.entry.cli import main

pytestmark = pytest.mark.integration

PRODUCT = {
    "product": "SERUM-1",
    "title": "精华液 30ml",
    "price_fen": 29_900,
    "skus": [
        {"sku": "SERUM-1-30", "attributes": {"容量": "30ml"}, "price_fen": 29_900}
    ],
    "images": ["https://img.example.com/serum.jpg"],
}


def test_the_cli_defines_shows_and_lists_products(
    database_url: str,
    nats_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_NATS_URL", nats_url)
    path = tmp_path / "serum.json"
    path.write_text(json.dumps(PRODUCT, ensure_ascii=False))
    assert main(["products", "define", str(path), "--timeout", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "product.define: ok in this process" in out
    assert "ProductDefined" in out

    assert main(["products", "show", "SERUM-1"]) == 0
    shown = capsys.readouterr().out
    assert "SERUM-1: 精华液 30ml (active, revision 1" in shown
    assert "sku SERUM-1-30: 29900 fen 容量=30ml" in shown

    assert main(["products", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(p["product"], p["revision"]) for p in listed["products"]] == [
        ("SERUM-1", 1)
    ]

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(PRODUCT | {"images": ["ftp://x/y.jpg"]}))
    assert main(["products", "define", str(bad), "--timeout", "0.5"]) == 1
    assert "$.images[0]" in capsys.readouterr().err
    assert main(["products", "show", "NOPE"]) == 1
    assert "no product has code 'NOPE'" in capsys.readouterr().err
