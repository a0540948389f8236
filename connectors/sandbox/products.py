"""Products on the simulated platforms: each platform's product API shape.

Every shop keeps its products (``Shop.products``: platform product id →
:class:`connectors.products.PlatformProduct`). Each platform writes and reads
them in its own shape (:mod:`connectors.products` and each connector's
``translate.PRODUCT_SHAPE``), modelled on its product API:

* WeChat Shop: ``/channels/ec/product/add`` and ``/update`` (``out_product_id``,
  ``title``, ``head_imgs``, ``skus`` with ``out_sku_id``, ``sale_price`` in fen
  and ``sku_attrs``), ``/channels/ec/product/get`` (``product`` with
  ``edit_time``, seconds). No product-level price: the SKUs carry it.
* Douyin Shop: ``/product/addV2`` and ``/product/editV2`` (``outer_product_id``,
  ``name``, ``pic`` as URLs joined by ``|``, ``discount_price`` in fen,
  ``spec_prices`` as JSON text of ``code``, ``price``, ``sell_properties``),
  ``/product/detail`` (``update_time``, Beijing time text).
* Kuaishou Shop: ``open.item.new`` and ``open.item.update`` (``relItemId``,
  ``title``, ``imageUrls``, ``skuList`` with ``relSkuId``, ``skuSalePrice``,
  ``specification``), and ``open.item.detail`` (a sandbox name: the real
  detail call, ``open.item.get``, answers the SKUs' stock here), with
  ``updateTime`` in ms. No item-level price.
* Youzan: ``youzan.item.create/3.0.0`` and ``youzan.item.update/3.0.0``
  (``item_no``, ``title``, ``price`` in fen, ``images``, ``sku_list`` with
  ``sku_no``, ``price``, ``sku_props``), ``youzan.item.detail.get/1.0.0``
  (``update_time`` in ms).

A write naming a product id updates it, else adds a product with a new id.
Writes go through the platform's call handling (budgets, faults, request ids:
a repeated request id is not applied twice). The control API's
``POST /_sandbox/{platform}/shops/{shop_id}/products/{product_id}/edit`` edits
a product "on the platform" (as its merchant would in the platform's admin):
the next read shows the edit, with a later edit time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.douyin_shop.translate import PRODUCT_SHAPE as DOUYIN
from connectors.kuaishou_shop.translate import PRODUCT_SHAPE as KUAISHOU
from connectors.mapping import id_value, to_beijing_text
from connectors.products import (
    PlatformProduct,
    ProductShape,
    product_fields,
    read_product,
)
from connectors.sandbox.calls import Answer
from connectors.sandbox.state import SandboxError, SandboxState, Shop
from connectors.wechat_shop.translate import PRODUCT_SHAPE as WECHAT
from connectors.youzan.translate import PRODUCT_SHAPE as YOUZAN
from domain.catalog import CatalogSku

Work = Callable[[Shop, dict[str, Any]], Awaitable[Answer]]
Ok = Callable[[Any], Answer]
Fail = Callable[[str], Answer]
#: How a platform writes a product's edit time.
Timed = Callable[[datetime], Any]

_ids = itertools.count(3_000_000_001)


def _products(shop: Shop) -> dict[str, PlatformProduct]:
    products: dict[str, PlatformProduct] = shop.products
    return products


def _writer(
    state: SandboxState, shape: ProductShape, ok: Ok, fail: Fail, *, adds: bool
) -> Work:
    async def write(shop: Shop, params: dict[str, Any]) -> Answer:
        products = _products(shop)
        try:
            given = read_product(shape, params, timed=False)
        except (KeyError, TypeError, ValueError) as exc:
            return fail(f"参数错误: {exc}")
        product_id = str(next(_ids)) if adds else given.platform_product_id
        if not adds and product_id not in products:
            return fail("商品不存在")
        products[product_id] = msgspec.structs.replace(
            given,
            platform_product_id=product_id,
            edited_at=datetime.fromtimestamp(state.now(), UTC),
        )
        return ok({shape.product_id: id_value(product_id)})

    return write


def _reader(shape: ProductShape, ok: Ok, fail: Fail, timed: Timed) -> Work:
    async def read(shop: Shop, params: dict[str, Any]) -> Answer:
        product = _products(shop).get(str(params.get(shape.product_id)))
        if product is None or product.edited_at is None:
            return fail("商品不存在")
        rendered = product_fields(shape, product)
        rendered[shape.edited] = timed(product.edited_at)
        return ok(rendered)

    return read


def _seconds(at: datetime) -> int:
    return int(at.timestamp())


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


#: Registers one product call: (name, work, whether it writes) → route.
Register = Callable[[str, Work, bool], Route]


def _plain(api: Callable[..., Route]) -> Register:
    """A register for a platform whose ``api`` takes the call's name alone."""
    return lambda name, work, write: api(name, work, write=write)


