"""Every command the hub accepts, by name, with the aggregate rules that run it.

The NATS subjects (``hub.cmd.<name>``), the CLI and in-process callers all use
this one table, so a command is validated and executed the same way wherever it
comes from: decoded once at the boundary into its typed struct (which names the
field and the rule on bad input), then handed to the group committer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from domain import stock
from domain.events import Context, Event


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


STOCK_RULES = StockRules()


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
    )
}


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
