"""The event log below the hub, the projections and the relay.

Its codec (how events are stored) and its reader (positions, batches).
"""
