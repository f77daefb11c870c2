"""The Healthchecks-compatible management API (v1-v3): handlers, the JSON shapes of checks,
pings and flips (schema), and its OpenAPI description (openapi).

May import web's shared modules and the layers below; not web.ui.
"""
