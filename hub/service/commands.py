"""Every command the hub accepts, by name, with the aggregate rules that run it.

The NATS subjects (``hub.cmd.<name>``), the CLI and in-process callers all use
this one table, so a command is validated and executed the same way wherever it
comes from: decoded once at the boundary into its typed struct (which names the
field and the rule on bad input), then handed to the group committer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import msgspec

from domain import audience, binding, catalog, marketing, order, payout, stock
from domain.events import Context, Event
from domain.policy import PolicyBook
from domain.risk import ClearViolations, RecordDiversion, ReportViolation
from hub.service.catalog import CATALOG_RULES
from hub.service.marketing import CAMPAIGN_RULES, MEMBERSHIP_RULES
from hub.service.risk import TRAFFIC_RULES, VIOLATION_RULES


class StockRules:
    """How the committer runs stock item commands."""

    def aggregate_id(self, command: stock.StockCommand) -> uuid.UUID:
        """Stock items are keyed by SKU."""
        return stock.stock_item_id(command.sku)

    def decide(
        self, state: stock.StockItem | None, command: stock.StockCommand, ctx: Context
    ) -> list[Event]:
        """Delegate to :func:`domain.stock.decide`."""
        return stock.decide(state, command, ctx)

    def mutate(self, event: Event, state: stock.StockItem | None) -> Any:
        """Delegate to :func:`domain.stock.mutate`."""
        return stock.mutate(event, state)

    def request_key(self, command: stock.StockCommand) -> str | None:
        """The command's idempotency key: the committer records it with the
        command's events, so a retry with it applies once."""
        return command.request_id


STOCK_RULES = StockRules()


class AudienceRules:
    """How the committer runs ``audience.record_views``."""

    def aggregate_id(self, command: audience.RecordViews) -> uuid.UUID:
        """One aggregate per channel account's live session or video."""
        return audience.audience_id(
            command.channel_account, command.source, command.source_id
        )

    def decide(
        self,
        state: audience.Audience | None,
        command: audience.RecordViews,
        ctx: Context,
    ) -> list[Event]:
        """Delegate to :func:`domain.audience.decide`."""
        return audience.decide(state, command, ctx)

    def mutate(self, event: Event, state: audience.Audience | None) -> Any:
        """Delegate to :func:`domain.audience.mutate`."""
        return audience.mutate(event, state)

    def request_key(self, command: audience.RecordViews) -> str | None:
        """The report's idempotency key (views are deltas: a retry needs one)."""
        return command.request_id


AUDIENCE_RULES = AudienceRules()


class OrderRules:
    """How the committer runs order commands."""

    def aggregate_id(self, command: order.OrderCommand) -> uuid.UUID:
        """Orders are keyed by platform and the platform's order id."""
        return order.order_id(command.platform, command.platform_order_id)

    def decide(
        self, state: order.Order | None, command: order.OrderCommand, ctx: Context
    ) -> list[Event]:
        """Delegate to :func:`domain.order.decide`."""
        return order.decide(state, command, ctx)

    def mutate(self, event: Event, state: order.Order | None) -> Any:
        """Delegate to :func:`domain.order.mutate`."""
        return order.mutate(event, state)


ORDER_RULES = OrderRules()


@runtime_checkable
class NeedsPolicyBook(Protocol):
    """Rules that read the platform policy book: the hub hands it over at start."""

    def with_book(self, book: PolicyBook) -> Any:
        """The same rules, reading ``book``."""
        ...


class PolicyBookMissingError(RuntimeError):
    """Rules that need the policy book ran without one (a wiring bug)."""


