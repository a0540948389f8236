"""The hub's domain: aggregates, their events and the pure rules.

Imports only the standard library and msgspec: no database, network, clock or
environment. Time and ids come in through :class:`domain.events.Context`.
"""
