"""The infrastructure layer.

The event store, the relay, embedded servers, migrations, settings, platform
tokens and the shop registry.
"""