class BindingRules:
    """How the committer runs binding commands: with their platform's profile.

    The profile comes from the policy book loaded at start (see
    :func:`command_rules`), so a changed threshold in the book changes the
    outcome without a code change. The table :data:`COMMANDS` holds an instance
    without a book; :meth:`with_book` gives the one the hub runs.
    """

    def __init__(self, book: PolicyBook | None = None) -> None:
        """Rules reading ``book`` (``None``: a placeholder that cannot decide)."""
        self.book = book

    def with_book(self, book: PolicyBook) -> BindingRules:
        """Binding rules reading ``book``."""
        return BindingRules(book)

    def aggregate_id(self, command: binding.BindingCommand) -> uuid.UUID:
        """Bindings are keyed by channel account, platform and shop."""
        return binding.binding_id(
            command.channel_account, command.platform, command.shop_id
        )

    def decide(
        self,
        state: binding.Binding | None,
        command: binding.BindingCommand,
        ctx: Context,
    ) -> list[Event]:
        """Delegate to :func:`domain.binding.decide` with the platform's profile.

        Raises:
            domain.policy.UnknownPlatformError: the book has no such platform.
            PolicyBookMissingError: these rules were never given a book.
        """
        if self.book is None:
            raise PolicyBookMissingError(
                "binding rules have no policy book: run commands through a hub "
                "built by hub.bootstrap.bootstrap (or hub.commands.command_rules)"
            )
        profile = self.book.profile(command.platform)
        return binding.decide(state, command, ctx, profile)

    def mutate(self, event: Event, state: binding.Binding | None) -> Any:
        """Delegate to :func:`domain.binding.mutate`."""
        return binding.mutate(event, state)


BINDING_RULES = BindingRules()


class PayoutRules:
    """How the committer runs payout commands: with the book's settlement terms.

    Like :class:`BindingRules`, the table holds an instance without a book;
    :meth:`with_book` gives the one the hub runs.
    """

    def __init__(self, book: PolicyBook | None = None) -> None:
        """Rules reading ``book`` (``None``: a placeholder that cannot decide)."""
        self.book = book

    def with_book(self, book: PolicyBook) -> PayoutRules:
        """Payout rules reading ``book``."""
        return PayoutRules(book)

    def aggregate_id(self, command: payout.PayoutCommand) -> uuid.UUID:
        """An order's payouts are keyed by platform and the platform's order id."""
        return payout.payout_id(command.platform, command.platform_order_id)

    def decide(
        self, state: payout.Payout | None, command: payout.PayoutCommand, ctx: Context
    ) -> list[Event]:
        """Delegate to :func:`domain.payout.decide` with the book's terms.

        Raises:
            PolicyBookMissingError: these rules were never given a book.
        """
        if self.book is None:
            raise PolicyBookMissingError(
                "payout rules have no policy book: run commands through a hub "
                "built by hub.bootstrap.bootstrap (or hub.commands.command_rules)"
            )
        return payout.decide(state, command, ctx, self.book.settlement)

    def mutate(self, event: Event, state: payout.Payout | None) -> Any:
        """Delegate to :func:`domain.payout.mutate`."""
        return payout.mutate(event, state)


PAYOUT_RULES = PayoutRules()


class CommissionTermsRules(PayoutRules):
    """How the committer runs a binding's commission agreements."""

    def with_book(self, book: PolicyBook) -> CommissionTermsRules:
        """Commission rules reading ``book``."""
        return CommissionTermsRules(book)

    def aggregate_id(self, command: payout.TermsCommand) -> uuid.UUID:  # type: ignore[override]
        """Commission terms are keyed by the binding."""
        return payout.terms_id(
            command.channel_account, command.platform, command.shop_id
        )

    def decide(  # type: ignore[override]
        self,
        state: payout.CommissionTerms | None,
        command: payout.TermsCommand,
        ctx: Context,
    ) -> list[Event]:
        """Delegate to :func:`domain.payout.decide_terms` with the book's range.

        Raises:
            domain.payout.SettlementTermsMissingError: the book has no terms.
        """
        if self.book is None or self.book.settlement is None:
            raise payout.SettlementTermsMissingError(
                "commission terms need the policy book's settlement terms "
                "($.settlement)"
            )
        return payout.decide_terms(state, command, ctx, self.book.settlement)

    def mutate(self, event: Event, state: Any) -> Any:
        """Delegate to :func:`domain.payout.mutate_terms`."""
        return payout.mutate_terms(event, state)


