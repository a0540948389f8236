"""The entry points: HTTP (webhooks), NATS request/reply, the CLI."""
