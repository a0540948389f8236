"""The sandbox's memory: shops, SKUs, orders, tokens, faults, logs.

One :class:`SandboxState` holds every platform's shops. Orders are kept in a
neutral form and rendered in each platform's shape by its route module. All
mutation happens on the server's event loop, so no locks are needed.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from connectors.sandbox.config import (
    PLATFORMS,
    ApiBudget,
    FaultConfig,
    FaultKind,
    SandboxConfig,
)

SandboxStatus = Literal["created", "paid", "shipped", "completed", "cancelled"]

#: Statuses an order may move to from each status.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "pay": ("created",),
    "cancel": ("created", "paid"),
    "ship": ("paid",),
    "complete": ("shipped",),
    "settle": ("shipped", "completed"),
}

#: What each platform keeps as its fee on settlement, in basis points
#: (WeChat Pay 0.6 % per docs/domain.md §5; the others are the sandbox's choice).
FEE_BASIS_POINTS: dict[str, int] = {
    "wechat_shop": 60,
    "douyin_shop": 500,
    "kuaishou_shop": 500,
    "youzan": 60,
}


class SandboxError(Exception):
    """A control request the sandbox cannot carry out (HTTP 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Sku:
    """One SKU of a shop, keyed by the platform's SKU id (text)."""

    sku_id: str
    product_id: str
    stock: int
    price_fen: int
    title: str = ""


@dataclass
class Line:
    """One line of a sandbox order."""

    sku_id: str
    product_id: str
    quantity: int
    unit_price_fen: int
    discount_fen: int
    title: str

    @property
    def amount_fen(self) -> int:
        """What the buyer pays for the line."""
        return self.unit_price_fen * self.quantity - self.discount_fen


@dataclass
class Order:
    """A sandbox order in neutral form (times are Unix seconds)."""

    order_id: str
    shop_id: str
    status: SandboxStatus
    lines: list[Line]
    buyer: dict[str, str]
    created_at: int
    updated_at: int
    buyer_ref: str
    carrier_code: str | None = None
    tracking_no: str | None = None
    settled_at: int | None = None
    #: The streamer's commission on the order, in basis points of its total.
    commission_bp: int = 0

    @property
    def total_fen(self) -> int:
        """What the buyer pays for the order."""
        return sum(line.amount_fen for line in self.lines)


@dataclass
class Settlement:
    """One settled order: gross, the platform's fee, the streamer's commission
    the platform pays out itself, and what the shop gets."""

    entry_id: str
    order_id: str
    gross_fen: int
    fee_fen: int
    settled_at: int
    commission_fen: int = 0

    @property
    def net_fen(self) -> int:
        """What the shop receives."""
        return self.gross_fen - self.fee_fen - self.commission_fen


@dataclass
class Token:
    """An access or refresh token the sandbox issued."""

    value: str
    shop_id: str
    expires_at: float


@dataclass
class Shop:
    """One shop on one platform, with the credentials the sandbox checks."""

    platform: str
    shop_id: str
    credentials: dict[str, str]
    webhook_url: str | None = None
    skus: dict[str, Sku] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    settlements: list[Settlement] = field(default_factory=list)
    applied: dict[str, Any] = field(default_factory=dict)
    stock_changes: list[dict[str, Any]] = field(default_factory=list)
    #: Platform product id → product (:mod:`connectors.sandbox.products`).
    products: dict[str, Any] = field(default_factory=dict)


@dataclass
class PlatformState:
    """Every shop and token of one platform."""

    shops: dict[str, Shop] = field(default_factory=dict)
    access_tokens: dict[str, Token] = field(default_factory=dict)
    refresh_tokens: dict[str, Token] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)


