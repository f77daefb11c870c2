"""All of heartbeatd's SQL: checks, pings, flips, the notification outbox, accounts and meta.

The store layer: it imports core and its own modules (writer, migrations, apikeys, retention,
backup), never notify, watch, web, daemon or cli.

Writes go through the group-commit Writer (writer.py) as functions run in its batches, where the
decisions of core (outcome.py for a ping, model.py for a deadline) are applied to the row just
read, so a ping, the flip it causes and that flip's outbox rows are one transaction. Reads that
need no write lock use an aiosqlite connection.

One module per table family (checks, pings, outbox, silences, accounts, meta), each a mixin over
base.StoreBase, which holds the connections, the write path and the ping cache; this module
only composes them into Store and re-exports the names callers import from heartbeatd.store.
"""

from heartbeatd.core.model import CheckDefinition
from heartbeatd.core.outcome import PingIn
from heartbeatd.store import apikeys, writer
from heartbeatd.store.accounts import Accounts
from heartbeatd.store.base import (
    SELECT_CHECK,
    ApiKey,
    BySlug,
    ByUuid,
    FlipRecord,
    OutboxItem,
    PingRecord,
    PingResult,
)
from heartbeatd.store.checks import Checks
from heartbeatd.store.meta import DatabaseFacts, Meta, database_facts
from heartbeatd.store.outbox import Outbox
from heartbeatd.store.pings import Pings
from heartbeatd.store.silences import Silences

__all__ = [
    "SELECT_CHECK",
    "ApiKey",
    "BySlug",
    "ByUuid",
    "CheckDefinition",
    "DatabaseFacts",
    "FlipRecord",
    "OutboxItem",
    "PingIn",
    "PingRecord",
    "PingResult",
    "Store",
    "apikeys",
    "database_facts",
    "writer",
]


class Store(Checks, Pings, Outbox, Silences, Accounts, Meta):
    """Built unopened so the app can hold it from the start; `open()` connects and migrates."""