TERMS_RULES = CommissionTermsRules()


@dataclass(frozen=True)
class CommandSpec:
    """One accepted command: its struct, rules and documentation."""

    name: str
    type: type[msgspec.Struct]
    rules: Any
    summary: str

    @property
    def subject(self) -> str:
        """NATS request subject of the command."""
        return f"hub.cmd.{self.name}"


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec(
            "stock.receive",
            stock.ReceiveStock,
            STOCK_RULES,
            "Receive units of a hub SKU into stock on hand.",
        ),
        CommandSpec(
            "stock.adjust",
            stock.AdjustStock,
            STOCK_RULES,
            "Change stock on hand of a hub SKU by a signed delta, with a reason.",
        ),
        CommandSpec(
            "stock.count",
            stock.CountStock,
            STOCK_RULES,
            "Record a physical count: stock on hand becomes the counted quantity.",
        ),
        CommandSpec(
            "stock.set_on_hand",
            stock.SetOnHand,
            STOCK_RULES,
            "Compare-and-set: stock on hand becomes on_hand if it is "
            "expected_on_hand (else stock_conflict: re-read and retry).",
        ),
        CommandSpec(
            "stock.commit",
            stock.CommitStock,
            STOCK_RULES,
            "Commit units to an open order reference (no more than available; "
            "a second commit for the same order changes nothing).",
        ),
        CommandSpec(
            "stock.release",
            stock.ReleaseStock,
            STOCK_RULES,
            "Release an order's commitment down to keep units.",
        ),
        CommandSpec(
            "stock.consume",
            stock.ConsumeStock,
            STOCK_RULES,
            "Ship an order: its commitment down to keep units leaves on hand.",
        ),
        CommandSpec(
            "stock.reserve",
            stock.ReserveStock,
            STOCK_RULES,
            "Hold available units back under a reference (a live session, a deal).",
        ),
        CommandSpec(
            "stock.unreserve",
            stock.UnreserveStock,
            STOCK_RULES,
            "Bring a reservation down to keep units.",
        ),
        CommandSpec(
            "stock.set_safety",
            stock.SetSafetyStock,
            STOCK_RULES,
            "Keep a number of units back as safety stock.",
        ),
        CommandSpec(
            "stock.set_low_threshold",
            stock.SetLowStockThreshold,
            STOCK_RULES,
            "Alert (StockLowAlertRaised) when available is at or below the "
            "threshold; null removes it.",
        ),
        CommandSpec(
            "stock.report_platform",
            stock.ReportPlatformStock,
            STOCK_RULES,
            "A platform reports the stock it shows: StockDriftDetected when it "
            "is further than tolerance from what the hub expected.",
        ),
        CommandSpec(
            "order.place",
            order.PlaceOrder,
            ORDER_RULES,
            "Record an order placed on a platform, lines mapped to hub SKUs "
            "(placing an order that exists changes nothing). Its units are "
            "committed by the order-stock process.",
        ),
        CommandSpec(
            "order.pay",
            order.PayOrder,
            ORDER_RULES,
            "Record the payment (amount_fen defaults to the total); may carry "
            "the placement when it arrives first.",
        ),
        CommandSpec(
            "order.ship",
            order.ShipOrder,
            ORDER_RULES,
            "Record the shipment of a paid order (its units are consumed).",
        ),
        CommandSpec(
            "order.complete",
            order.CompleteOrder,
            ORDER_RULES,
            "Record that a shipped order was received.",
        ),
        CommandSpec(
            "order.cancel",
            order.CancelOrder,
            ORDER_RULES,
            "Cancel an unpaid order (its units are released); may carry the "
            "placement when it arrives first.",
        ),
        CommandSpec(
            "order.refund",
            order.RefundOrder,
            ORDER_RULES,
            "Refund money (and units, before shipment) under a refund_id; the "
            "refund that returns everything paid makes the order refunded.",
        ),
        CommandSpec(
            "binding.request",
            binding.RequestBinding,
            BINDING_RULES,
            "Ask to bind a channel account to a shop on a platform, with the "
            "materials the platform asks for (a repeated request finds the same "
            "binding and changes nothing).",
        ),
        CommandSpec(
            "binding.verify_subject",
            binding.VerifySubject,
            BINDING_RULES,
            "Compare the account's certified subject with the shop's licence: "
            "SubjectVerified, or SubjectMismatched listing every differing field.",
        ),
        CommandSpec(
            "binding.record_qualification",
            binding.RecordQualification,
            BINDING_RULES,
            "Record the measured facts; the platform's rules decide: "
            "QualificationPassed, or QualificationRejected listing every failure "
            "(ok=true; state.status and state.failures say which).",
        ),
        CommandSpec(
            "binding.meet_requirement",
            binding.MeetSpecialRequirement,
            BINDING_RULES,
            "Record one pending special requirement as met.",
        ),
        CommandSpec(
            "binding.authorise",
            binding.Authorise,
            BINDING_RULES,
            "Record the platform's authorisation with its route and data scope, "
            "on the grant the hub obtained by running the binding's route "
            "(grant_ref, required: none is refused grant_required).",
        ),
        CommandSpec(
            "binding.activate",
            binding.Activate,
            BINDING_RULES,
            "Start an authorised binding: data flows within its scope.",
        ),
        CommandSpec(
            "binding.suspend",
            binding.Suspend,
            BINDING_RULES,
            "Stop an active binding, with a reason.",
        ),
        CommandSpec(
            "binding.reinstate",
            binding.Reinstate,
            BINDING_RULES,
            "Make a suspended binding active again.",
        ),
        CommandSpec(
            "payout.agree_commission",
            payout.AgreeCommission,
            TERMS_RULES,
            "Set the streamer and commission rate (within the policy book's "
            "range) of a binding's sales outside live sessions.",
        ),
        CommandSpec(
            "payout.schedule_live_session",
            payout.ScheduleLiveSession,
            TERMS_RULES,
            "Orders paid on the binding during [starts_at, ends_at) pay the "
            "session's streamer its rate.",
        ),
        CommandSpec(
            "payout.schedule",
            payout.SchedulePayout,
            PAYOUT_RULES,
            "Split a paid order and schedule its payout for its channel's "
            "settlement date (the payout process sends it for each paid order).",
        ),
        CommandSpec(
            "payout.reverse",
            payout.ReversePayout,
            PAYOUT_RULES,
            "Reverse an order's split in proportion to a refund.",
        ),
        CommandSpec(
            "payout.settle",
            payout.SettlePayouts,
            PAYOUT_RULES,
            "Settle the order's pending payouts due on or before as_of.",
        ),
        CommandSpec(
            "binding.unbind",
            binding.Unbind,
            BINDING_RULES,
            "End a binding, from any status (it may be requested again).",
        ),
        CommandSpec(
            "risk.divert",
            RecordDiversion,
            TRAFFIC_RULES,
            "Count one diversion (a buyer sent from the channel to the bound "
            "shop's product page, once per reference) against the platform's "
            "traffic budget; the one past it is refused with the rule and count.",
        ),
        CommandSpec(
            "risk.report_violation",
            ReportViolation,
            VIOLATION_RULES,
            "Record a violation signal (content_review, manual_review, "
            "user_report) with its evidence; by the platform's rule it warns, "
            "then suspends the binding.",
        ),
        CommandSpec(
            "risk.clear_violations",
            ClearViolations,
            VIOLATION_RULES,
            "Stop counting the binding's violations (before binding.reinstate).",
        ),
        CommandSpec(
            "marketing.publish",
            marketing.PublishCampaign,
            CAMPAIGN_RULES,
            "Publish a campaign of a binding's shop: the shop's spend-threshold "
            "reduction, the live-room coupon, fission terms, window, per-buyer "
            "limit and quantity (docs/marketing.md).",
        ),
        CommandSpec(
            "marketing.claim",
            marketing.ClaimCoupon,
            CAMPAIGN_RULES,
            "A buyer (subject id) claims the campaign's live-room coupon, within "
            "the per-buyer limit and the quantity.",
        ),
        CommandSpec(
            "marketing.share",
            marketing.RecordShare,
            CAMPAIGN_RULES,
            "A friend opened the live room from a buyer's share: credited "
            "(ShareRecorded, FissionRewardGranted at friends_needed) or refused "
            "with the rule (ShareRefused).",
        ),
        CommandSpec(
            "marketing.redeem",
            marketing.RedeemCoupon,
            CAMPAIGN_RULES,
            "An order uses a buyer's coupon: priced with the shop's reduction "
            "first, the coupon second; every line's discount in fen is recorded.",
        ),
        CommandSpec(
            "marketing.close",
            marketing.CloseCampaign,
            CAMPAIGN_RULES,
            "End a campaign: nothing more is claimed, shared or redeemed.",
        ),
        CommandSpec(
            "marketing.enroll_member",
            marketing.EnrollMember,
            MEMBERSHIP_RULES,
            "A follower of the binding's channel account becomes a shop member, "
            "keeping what the platform's profile mode keeps.",
        ),
        CommandSpec(
            "audience.record_views",
            audience.RecordViews,
            AUDIENCE_RULES,
            "Add views (a delta) of a channel's live session (source live, "
            "source_id the session id) or short video (source video); a retry "
            "with the same request_id counts once.",
        ),
        CommandSpec(
            "product.define",
            catalog.DefineProduct,
            CATALOG_RULES,
            "Add a product to the library: title, price_fen, skus (sku, "
            "attributes, price_fen) and images (http/https URLs, never fetched); "
            "it is written to every bound shop whose product direction pushes "
            "(docs/catalog.md). Defining it again unchanged does nothing.",
        ),
        CommandSpec(
            "product.change",
            catalog.ChangeProduct,
            CATALOG_RULES,
            "Change the fields given (ProductChanged names only those that "
            "differ): a new revision, written to every bound shop.",
        ),
        CommandSpec(
            "product.retire",
            catalog.RetireProduct,
            CATALOG_RULES,
            "Take a product out of the library: it is no longer changed or written.",
        ),
    )
}