class SandboxState:
    """All the sandbox knows, plus its clock, its random source and its logs."""

    def __init__(self, config: SandboxConfig) -> None:
        """Start empty.

        Args:
            config: The sandbox configuration.
        """
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget every shop, token, log and fault (the config's faults return)."""
        self.rng = random.Random(self.config.seed)
        self.platforms: dict[str, PlatformState] = {
            p: PlatformState() for p in PLATFORMS
        }
        self.faults: dict[str, FaultConfig] = {
            p: self.config.faults_for(p) for p in PLATFORMS
        }
        self.scripted: dict[str, list[FaultKind]] = {p: [] for p in PLATFORMS}
        #: Each platform's API budget per shop (see connectors.sandbox.calls).
        self.budgets: dict[str, ApiBudget] = dict(self.config.budgets)
        self.budget_buckets: dict[tuple[str, str], Any] = {}
        self.webhooks: dict[str, str] = dict(self.config.webhooks)
        self.clock_offset_s = 0.0
        self.requests: list[dict[str, Any]] = []
        self.pushes: list[dict[str, Any]] = []
        self.counter = 0

    # ------------------------------------------------------------------ basics

    def now(self) -> float:
        """The sandbox's time: the wall clock plus the offset set by tests."""
        return time.time() + self.clock_offset_s

    def next_number(self) -> int:
        """A number that grows by one on every call (ids, messages)."""
        self.counter += 1
        return self.counter

    def new_secret(self, prefix: str) -> str:
        """A fresh opaque token value.

        Args:
            prefix: Text to start with, for readability in logs.

        Returns:
            The value.
        """
        return f"{prefix}{secrets.token_hex(16)}"

    def platform(self, platform: str) -> PlatformState:
        """One platform's state.

        Raises:
            SandboxError: If the platform is unknown (404).
        """
        try:
            return self.platforms[platform]
        except KeyError:
            raise SandboxError(
                f"unknown platform {platform!r}; one of {', '.join(PLATFORMS)}", 404
            ) from None

    def shop(self, platform: str, shop_id: str) -> Shop:
        """One shop.

        Raises:
            SandboxError: If there is no such shop (404).
        """
        try:
            return self.platform(platform).shops[shop_id]
        except KeyError:
            raise SandboxError(f"no {platform} shop {shop_id!r}", 404) from None

    # ------------------------------------------------------------------ faults

    def draw_fault(self, platform: str) -> FaultKind | None:
        """The fault to inject into one API call, if any (scripted ones first).

        Args:
            platform: The platform called.

        Returns:
            The fault, or None.
        """
        script = self.scripted[platform]
        if script:
            return script.pop(0)
        rates = self.faults[platform]
        draw = self.rng.random()
        for kind, rate in (
            ("5xx", rates.error_5xx_rate),
            ("rate_limit", rates.rate_limit_rate),
            ("timeout", rates.timeout_rate),
            ("token_expired", rates.token_expiry_rate),
        ):
            if draw < rate:
                return kind  # type: ignore[return-value]
            draw -= rate
        return None

    def log_request(self, platform: str, api: str, **details: Any) -> dict[str, Any]:
        """Record one API call (tests read the log through the control API).

        Args:
            platform: The platform called.
            api: The API path or method.
            **details: Anything else worth recording.

        Returns:
            The record, for the handler to complete.
        """
        record = {"platform": platform, "api": api, "at": self.now(), **details}
        self.requests.append(record)
        return record

    # ------------------------------------------------------------------ tokens

    def issue_access(self, platform: str, shop_id: str, ttl_s: int) -> Token:
        """Issue an access token for a shop.

        Args:
            platform: The platform.
            shop_id: The shop.
            ttl_s: Its lifetime.

        Returns:
            The token.
        """
        token = Token(self.new_secret("at-"), shop_id, self.now() + ttl_s)
        self.platform(platform).access_tokens[token.value] = token
        return token

    def issue_refresh(self, platform: str, shop_id: str, expires_at: float) -> Token:
        """Issue a refresh token for a shop.

        Args:
            platform: The platform.
            shop_id: The shop.
            expires_at: When it stops working (sandbox time).

        Returns:
            The token.
        """
        token = Token(self.new_secret("rt-"), shop_id, expires_at)
        self.platform(platform).refresh_tokens[token.value] = token
        return token

    def check_access(
        self, platform: str, value: str | None
    ) -> tuple[str, Token | None]:
        """Whether an access token works.

        Args:
            platform: The platform.
            value: The token sent.

        Returns:
            ``("ok", token)``, ``("expired", token)`` or ``("invalid", None)``.
        """
        token = self.platform(platform).access_tokens.get(value or "")
        if token is None:
            return "invalid", None
        if self.now() >= token.expires_at:
            return "expired", token
        return "ok", token

    def expire_tokens(self, platform: str, shop_id: str) -> int:
        """Make every access token of a shop expire now.

        Args:
            platform: The platform.
            shop_id: The shop.

        Returns:
            How many tokens were expired.
        """
        count = 0
        for token in self.platform(platform).access_tokens.values():
            if token.shop_id == shop_id and token.expires_at > self.now():
                token.expires_at = self.now() - 1
                count += 1
        return count

    # ------------------------------------------------------------------ shops

    def add_shop(
        self,
        platform: str,
        shop_id: str,
        credentials: dict[str, str],
        webhook_url: str | None,
    ) -> Shop:
        """Create (or replace) a shop.

        Args:
            platform: The platform.
            shop_id: The shop's id on the platform.
            credentials: What its requests are checked against.
            webhook_url: Where its pushes go (else the platform's webhook).

        Returns:
            The shop.
        """
        shop = Shop(platform, shop_id, credentials, webhook_url)
        self.platform(platform).shops[shop_id] = shop
        return shop

    def find_shop(self, platform: str, key: str, value: str) -> Shop | None:
        """The shop whose credential ``key`` equals ``value``, if any."""
        for shop in self.platform(platform).shops.values():
            if shop.credentials.get(key) == value:
                return shop
        return None

    def set_sku(self, shop: Shop, sku: Sku) -> None:
        """Create or replace a SKU.

        Args:
            shop: The shop.
            sku: The SKU.
        """
        shop.skus[sku.sku_id] = sku

    def change_stock(
        self, shop: Shop, sku_id: str, *, delta: int | None, absolute: int | None
    ) -> int:
        """Add ``delta`` to a SKU's stock or set it to ``absolute``.

        Args:
            shop: The shop.
            sku_id: The SKU.
            delta: The change, or None.
            absolute: The new stock, or None.

        Returns:
            The new stock.

        Raises:
            SandboxError: If the SKU is unknown (404) or the stock would drop
                below zero (409).
        """
        sku = shop.skus.get(sku_id)
        if sku is None:
            raise SandboxError(f"no SKU {sku_id!r} in shop {shop.shop_id}", 404)
        new = absolute if absolute is not None else sku.stock + (delta or 0)
        if new < 0:
            raise SandboxError(
                f"SKU {sku_id} holds {sku.stock}; cannot reduce it below 0", 409
            )
        shop.stock_changes.append(
            {"sku_id": sku_id, "before": sku.stock, "after": new, "at": self.now()}
        )
        sku.stock = new
        return new

    # ------------------------------------------------------------------ orders

    def new_order_id(self, platform: str) -> str:
        """A fresh order id in the platform's form (WeChat's above 2^53)."""
        number = self.next_number()
        if platform == "wechat_shop":
            return str(3_705_115_058_471_200_000 + number * 7)
        if platform == "douyin_shop":
            return str(4_781_320_682_406_080_000 + number * 3)
        if platform == "kuaishou_shop":
            return str(2_307_500_074_100_000 + number)
        return f"E20240101{number:015d}"

    def create_order(
        self,
        shop: Shop,
        lines: list[dict[str, Any]],
        buyer: dict[str, str],
        at: int | None,
        commission_bp: int = 0,
    ) -> Order:
        """Place an order: stock is taken at once (returned on cancel).

        Args:
            shop: The shop.
            lines: ``{"sku_id", "quantity", "discount_fen"?}`` each.
            buyer: ``name``, ``phone``, ``province``, ``city``, ``district``,
                ``detail``.
            at: Its creation time (Unix seconds), or now.
            commission_bp: The streamer's commission in basis points (its
                statement lists it where the platform's does).

        Returns:
            The order.

        Raises:
            SandboxError: If a SKU is unknown or short of stock.
        """
        if not lines:
            raise SandboxError("an order needs at least one line")
        built: list[Line] = []
        for raw in lines:
            sku = shop.skus.get(str(raw.get("sku_id")))
            if sku is None:
                raise SandboxError(
                    f"no SKU {raw.get('sku_id')!r} in {shop.shop_id}", 404
                )
            quantity = int(raw.get("quantity", 1))
            if quantity < 1:
                raise SandboxError(f"quantity {quantity} < 1")
            built.append(
                Line(
                    sku.sku_id,
                    sku.product_id,
                    quantity,
                    sku.price_fen,
                    int(raw.get("discount_fen", 0)),
                    sku.title,
                )
            )
        for line in built:
            if shop.skus[line.sku_id].stock < line.quantity:
                raise SandboxError(
                    f"SKU {line.sku_id} holds {shop.skus[line.sku_id].stock} < "
                    f"{line.quantity}",
                    409,
                )
        for line in built:
            self.change_stock(shop, line.sku_id, delta=-line.quantity, absolute=None)
        moment = int(at if at is not None else self.now())
        order = Order(
            order_id=self.new_order_id(shop.platform),
            shop_id=shop.shop_id,
            status="created",
            lines=built,
            buyer=dict(buyer),
            created_at=moment,
            updated_at=moment,
            buyer_ref=f"buyer-{self.next_number()}",
            commission_bp=commission_bp,
        )
        shop.orders[order.order_id] = order
        return order

    def order(self, shop: Shop, order_id: str) -> Order:
        """One order of a shop.

        Raises:
            SandboxError: If there is none (404).
        """
        try:
            return shop.orders[order_id]
        except KeyError:
            raise SandboxError(
                f"no order {order_id!r} in {shop.shop_id}", 404
            ) from None

    def transition(
        self,
        shop: Shop,
        order: Order,
        action: str,
        *,
        at: int | None = None,
        carrier_code: str | None = None,
        tracking_no: str | None = None,
    ) -> Order:
        """Move an order on: pay, cancel, ship, complete or settle.

        Args:
            shop: The shop.
            order: The order.
            action: One of :data:`TRANSITIONS`.
            at: When (Unix seconds), or now; never before the last update.
            carrier_code: For ``ship``.
            tracking_no: For ``ship``.

        Returns:
            The order.

        Raises:
            SandboxError: If the action does not apply to its status (409).
        """
        allowed = TRANSITIONS.get(action)
        if allowed is None:
            raise SandboxError(f"unknown action {action!r}", 404)
        if order.status not in allowed:
            raise SandboxError(
                f"cannot {action} order {order.order_id}: it is {order.status}", 409
            )
        moment = max(int(at if at is not None else self.now()), order.updated_at)
        if action == "pay":
            order.status = "paid"
        elif action == "cancel":
            order.status = "cancelled"
            for line in order.lines:
                self.change_stock(shop, line.sku_id, delta=line.quantity, absolute=None)
        elif action == "ship":
            order.status = "shipped"
            order.carrier_code = carrier_code or "SF"
            order.tracking_no = tracking_no or f"SF{self.next_number():010d}"
        elif action == "complete":
            order.status = "completed"
        else:
            if order.settled_at is not None:
                raise SandboxError(f"order {order.order_id} is already settled", 409)
            order.status = "completed"
            order.settled_at = moment
            gross = order.total_fen
            basis = FEE_BASIS_POINTS[shop.platform]
            fee = (gross * basis + 5000) // 10000
            commission = (gross * order.commission_bp + 5000) // 10000
            shop.settlements.append(
                Settlement(
                    f"S{self.next_number()}",
                    order.order_id,
                    gross,
                    fee,
                    moment,
                    commission_fen=commission,
                )
            )
        order.updated_at = moment
        return order

    def orders_updated_between(
        self, shop: Shop, start: float, end: float
    ) -> list[Order]:
        """Orders updated in ``[start, end]``, oldest update first.

        Args:
            shop: The shop.
            start: Unix seconds, inclusive.
            end: Unix seconds, inclusive.

        Returns:
            The orders, ordered by (update time, id).
        """
        found = [o for o in shop.orders.values() if start <= o.updated_at <= end]
        return sorted(found, key=lambda o: (o.updated_at, o.order_id))

    def amend_settlement(
        self, shop: Shop, order_id: str, changes: dict[str, Any]
    ) -> Settlement:
        """Change fields of an order's settlement entry (a wrong statement, to
        test reconciliation).

        Raises:
            SandboxError: no entry for the order (404) or a field that is not
                ``gross_fen``, ``fee_fen`` or ``commission_fen`` (400).
        """
        for entry in shop.settlements:
            if entry.order_id == order_id:
                break
        else:
            raise SandboxError(f"order {order_id} has no settlement entry", 404)
        for name, value in changes.items():
            if name not in ("gross_fen", "fee_fen", "commission_fen"):
                raise SandboxError(f"settlement field {name!r} cannot be amended")
            setattr(entry, name, int(value))
        return entry

    def settlements_between(
        self, shop: Shop, start: float, end: float
    ) -> list[Settlement]:
        """Settlement entries booked in ``[start, end)``, oldest first."""
        return [s for s in shop.settlements if start <= s.settled_at < end]
