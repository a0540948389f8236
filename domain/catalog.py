"""The product library: one aggregate per hub product, synchronised to every shop.

A product carries what the platforms show: a title, a price in fen, its SKUs
(the hub SKU code, the spec attributes and the SKU's price) and images, by URL
only (``http`` or ``https``; the hub never fetches them). ``revision`` counts
the changes of that content: it is what a shop is synchronised *to*, and what a
platform write is keyed by, so writing one revision twice changes nothing.

Where a change comes from decides whether it is taken:

* the hub's own commands (``product.define``, ``product.change``,
  ``product.retire``) always are: the hub's library is the truth it pushes;
* a platform's edit (:class:`ReceiveProductChange`) is decided under the
  platform's product direction of the policy book (``sync.products``):
  ``two_way`` and ``platform_to_hub`` take it in when it is the later writer
  (its edit time on the platform is not before the hub's last change), so the
  newer edit wins on either side; ``hub_to_platform`` and ``off`` refuse it.
  Either way the outcome is an event: :class:`ProductChangeReceived` (a new
  revision, pushed to every other shop) or :class:`ProductChangeRefused` with
  the reason (and the hub writes its revision back over the platform's edit).

:class:`ProductSynced` records that a shop holds a revision (with the
platform's own product id), so the log says which shop shows what.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from domain.events import Context, DomainError, Event, State, derive_id, register
from domain.policy import PlatformCode, ProductDirection

#: Hub product codes: letters, digits and ``-_.:``, 1-64 characters.
ProductCode = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
]
#: Hub SKU codes (as :data:`domain.stock.SkuCode`).
SkuCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")]
#: A product title as the platforms take it.
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
#: A price in fen.
PriceFen = Annotated[int, msgspec.Meta(ge=0, le=100_000_000_000)]
#: An image by its URL: ``http`` or ``https``, with a host, no spaces.
ImageUrl = Annotated[
    str, msgspec.Meta(pattern=r"^https?://[^\s/?#]+[^\s]*$", max_length=2048)
]
#: A spec attribute's name or value (``颜色``: ``红``).
AttributeText = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ShopId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Reason = Annotated[str, msgspec.Meta(max_length=500)]

#: The content fields of a product, in the order changes name them.
FIELDS: tuple[str, ...] = ("title", "price_fen", "skus", "images")
Field = Literal["title", "price_fen", "skus", "images"]


@functools.lru_cache(maxsize=65536)
def product_id(product: str) -> uuid.UUID:
    """The aggregate id of hub product ``product``."""
    return derive_id("product", product)


def shop_key(platform: str, shop_id: str) -> str:
    """The key of one shop in a product's synchronised revisions."""
    return f"{platform}:{shop_id}"


# -- errors ---------------------------------------------------------------------


class UnknownProductError(DomainError):
    """A command named a product the library does not hold."""

    code = "unknown_product"


class ProductExistsError(DomainError):
    """A product was defined again with other content."""

    code = "product_exists"


class InvalidProductError(DomainError):
    """The product's content broke a rule (e.g. a SKU code given twice)."""

    code = "invalid_product"


class ProductRetiredError(DomainError):
    """A command would change a retired product."""

    code = "product_retired"


# -- content --------------------------------------------------------------------