def command_rules(book: PolicyBook) -> dict[str, Any]:
    """The rules object of every command, those that need it reading ``book``.

    Rules shared by several commands stay shared (one object per kind).
    """
    bound: dict[int, Any] = {}
    rules: dict[str, Any] = {}
    for name, spec in COMMANDS.items():
        if isinstance(spec.rules, NeedsPolicyBook):
            key = id(spec.rules)
            if key not in bound:
                bound[key] = spec.rules.with_book(book)
            rules[name] = bound[key]
        else:
            rules[name] = spec.rules
    return rules


class CommandDecodeError(ValueError):
    """A command's payload is malformed; the message names the field and rule."""

    code = "invalid_command"


def decode_command(name: str, payload: bytes) -> msgspec.Struct:
    """Decode and validate a command's JSON payload into its typed struct.

    Raises:
        CommandDecodeError: unknown command, bad JSON, or a field breaking a rule.
    """
    spec = COMMANDS.get(name)
    if spec is None:
        raise CommandDecodeError(
            f"unknown command {name!r}; known: {', '.join(sorted(COMMANDS))}"
        )
    try:
        return msgspec.json.decode(payload, type=spec.type)
    except msgspec.ValidationError as exc:
        raise CommandDecodeError(f"{name}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise CommandDecodeError(f"{name}: malformed JSON ({exc})") from None
