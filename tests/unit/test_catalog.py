"""The product library's rules: given, when, then."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from domain.catalog import (
    CatalogSku,
    ChangeProduct,
    DefineProduct,
    InvalidProductError,
    Product,
    ProductChanged,
    ProductChangeReceived,
    ProductChangeRefused,
    ProductCommand,
    ProductDefined,
    ProductExistsError,
    ProductRetired,
    ProductRetiredError,
    ProductSynced,
    ReceiveProductChange,
    RecordProductSynced,
    RetireProduct,
    UnknownProductError,
    decide,
    mutate,
)
from domain.events import Context, Event, project
from domain.policy import PolicyBookError, ProductDirection, decode_policy_book
from hub.service.policies import BUNDLED_POLICIES, load_policy_book

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
LIPSTICK = DefineProduct(
    product="LIP-1",
    title="丝绒口红",
    price_fen=12_900,
    skus=(
        CatalogSku(sku="LIP-1-RED", attributes={"色号": "正红"}, price_fen=12_900),
        CatalogSku(sku="LIP-1-NUDE", attributes={"色号": "裸色"}, price_fen=13_900),
    ),
    images=("https://img.example.com/lip-1.jpg",),
)
TWO_WAY: dict[str, ProductDirection] = {"youzan": "two_way", "douyin_shop": "two_way"}


def run(
    commands: Sequence[ProductCommand],
    directions: dict[str, ProductDirection] | None = None,
    now: datetime = NOW,
) -> tuple[Product | None, list[Event]]:
    state: Product | None = None
    events: list[Event] = []
    for command in commands:
        new = decide(state, command, Context(now=now), directions)
        state = project(mutate, state, new)
        events.extend(new)
    return state, events


def when(
    given: Sequence[ProductCommand],
    command: ProductCommand,
    directions: dict[str, ProductDirection] | None = None,
    now: datetime = NOW,
) -> list[Event]:
    state, _ = run(given, directions)
    return decide(state, command, Context(now=now), directions)


def edit(
    platform: str = "youzan", after: timedelta = timedelta(minutes=5), **fields: Any
) -> ReceiveProductChange:
    return ReceiveProductChange(
        product="LIP-1",
        platform=platform,
        shop_id="shop-42",
        edited_at=NOW + after,
        **fields,
    )


def synced(platform: str = "youzan", revision: int = 1) -> RecordProductSynced:
    return RecordProductSynced(
        product="LIP-1",
        platform=platform,
        shop_id="shop-42",
        revision=revision,
        platform_product_id="p-1",
    )


def test_defining_a_product_records_its_content_at_revision_one() -> None:
    state, events = run([LIPSTICK])
    assert [type(e) for e in events] == [ProductDefined]
    assert state is not None
    assert (state.revision, state.title, state.price_fen) == (1, "丝绒口红", 12_900)
    assert [sku.sku for sku in state.skus] == ["LIP-1-RED", "LIP-1-NUDE"]


def test_defining_it_again_unchanged_does_nothing_and_changed_is_refused() -> None:
    assert when([LIPSTICK], LIPSTICK) == []
    other = msgspec.structs.replace(LIPSTICK, title="别的")
    with pytest.raises(ProductExistsError, match=r"change it with product\.change"):
        when([LIPSTICK], other)


def test_a_change_records_only_the_fields_that_differ() -> None:
    change = ChangeProduct(product="LIP-1", title="丝绒口红", price_fen=9_900)
    (event,) = when([LIPSTICK], change)
    assert isinstance(event, ProductChanged)
    assert event.fields == ("price_fen",)
    assert event.title is None
    assert (event.price_fen, event.revision) == (9_900, 2)
    assert when([LIPSTICK], ChangeProduct(product="LIP-1", title="丝绒口红")) == []


def test_a_sku_code_given_twice_is_refused_naming_it() -> None:
    sku = CatalogSku(sku="X-1", price_fen=1)
    with pytest.raises(InvalidProductError, match="sku 'X-1' more than once"):
        run([msgspec.structs.replace(LIPSTICK, skus=(sku, sku))])


@pytest.mark.parametrize(
    "url", ["ftp://img.example.com/a.jpg", "img.example.com/a.jpg", "https:// a"]
)
def test_an_image_that_is_not_an_http_url_is_refused_at_the_boundary(url: str) -> None:
    raw = msgspec.to_builtins(LIPSTICK) | {"images": [url]}
    with pytest.raises(msgspec.ValidationError, match=r"\$\.images\[0\]"):
        msgspec.convert(raw, DefineProduct)


def test_commands_on_an_unknown_or_retired_product_are_refused() -> None:
    with pytest.raises(UnknownProductError, match="define it first"):
        when([], ChangeProduct(product="LIP-1", price_fen=1))
    retired = [LIPSTICK, RetireProduct(product="LIP-1", reason="discontinued")]
    _, events = run(retired)
    assert isinstance(events[-1], ProductRetired)
    with pytest.raises(ProductRetiredError, match="retired"):
        when(retired, ChangeProduct(product="LIP-1", price_fen=1))


def test_a_two_way_platforms_later_edit_is_taken_in_as_a_new_revision() -> None:
    given = [LIPSTICK, synced("youzan"), synced("douyin_shop")]
    state, events = run([*given, edit(title="丝绒口红 新款")], TWO_WAY)
    received = events[-1]
    assert isinstance(received, ProductChangeReceived)
    assert (received.fields, received.revision) == (("title",), 2)
    assert state is not None
    assert state.title == "丝绒口红 新款"
    # The shop the edit came from holds it; the others must be written.
    assert state.synced_revision("youzan", "shop-42") == 2
    assert state.synced_revision("douyin_shop", "shop-42") == 1


def test_a_two_way_edit_older_than_the_hubs_change_is_refused_with_the_reason() -> None:
    later = ChangeProduct(product="LIP-1", price_fen=9_900)
    given = [LIPSTICK, synced()]
    state, _ = run(given, TWO_WAY)
    hub_change = decide(state, later, Context(now=NOW + timedelta(hours=1)))
    state = project(mutate, state, hub_change)
    (refused,) = decide(state, edit(price_fen=100), Context(now=NOW), TWO_WAY)
    assert isinstance(refused, ProductChangeRefused)
    assert "older than the library's change" in refused.reason
    assert "the later change wins" in refused.reason


@pytest.mark.parametrize("direction", ["hub_to_platform", "off"])
def test_an_edit_where_the_direction_does_not_allow_it_is_refused_and_recorded(
    direction: ProductDirection,
) -> None:
    state, events = run(
        [LIPSTICK, synced("kuaishou_shop"), edit("kuaishou_shop", title="改")],
        {"kuaishou_shop": direction},
    )
    refused = events[-1]
    assert isinstance(refused, ProductChangeRefused)
    assert refused.direction == direction
    assert f"kuaishou_shop's product direction is {direction}" in refused.reason
    assert state is not None
    assert state.title == "丝绒口红"
    # The shop no longer holds a revision of ours: it is written back.
    assert state.synced_revision("kuaishou_shop", "shop-42") == 0


def test_writing_back_over_a_refused_edit_is_a_write_of_its_own() -> None:
    before, _ = run([LIPSTICK, synced("kuaishou_shop")])
    after, _ = run(
        [LIPSTICK, synced("kuaishou_shop"), edit("kuaishou_shop", title="改")],
        {"kuaishou_shop": "hub_to_platform"},
    )
    assert before is not None and after is not None
    assert before.write_key("kuaishou_shop", "shop-42") == "r1"
    # Same revision, but the platform applied request id "r1" already.
    assert after.write_key("kuaishou_shop", "shop-42") == "r1.w1"


def test_an_edit_equal_to_the_library_changes_nothing() -> None:
    assert when([LIPSTICK], edit(title="丝绒口红"), TWO_WAY) == []


def test_recording_a_revision_a_shop_holds_already_changes_nothing() -> None:
    given = [LIPSTICK, synced(revision=1)]
    assert when(given, synced(revision=1)) == []
    (event,) = when(
        [*given, ChangeProduct(product="LIP-1", price_fen=1)], synced(revision=2)
    )
    assert isinstance(event, ProductSynced)
    assert event.revision == 2


def test_the_bundled_book_gives_each_platform_a_product_direction() -> None:
    book = load_policy_book()
    directions = {
        platform: profile.sync.products.direction
        for platform, profile in book.profiles.items()
        if profile.sync is not None and profile.sync.products is not None
    }
    assert directions == {
        "wechat_shop": "two_way",
        "douyin_shop": "two_way",
        "kuaishou_shop": "hub_to_platform",
        "youzan": "two_way",
    }


def test_an_unknown_product_direction_is_refused_naming_the_field() -> None:
    raw = msgspec.json.decode(BUNDLED_POLICIES.read_bytes())
    raw["profiles"]["youzan"]["sync"]["products"] = {"direction": "sideways"}
    with pytest.raises(
        PolicyBookError, match=r"\$\.profiles\.youzan\.sync\.products\.direction"
    ):
        decode_policy_book(msgspec.json.encode(raw))
