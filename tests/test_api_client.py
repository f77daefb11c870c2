"""The real `healthchecks-io` PyPI client (sync and async) against a running heartbeatd.

The sync client blocks, so it runs in a worker thread while the daemon serves on the loop.
The client was written for pydantic v1 and warns about it under v2; those warnings are the
client's, so they are ignored here and only here.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic.warnings import PydanticDeprecatedSince20

from heartbeatd.web.api.schema import unique_key
from tests.conftest import Daemon

with warnings.catch_warnings():
    warnings.simplefilter("ignore", PydanticDeprecatedSince20)
    from healthchecks_io import AsyncClient, CheckCreate, CheckUpdate, Client
    from healthchecks_io.schemas import CheckStatuses

pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")

NOTIFIERS = """
[[notifier]]
name = "ops"
type = "log"
default = true
"""


async def start(start_daemon: Callable[..., Any]) -> tuple[Daemon, str, str, str]:
    daemon = await start_daemon(NOTIFIERS)
    rw, _ = await daemon.store.create_api_key("client", False, daemon.clock.now(), "cli")
    ro, _ = await daemon.store.create_api_key("viewer", True, daemon.clock.now(), "cli")
    return daemon, str(daemon.client.make_url("")).rstrip("/"), rw, ro


def flips_via_client_model(base: str, key: str, uuid: str) -> list[CheckStatuses]:
    """Flips parsed by the client's own model. Its `get_check_flips` expects the bare array
    the Healthchecks docs show, but Healthchecks (and heartbeatd) answer `{"flips": [...]}`,
    so that one method fails against either server; the rows themselves must fit its model."""
    response = httpx.get(f"{base}/api/v3/checks/{uuid}/flips/", headers={"X-Api-Key": key})
    return [CheckStatuses(**row) for row in response.json()["flips"]]


def sync_session(base: str, rw: str, ro: str) -> None:
    with Client(api_key=rw, api_url=f"{base}/api/", ping_url=f"{base}/ping/", api_version=3) as hc:
        created = hc.create_check(
            CheckCreate(name="Backups", tags="prod db", timeout=120, grace=60, unique=["name"])
        )
        assert (created.name, created.tags, created.timeout, created.grace) == (
            "Backups", "prod db", 120, 60,
        )  # fmt: skip
        assert created.status == "new" and created.uuid is not None
        # CheckCreate sends every field (its defaults too), so the upsert sets them all
        again = hc.create_check(
            CheckCreate(name="Backups", tags="prod db", timeout=300, unique=["name"])
        )
        assert again.uuid == created.uuid and (again.timeout, again.grace) == (300, 3600)

        assert [c.name for c in hc.get_checks(tags=["prod", "db"])] == ["Backups"]
        assert hc.get_checks(tags=["staging"]) == []

        # the client sends only the fields given; the rest must stay as they were
        updated = hc.update_check(created.uuid, CheckUpdate(desc="nightly dump", grace=90))
        assert (updated.desc, updated.grace, updated.timeout) == ("nightly dump", 90, 300)

        assert hc.start_ping(uuid=created.uuid) == (True, "OK")
        assert hc.success_ping(uuid=created.uuid, data="42 rows") == (True, "OK")
        assert hc.fail_ping(uuid=created.uuid) == (True, "OK")
        pings = hc.get_check_pings(created.uuid)
        assert [(p.type, p.number_of_pings) for p in pings] == [
            ("fail", 3), ("success", 2), ("start", 1),
        ]  # fmt: skip
        assert pings[1].method == "POST" and pings[1].duration is not None
        assert hc.get_check(created.uuid).n_pings == 3

        flips = flips_via_client_model(base, rw, created.uuid)
        assert [f.up for f in flips] == [0, 1]

        paused = hc.pause_check(created.uuid)
        assert paused.status == "paused"

        (channel,) = hc.get_integrations()
        assert (channel.name, channel.kind) == ("ops", "log")
        assert hc.get_check(created.uuid).channels == channel.id

        badges = hc.get_badges()
        assert set(badges) == {"*", "prod", "db"}
        assert badges["prod"].svg3.endswith("/prod.svg") and badges["*"].json_url

        deleted = hc.delete_check(created.uuid)
        assert deleted.name == "Backups"
        assert hc.get_checks() == []

    with Client(api_key=ro, api_url=f"{base}/api/", api_version=1) as viewer:
        assert viewer.get_checks() == []


async def test_the_sync_client_manages_checks_end_to_end(start_daemon: Callable) -> None:
    _, base, rw, ro = await start(start_daemon)
    await asyncio.to_thread(sync_session, base, rw, ro)


async def test_the_async_client_manages_checks_end_to_end(start_daemon: Callable) -> None:
    daemon, base, rw, ro = await start(start_daemon)
    async with httpx.AsyncClient() as http:
        hc = AsyncClient(api_key=rw, api_url=f"{base}/api/", ping_url=f"{base}/ping/",
                         api_version=2, client=http)  # fmt: skip
        hc._finalizer.detach()  # it would asyncio.run() a close at GC time; we close `http`
        created = await hc.create_check(CheckCreate(name="Reports", schedule="0 3 * * *",
                                                    tz="Europe/Riga", grace=600))  # fmt: skip
        assert (created.name, created.slug, created.grace) == ("Reports", "reports", 600)
        fetched = await hc.get_check(created.uuid)
        assert fetched.uuid == created.uuid and fetched.timeout is None

        updated = await hc.update_check(created.uuid, CheckUpdate(name="Reports v2"))
        assert (updated.name, updated.slug) == ("Reports v2", "reports-v2")  # v2 derives it

        assert await hc.success_ping(uuid=created.uuid) == (True, "OK")
        (ping,) = await hc.get_check_pings(created.uuid)
        assert (ping.type, ping.number_of_pings, ping.scheme) == ("success", 1, "http")
        assert ping.date.timestamp() == pytest.approx(daemon.clock.now())

        assert (await hc.pause_check(created.uuid)).status == "paused"
        assert [c.name for c in await hc.get_checks()] == ["Reports v2"]
        assert [i.name for i in await hc.get_integrations()] == ["ops"]
        assert set(await hc.get_badges()) == {"*"}

        async with httpx.AsyncClient() as own_headers:  # the client sets its key on `http`
            viewer = AsyncClient(api_key=ro, api_url=f"{base}/api/", api_version=3,
                                 client=own_headers)  # fmt: skip
            viewer._finalizer.detach()
            by_key = await viewer.get_check(unique_key(created.uuid))
        assert by_key.name == "Reports v2" and by_key.uuid is None
        assert by_key.unique_key == unique_key(created.uuid)

        assert (await hc.delete_check(created.uuid)).name == "Reports v2"
        assert await hc.get_checks() == []
