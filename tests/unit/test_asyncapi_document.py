"""The AsyncAPI document: the same hub writes the same bytes, and the one in
docs/ is the one the code describes (regenerate it with ``hub docs``)."""

from __future__ import annotations

from pathlib import Path

from hub.entry.cli import main

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_hub_docs_writes_the_same_document_as_docs_asyncapi_json(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["docs", "--out", str(first)]) == 0
    assert main(["docs", "--out", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    assert first.read_text(encoding="utf-8") == DOCUMENT.read_text(encoding="utf-8"), (
        "docs/asyncapi.json is not what the code describes: run `hub docs`"
    )
