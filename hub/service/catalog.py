"""Product library commands: ``hub.cmd.product.define|change|retire``.

The rules run :mod:`domain.catalog` with each platform's product direction from
the policy book (``sync.products.direction``; a platform without one: ``off``),
which only a platform's reported edit reads. :mod:`hub.service.catalog_sync`
writes the library to every bound shop and takes in the platforms' edits.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from domain import catalog
from domain.events import Context, Event, project
from domain.policy import PolicyBook, ProductDirection
from hub.service.inventory import aggregate_history


def product_directions(book: PolicyBook) -> dict[str, ProductDirection]:
    """Each platform's product direction in ``book`` (only those that give one)."""
    return {
        platform: profile.sync.products.direction
        for platform, profile in book.profiles.items()
        if profile.sync is not None and profile.sync.products is not None
    }


class CatalogRules:
    """How the committer runs product commands, with the book's directions."""

    def __init__(self, book: PolicyBook | None = None) -> None:
        """Rules reading ``book`` (``None``: every platform's direction is off)."""
        self.book = book
        self.directions: Mapping[str, ProductDirection] = (
            product_directions(book) if book is not None else {}
        )

    def with_book(self, book: PolicyBook) -> CatalogRules:
        """Catalog rules reading ``book``."""
        return CatalogRules(book)

    def aggregate_id(self, command: catalog.ProductCommand) -> uuid.UUID:
        """Products are keyed by their hub product code."""
        return catalog.product_id(command.product)

    def decide(
        self,
        state: catalog.Product | None,
        command: catalog.ProductCommand,
        ctx: Context,
    ) -> list[Event]:
        """Delegate to :func:`domain.catalog.decide` with the directions."""
        return catalog.decide(state, command, ctx, self.directions)

    def mutate(self, event: Event, state: catalog.Product | None) -> Any:
        """Delegate to :func:`domain.catalog.mutate`."""
        return catalog.mutate(event, state)


CATALOG_RULES = CatalogRules()


class ProductNotFoundError(LookupError):
    """No product has the code asked for."""


async def read_product(database_url: str, product: str) -> catalog.Product:
    """A product's state folded from its events in the log.

    Raises:
        ProductNotFoundError: the log has no event of ``product``.
    """
    events = await aggregate_history(database_url, catalog.product_id(product))
    if not events:
        raise ProductNotFoundError(f"no product has code {product!r}")
    state: catalog.Product = project(
        catalog.mutate, None, (event for _, event in events)
    )
    return state
