"""Products in the platforms' shapes: one mapping, named per platform.

Every platform's product API carries the same things under its own names: the
merchant's product code (outer id), a title, image URLs, SKUs (the merchant's
SKU code, a price in fen and the spec as name/value pairs) and, on some
platforms, a product-level price. A :class:`ProductShape` names them for one
platform (each connector's ``translate.PRODUCT_SHAPE``); :func:`product_fields`
writes a product in that shape and :func:`read_product` reads one back, so the
connector's requests and the sandbox's answers use one mapping.

A hub product without SKUs goes to the platforms as one SKU coded like the
product (the platforms sell SKUs); :func:`hub_change` reads it back as none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from connectors.mapping import id_value
from domain.catalog import CatalogSku, ContentChange, ProductContent


@dataclass(frozen=True)
class ProductShape:
    """One platform's names for a product's fields.

    Attributes:
        product_id: The platform's product id.
        outer: The merchant's product code.
        title: The title.
        images: The image URLs (a list, or text joined by ``|`` when
            ``images_joined``).
        skus: The SKUs (a list, or JSON text when ``skus_as_text``).
        sku_code: A SKU's merchant code.
        sku_price: A SKU's price in fen.
        sku_props: A SKU's spec, a list of name/value objects.
        prop_key: A spec entry's name.
        prop_value: A spec entry's value.
        price: The product-level price in fen (None: the platform has none).
        edited: The field of the last edit's time.
        edited_at: Reads that field.
        images_joined: Images are written as one text joined by ``|``.
        skus_as_text: SKUs are written as JSON text.
    """

    product_id: str
    outer: str
    title: str
    images: str
    skus: str
    sku_code: str
    sku_price: str
    sku_props: str
    prop_key: str
    prop_value: str
    edited: str
    edited_at: Callable[[Any], datetime]
    price: str | None = None
    images_joined: bool = False
    skus_as_text: bool = False


class PlatformProduct(msgspec.Struct, frozen=True, kw_only=True):
    """A product as a platform holds it (``price_fen`` None: it holds none)."""

    platform_product_id: str
    outer_id: str
    title: str
    price_fen: int | None
    skus: tuple[CatalogSku, ...]
    images: tuple[str, ...]
    edited_at: datetime | None = None


class ProductWrite(msgspec.Struct, frozen=True, kw_only=True):
    """One write of a hub product revision to a shop.

    Attributes:
        product: The hub product code (the platform's outer id).
        content: What the shop should show.
        platform_product_id: The platform's id, once it has the product
            (None: the write adds it).
        request_id: Stable per product, revision and shop: a retried write
            is applied once.
    """

    product: str
    content: ProductContent
    platform_product_id: str | None
    request_id: str


def platform_skus(product: str, content: ProductContent) -> tuple[CatalogSku, ...]:
    """The SKUs written for a product: its own, or one coded like it."""
    if content.skus:
        return content.skus
    return (CatalogSku(sku=product, price_fen=content.price_fen),)


def product_fields(shape: ProductShape, product: PlatformProduct) -> dict[str, Any]:
    """``product`` in the platform's shape (its id only when it has one)."""
    skus = [
        {
            shape.sku_code: sku.sku,
            shape.sku_price: sku.price_fen,
            shape.sku_props: [
                {shape.prop_key: name, shape.prop_value: value}
                for name, value in sku.attributes.items()
            ],
        }
        for sku in product.skus
    ]
    fields: dict[str, Any] = {
        shape.outer: product.outer_id,
        shape.title: product.title,
        shape.images: "|".join(product.images)
        if shape.images_joined
        else list(product.images),
        shape.skus: json.dumps(skus, ensure_ascii=False)
        if shape.skus_as_text
        else skus,
    }
    if product.platform_product_id:
        fields[shape.product_id] = id_value(product.platform_product_id)
    if shape.price is not None:
        fields[shape.price] = product.price_fen
    return fields


def write_fields(shape: ProductShape, write: ProductWrite) -> dict[str, Any]:
    """The body of a write of ``write`` in the platform's shape."""
    content = write.content
    return product_fields(
        shape,
        PlatformProduct(
            platform_product_id=write.platform_product_id or "",
            outer_id=write.product,
            title=content.title,
            price_fen=content.price_fen,
            skus=platform_skus(write.product, content),
            images=content.images,
        ),
    )


def read_product(
    shape: ProductShape, data: dict[str, Any], *, timed: bool = True
) -> PlatformProduct:
    """A product from the platform's shape.

    Args:
        shape: The platform's names.
        data: The product object.
        timed: Read the edit time (a write's body has none).

    Raises:
        KeyError, TypeError, ValueError: a field is missing or malformed.
    """
    raw_images = data.get(shape.images) or []
    images = (
        tuple(url for url in raw_images.split("|") if url)
        if isinstance(raw_images, str)
        else tuple(str(url) for url in raw_images)
    )
    raw_skus = data.get(shape.skus) or []
    if isinstance(raw_skus, str):
        raw_skus = json.loads(raw_skus or "[]")
    skus = tuple(
        CatalogSku(
            sku=str(sku[shape.sku_code]),
            attributes={
                str(prop[shape.prop_key]): str(prop[shape.prop_value])
                for prop in sku.get(shape.sku_props) or []
            },
            price_fen=int(sku[shape.sku_price]),
        )
        for sku in raw_skus
    )
    price = data.get(shape.price) if shape.price is not None else None
    return PlatformProduct(
        platform_product_id=str(data.get(shape.product_id) or ""),
        outer_id=str(data.get(shape.outer) or ""),
        title=str(data[shape.title]),
        price_fen=None if price is None else int(price),
        skus=skus,
        images=images,
        edited_at=shape.edited_at(data[shape.edited]) if timed else None,
    )


def hub_change(product: str, held: PlatformProduct) -> ContentChange:
    """What the platform holds, as a change of the hub product ``product``.

    A lone SKU coded like the product is the product without SKUs (its price
    the product's); otherwise a platform without a product-level price
    reports none.
    """
    skus = held.skus
    price = held.price_fen
    if len(skus) == 1 and skus[0].sku == product and not skus[0].attributes:
        price = skus[0].price_fen if price is None else price
        skus = ()
    return ContentChange(
        title=held.title, price_fen=price, skus=skus, images=held.images
    )
