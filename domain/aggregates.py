"""Every kind of aggregate: its state type and its ``mutate``.

What reads the log generically (replay, snapshots) finds here how to fold an
aggregate's events, from the type of any one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain import (
    audience,
    binding,
    catalog,
    marketing,
    order,
    payout,
    push,
    reconciliation,
    risk,
    stock,
)
from domain.events import Event, State


@dataclass(frozen=True)
class AggregateKind:
    """One kind of aggregate: the state its events fold into, and how."""

    state: type[State]
    mutate: Callable[[Any, Any], Any]

    def folds(self, event_type: type[Event]) -> bool:
        """Whether ``mutate`` has a handler for ``event_type``."""
        registry: Any = getattr(self.mutate, "registry", {})
        return event_type in registry


#: Every aggregate kind of the domain.
KINDS: tuple[AggregateKind, ...] = (
    AggregateKind(stock.StockItem, stock.mutate),
    AggregateKind(order.Order, order.mutate),
    AggregateKind(binding.Binding, binding.mutate),
    AggregateKind(push.StockPush, push.mutate),
    AggregateKind(payout.Payout, payout.mutate),
    AggregateKind(payout.CommissionTerms, payout.mutate_terms),
    AggregateKind(marketing.Campaign, marketing.mutate),
    AggregateKind(marketing.Member, marketing.mutate_member),
    AggregateKind(catalog.Product, catalog.mutate),
    # A binding's traffic and its violations fold through one mutate.
    AggregateKind(risk.Traffic, risk.mutate),
    AggregateKind(risk.Violations, risk.mutate),
    AggregateKind(audience.Audience, audience.mutate),
    AggregateKind(reconciliation.Statement, reconciliation.mutate),
)


def kind_of(event_type: type[Event]) -> AggregateKind:
    """The kind of aggregate events of ``event_type`` belong to.

    Raises:
        LookupError: no aggregate folds such events.
    """
    for kind in KINDS:
        if kind.folds(event_type):
            return kind
    raise LookupError(f"no aggregate kind folds {event_type.__name__}")
