"""The gateway core: config, event model, durable outbox, station logic, health, the CLI."""

__version__ = "0.1.0"
