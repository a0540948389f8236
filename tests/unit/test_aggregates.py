"""Every event the domain records belongs to an aggregate kind that folds it,
so replay (state at a point) and snapshots can fold any aggregate's history."""

from __future__ import annotations

import importlib
import pkgutil

import domain
from domain.aggregates import KINDS
from domain.events import registered_events


def _import_domain() -> None:
    for module in pkgutil.iter_modules(domain.__path__):
        importlib.import_module(f"domain.{module.name}")


def test_every_registered_event_folds_into_an_aggregate_kind() -> None:
    _import_domain()
    unfolded = sorted(
        topic
        for topic, cls in registered_events().items()
        # Tests register events of their own (tests/unit/test_store.py).
        if cls.__module__.startswith("domain.")
        and not any(kind.folds(cls) for kind in KINDS)
    )
    assert unfolded == [], "events no aggregate kind folds"
