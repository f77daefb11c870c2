"""heartbeatd: a self-hosted heartbeat monitor speaking the Healthchecks.io ping protocol."""

__version__ = "0.1.0"