def _routes(
    state: SandboxState,
    register: Register,
    *,
    shape: ProductShape,
    names: tuple[str, str, str],
    answers: tuple[Ok, Ok, Fail],
    timed: Timed,
) -> list[Route]:
    """Add, update and read calls of one platform (``names`` in that order;
    ``answers``: a write's success, a read's success, a failure)."""
    add, update, read = names
    ok_write, ok_read, fail = answers
    return [
        register(add, _writer(state, shape, ok_write, fail, adds=True), True),
        register(update, _writer(state, shape, ok_write, fail, adds=False), True),
        register(read, _reader(shape, ok_read, fail, timed), False),
    ]


def wechat_routes(
    state: SandboxState, api: Callable[..., Route], fail: Fail
) -> list[Route]:
    """WeChat Shop's product paths, through the platform's ``api`` wrapper."""

    def ok(data: Any) -> Answer:
        return Answer({"errcode": 0, "errmsg": "ok", "data": data})

    def ok_product(data: Any) -> Answer:
        return Answer({"errcode": 0, "errmsg": "ok", "product": data})

    base = "/channels/ec/product/"
    names = (base + "add", base + "update", base + "get")
    return _routes(
        state,
        _plain(api),
        shape=WECHAT,
        names=names,
        answers=(ok, ok_product, fail),
        timed=_seconds,
    )


def douyin_routes(
    state: SandboxState, api: Callable[..., Route], ok: Ok, fail: Fail
) -> list[Route]:
    """Douyin Shop's product paths, through the platform's ``api`` wrapper."""
    names = ("/product/addV2", "/product/editV2", "/product/detail")
    return _routes(
        state,
        _plain(api),
        shape=DOUYIN,
        names=names,
        answers=(ok, ok, fail),
        timed=to_beijing_text,
    )


def kuaishou_routes(
    state: SandboxState, api: Callable[..., Route], ok: Ok, fail: Fail
) -> list[Route]:
    """Kuaishou Shop's product methods, through the platform's ``api`` wrapper."""
    names = ("open.item.new", "open.item.update", "open.item.detail")
    return _routes(
        state,
        _plain(api),
        shape=KUAISHOU,
        names=names,
        answers=(ok, ok, fail),
        timed=_millis,
    )


#: The version of each Youzan product API the sandbox answers.
YOUZAN_VERSIONS = {
    "youzan.item.create": "3.0.0",
    "youzan.item.update": "3.0.0",
    "youzan.item.detail.get": "1.0.0",
}


def youzan_routes(
    state: SandboxState, api: Callable[..., Route], ok: Ok, fail: Fail
) -> list[Route]:
    """Youzan's product APIs, through the platform's ``api`` wrapper."""

    def register(name: str, work: Work, write: bool) -> Route:
        return api(name, YOUZAN_VERSIONS[name], work, write=write)

    names = ("youzan.item.create", "youzan.item.update", "youzan.item.detail.get")
    return _routes(
        state,
        register,
        shape=YOUZAN,
        names=names,
        answers=(ok, ok, fail),
        timed=_millis,
    )


def edit_product(
    state: SandboxState, shop: Shop, product_id: str, changes: dict[str, Any]
) -> PlatformProduct:
    """Edit a product as the shop's merchant would on the platform.

    ``changes`` may give ``title``, ``price_fen``, ``images`` and ``skus``
    (``[{"sku", "attributes", "price_fen"}]``); the edit time is the sandbox's
    now, a millisecond past the product's last edit at least.

    Raises:
        KeyError: the shop has no such product.
        msgspec.ValidationError: a change of the wrong type.
    """
    products = _products(shop)
    product = products[product_id]
    fields: dict[str, Any] = {}
    if "title" in changes:
        fields["title"] = str(changes["title"])
    if "price_fen" in changes:
        fields["price_fen"] = int(changes["price_fen"])
    if "images" in changes:
        fields["images"] = tuple(str(url) for url in changes["images"])
    if "skus" in changes:
        fields["skus"] = msgspec.convert(changes["skus"], tuple[CatalogSku, ...])
    now = datetime.fromtimestamp(state.now(), UTC)
    last = product.edited_at or now
    edited = msgspec.structs.replace(
        product, **fields, edited_at=max(now, last + timedelta(milliseconds=1))
    )
    products[product_id] = edited
    return edited


def control_routes(state: SandboxState) -> list[Route]:
    """The control API's product routes: list a shop's products, edit one."""

    async def listing(request: Request) -> Response:
        try:
            shop = state.shop(
                request.path_params["platform"], request.path_params["shop_id"]
            )
        except SandboxError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse(msgspec.to_builtins(list(_products(shop).values())))

    async def edit(request: Request) -> Response:
        try:
            shop = state.shop(
                request.path_params["platform"], request.path_params["shop_id"]
            )
            changes = json.loads(await request.body() or b"{}")
            edited = edit_product(
                state, shop, request.path_params["product_id"], changes
            )
        except SandboxError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except KeyError as exc:
            return JSONResponse({"error": f"no product {exc}"}, status_code=404)
        except (TypeError, ValueError, msgspec.ValidationError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(msgspec.to_builtins(edited))

    base = "/_sandbox/{platform}/shops/{shop_id}/products"
    return [
        Route(base, listing, methods=["GET"]),
        Route(base + "/{product_id}/edit", edit, methods=["POST"]),
    ]