class CatalogSku(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One SKU of a product: the hub SKU code, its spec and its price.

    Attributes:
        sku: The hub SKU code (what the platforms carry as their outer SKU id).
        attributes: The spec: attribute name → value (``{"颜色": "红"}``).
        price_fen: The SKU's price.
    """

    sku: SkuCode
    attributes: dict[AttributeText, AttributeText] = {}
    price_fen: PriceFen


class ProductContent(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """What a platform shows of a product (every field of a product file)."""

    title: Title
    price_fen: PriceFen
    skus: tuple[CatalogSku, ...] = ()
    images: Annotated[tuple[ImageUrl, ...], msgspec.Meta(max_length=50)] = ()


class ContentChange(msgspec.Struct, frozen=True, kw_only=True):
    """Some fields of a product's content (None: not changed)."""

    title: Title | None = None
    price_fen: PriceFen | None = None
    skus: tuple[CatalogSku, ...] | None = None
    images: Annotated[tuple[ImageUrl, ...], msgspec.Meta(max_length=50)] | None = None

    def fields(self) -> tuple[str, ...]:
        """The names of the fields given, in :data:`FIELDS` order."""
        return tuple(name for name in FIELDS if getattr(self, name) is not None)


def check_content(product: str, skus: tuple[CatalogSku, ...] | None) -> None:
    """Raise :class:`InvalidProductError` if a SKU code is given twice."""
    if skus is None:
        return
    seen: set[str] = set()
    for sku in skus:
        if sku.sku in seen:
            raise InvalidProductError(
                f"product {product!r}: skus lists sku {sku.sku!r} more than once "
                "(a SKU code names one SKU of a product)"
            )
        seen.add(sku.sku)


# -- commands -------------------------------------------------------------------


class DefineProduct(ProductContent, frozen=True, kw_only=True):
    """Add a product to the library (defining it again unchanged does nothing)."""

    product: ProductCode


class ChangeProduct(ContentChange, frozen=True, kw_only=True):
    """Change some of a product's fields (the ones given)."""

    product: ProductCode


class RetireProduct(msgspec.Struct, frozen=True, kw_only=True):
    """Take a product out of the library: it is no longer synchronised."""

    product: ProductCode
    reason: Reason = ""


class ReceiveProductChange(ContentChange, frozen=True, kw_only=True):
    """A shop's platform reports an edit of the product made on the platform.

    Attributes:
        platform: The shop's platform.
        shop_id: The shop.
        edited_at: When the platform says the edit was made.
    """

    product: ProductCode
    platform: PlatformCode
    shop_id: ShopId
    edited_at: datetime


class RecordProductSynced(msgspec.Struct, frozen=True, kw_only=True):
    """A shop's platform holds ``revision`` of the product."""

    product: ProductCode
    platform: PlatformCode
    shop_id: ShopId
    revision: Annotated[int, msgspec.Meta(ge=1)]
    platform_product_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


ProductCommand = (
    DefineProduct
    | ChangeProduct
    | RetireProduct
    | ReceiveProductChange
    | RecordProductSynced
)


# -- events ---------------------------------------------------------------------


@register
class ProductDefined(Event, frozen=True, kw_only=True):
    """A product entered the library, at revision 1."""

    TOPIC: ClassVar[str] = "catalog.ProductDefined"
    AGGREGATE: ClassVar[str] = "product"

    product: str
    title: str
    price_fen: int
    skus: tuple[CatalogSku, ...] = ()
    images: tuple[str, ...] = ()
    revision: int = 1


class ContentChanged(Event, frozen=True, kw_only=True):
    """Base of the events that make a new revision from some changed fields:
    ``fields`` names them, and only those are given."""

    product: str
    revision: int
    fields: tuple[str, ...]
    title: str | None = None
    price_fen: int | None = None
    skus: tuple[CatalogSku, ...] | None = None
    images: tuple[str, ...] | None = None


@register
class ProductChanged(ContentChanged, frozen=True, kw_only=True):
    """The hub changed a product: only the changed fields are given."""

    TOPIC: ClassVar[str] = "catalog.ProductChanged"
    AGGREGATE: ClassVar[str] = "product"


@register
class ProductChangeReceived(ContentChanged, frozen=True, kw_only=True):
    """A platform's edit was taken in: a new revision, from that shop."""

    TOPIC: ClassVar[str] = "catalog.ProductChangeReceived"
    AGGREGATE: ClassVar[str] = "product"

    platform: str
    shop_id: str
    edited_at: datetime


@register
class ProductChangeRefused(Event, frozen=True, kw_only=True):
    """A platform's edit was not taken in; ``reason`` says which rule refused."""

    TOPIC: ClassVar[str] = "catalog.ProductChangeRefused"
    AGGREGATE: ClassVar[str] = "product"

    product: str
    platform: str
    shop_id: str
    edited_at: datetime
    fields: tuple[str, ...]
    direction: str
    reason: str


@register
class ProductRetired(Event, frozen=True, kw_only=True):
    """The product left the library."""

    TOPIC: ClassVar[str] = "catalog.ProductRetired"
    AGGREGATE: ClassVar[str] = "product"

    product: str
    revision: int
    reason: str = ""


@register
class ProductSynced(Event, frozen=True, kw_only=True):
    """A shop's platform holds ``revision`` of the product."""

    TOPIC: ClassVar[str] = "catalog.ProductSynced"
    AGGREGATE: ClassVar[str] = "product"

    product: str
    platform: str
    shop_id: str
    revision: int
    platform_product_id: str


ProductEvent = (
    ProductDefined
    | ProductChanged
    | ProductChangeReceived
    | ProductChangeRefused
    | ProductRetired
    | ProductSynced
)


# -- state ----------------------------------------------------------------------


class ShopSync(msgspec.Struct, frozen=True, kw_only=True):
    """What one shop holds of a product.

    Attributes:
        revision: The revision the shop holds (0: an edit of its own, refused).
        platform_product_id: The platform's id of the product.
        refusals: How many of the shop's edits were refused: each write-back
            is a write of its own (its request id names it).
    """

    revision: int
    platform_product_id: str
    refusals: int = 0


class Product(State, frozen=True, kw_only=True):
    """A product of the library.

    Attributes:
        revision: The content's revision (what shops are synchronised to).
        changed_at: When the content last changed (the hub's command time, or
            the platform's edit time of a change taken in).
        synced: Shop key (:func:`shop_key`) → what that shop holds.
    """

    product: str
    title: str
    price_fen: int
    skus: tuple[CatalogSku, ...] = ()
    images: tuple[str, ...] = ()
    revision: int = 1
    retired: bool = False
    changed_at: datetime
    synced: dict[str, ShopSync] = msgspec.field(default_factory=dict)

    def content(self) -> ProductContent:
        """The product's content as a platform shows it."""
        return ProductContent(
            title=self.title,
            price_fen=self.price_fen,
            skus=self.skus,
            images=self.images,
        )

    def synced_revision(self, platform: str, shop_id: str) -> int:
        """The revision the shop holds (0: none)."""
        held = self.synced.get(shop_key(platform, shop_id))
        return held.revision if held is not None else 0

    def platform_product_id(self, platform: str, shop_id: str) -> str | None:
        """The platform's id of the product in that shop, once written."""
        held = self.synced.get(shop_key(platform, shop_id))
        return held.platform_product_id if held is not None else None

    def write_key(self, platform: str, shop_id: str) -> str:
        """What makes the next write to that shop one of its own: the revision,
        and the shop's refused edits it writes over (if any)."""
        held = self.synced.get(shop_key(platform, shop_id))
        refusals = held.refusals if held is not None else 0
        return f"r{self.revision}" + (f".w{refusals}" if refusals else "")


def changes_of(state: Product, change: ContentChange) -> dict[str, Any]:
    """The fields of ``change`` whose value differs from ``state``'s."""
    return {
        name: getattr(change, name)
        for name in change.fields()
        if getattr(change, name) != getattr(state, name)
    }


# -- decide ---------------------------------------------------------------------


def _live(state: Product | None, product: str) -> Product:
    if state is None:
        raise UnknownProductError(
            f"product {product!r} is not in the library: define it first"
        )
    if state.retired:
        raise ProductRetiredError(
            f"product {product!r} is retired: a retired product does not change"
        )
    return state


def _define(state: Product | None, command: DefineProduct, ctx: Context) -> list[Event]:
    check_content(command.product, command.skus)
    given = ProductContent(
        title=command.title,
        price_fen=command.price_fen,
        skus=command.skus,
        images=command.images,
    )
    if state is not None:
        if not state.retired and state.content() == given:
            return []
        raise ProductExistsError(
            f"product {command.product!r} is defined already (revision "
            f"{state.revision}): change it with product.change"
        )
    return [
        ProductDefined(
            **ctx.meta(product_id(command.product), 1),
            product=command.product,
            title=command.title,
            price_fen=command.price_fen,
            skus=command.skus,
            images=command.images,
        )
    ]


def _change(state: Product, command: ChangeProduct, ctx: Context) -> list[Event]:
    check_content(command.product, command.skus)
    changed = changes_of(state, command)
    if not changed:
        return []
    return [
        ProductChanged(
            **ctx.meta(state.id, state.version + 1),
            product=state.product,
            revision=state.revision + 1,
            fields=tuple(changed),
            **changed,
        )
    ]


def refusal(
    state: Product, command: ReceiveProductChange, direction: ProductDirection
) -> str | None:
    """Why a platform's edit is not taken in (None: it is taken in)."""
    where = f"{command.platform}/{command.shop_id}"
    if direction in {"hub_to_platform", "off"}:
        what = (
            "the hub's library is the truth; the edit is overwritten"
            if direction == "hub_to_platform"
            else "products are not synchronised"
        )
        return (
            f"{command.platform}'s product direction is {direction}: {what} "
            f"(edit on {where})"
        )
    if command.edited_at < state.changed_at:
        return (
            f"the edit on {where} at {command.edited_at.isoformat()} is older than "
            f"the library's change at {state.changed_at.isoformat()} (revision "
            f"{state.revision}): the later change wins"
        )
    return None


def _receive(
    state: Product,
    command: ReceiveProductChange,
    ctx: Context,
    direction: ProductDirection,
) -> list[Event]:
    check_content(command.product, command.skus)
    changed = changes_of(state, command)
    if not changed:
        return []
    meta = ctx.meta(state.id, state.version + 1)
    reason = refusal(state, command, direction)
    if reason is not None:
        return [
            ProductChangeRefused(
                **meta,
                product=state.product,
                platform=command.platform,
                shop_id=command.shop_id,
                edited_at=command.edited_at,
                fields=tuple(changed),
                direction=direction,
                reason=reason,
            )
        ]
    return [
        ProductChangeReceived(
            **meta,
            product=state.product,
            platform=command.platform,
            shop_id=command.shop_id,
            edited_at=command.edited_at,
            revision=state.revision + 1,
            fields=tuple(changed),
            **changed,
        )
    ]


def _synced(state: Product, command: RecordProductSynced, ctx: Context) -> list[Event]:
    held = state.synced.get(shop_key(command.platform, command.shop_id))
    if held is not None and (
        held.revision >= command.revision
        and held.platform_product_id == command.platform_product_id
    ):
        return []
    return [
        ProductSynced(
            **ctx.meta(state.id, state.version + 1),
            product=state.product,
            platform=command.platform,
            shop_id=command.shop_id,
            revision=max(command.revision, held.revision if held else 0),
            platform_product_id=command.platform_product_id,
        )
    ]


def decide(
    state: Product | None,
    command: ProductCommand,
    ctx: Context,
    directions: Mapping[str, ProductDirection] | None = None,
) -> list[Event]:
    """Check ``command`` against ``state``; return the new events.

    ``directions`` gives each platform's product direction (a platform not in
    it: ``off``); only a :class:`ReceiveProductChange` reads it.

    Raises:
        UnknownProductError: any command but a definition, for no product.
        ProductExistsError: a definition with other content than the product's.
        ProductRetiredError: a change of a retired product.
        InvalidProductError: a SKU code given twice.
    """
    if isinstance(command, DefineProduct):
        return _define(state, command, ctx)
    if isinstance(command, RecordProductSynced):
        if state is None:
            raise UnknownProductError(f"product {command.product!r} is not defined")
        return _synced(state, command, ctx)
    live = _live(state, command.product)
    if isinstance(command, ChangeProduct):
        return _change(live, command, ctx)
    if isinstance(command, RetireProduct):
        return [
            ProductRetired(
                **ctx.meta(live.id, live.version + 1),
                product=live.product,
                revision=live.revision + 1,
                reason=command.reason,
            )
        ]
    direction = (directions or {}).get(command.platform, "off")
    return _receive(live, command, ctx, direction)


# -- mutate ---------------------------------------------------------------------


@functools.singledispatch
def mutate(event: Event, state: Product | None) -> Product | None:
    """Evolve ``state`` by ``event``."""
    raise TypeError(f"a product does not fold {type(event).__name__}")


def _moved(state: Product | None, event: Event) -> Product:
    assert state is not None, f"{type(event).__name__} before ProductDefined"
    return msgspec.structs.replace(state, version=event.originator_version)


@mutate.register
def _(event: ProductDefined, state: Product | None) -> Product:
    return Product(
        id=event.originator_id,
        version=event.originator_version,
        product=event.product,
        title=event.title,
        price_fen=event.price_fen,
        skus=event.skus,
        images=event.images,
        revision=event.revision,
        changed_at=event.occurred_at,
    )


def _content_changed(
    state: Product | None, event: ContentChanged, changed_at: datetime
) -> Product:
    given = {name: getattr(event, name) for name in event.fields}
    return msgspec.structs.replace(
        _moved(state, event), revision=event.revision, changed_at=changed_at, **given
    )


@mutate.register
def _(event: ProductChanged, state: Product | None) -> Product:
    return _content_changed(state, event, event.occurred_at)


def _held_as(state: Product, platform: str, shop_id: str, **fields: Any) -> Product:
    """``state`` with one shop's record changed (a shop never written stays so,
    unless ``fields`` give the platform's product id)."""
    key = shop_key(platform, shop_id)
    held = state.synced.get(key)
    if held is None and "platform_product_id" not in fields:
        return state
    base = held or ShopSync(revision=0, platform_product_id="")
    synced = {**state.synced, key: msgspec.structs.replace(base, **fields)}
    return msgspec.structs.replace(state, synced=synced)


@mutate.register
def _(event: ProductChangeReceived, state: Product | None) -> Product:
    # The shop the edit came from holds the new revision already.
    moved = _content_changed(state, event, event.edited_at)
    return _held_as(moved, event.platform, event.shop_id, revision=event.revision)


@mutate.register
def _(event: ProductChangeRefused, state: Product | None) -> Product:
    # The shop shows the refused edit: it no longer holds any revision of ours,
    # so the hub writes its revision back (a write of its own).
    moved = _moved(state, event)
    held = moved.synced.get(shop_key(event.platform, event.shop_id))
    refusals = held.refusals + 1 if held is not None else 1
    return _held_as(moved, event.platform, event.shop_id, revision=0, refusals=refusals)


@mutate.register
def _(event: ProductRetired, state: Product | None) -> Product:
    return msgspec.structs.replace(
        _moved(state, event),
        retired=True,
        revision=event.revision,
        changed_at=event.occurred_at,
    )


@mutate.register
def _(event: ProductSynced, state: Product | None) -> Product:
    return _held_as(
        _moved(state, event),
        event.platform,
        event.shop_id,
        revision=event.revision,
        platform_product_id=event.platform_product_id,
    )
