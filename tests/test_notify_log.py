"""The log notifier, the embedded default: an alert is a line on stderr."""

from __future__ import annotations

import logging

import pytest

from heartbeatd.core.model import unique_key
from tests.conftest import Daemon, eventually


async def test_it_logs_a_line_when_a_check_goes_down(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="heartbeatd")
    check = await daemon.add("db-dump", period=5.0, grace=1.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.advance(7)
    await eventually(lambda: "db-dump is DOWN (missed ping)" in caplog.text)
    assert check.uuid in caplog.text  # the ping URL, to find the check


async def test_it_refuses_options(start_daemon) -> None:
    from heartbeatd.core.config import ConfigError

    with pytest.raises(ConfigError, match=r"heartbeatd.toml:4: colour: "):
        await start_daemon('[[notifier]]\nname = "l"\ntype = "log"\ncolour = "red"\n')


async def test_a_check_made_by_the_v3_api_without_a_slug_is_named_in_the_log(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """v3 makes no slug from the name: the alert and the delivery line name the check by its
    name, and a check with neither by its unique key (never its UUID, the ping secret)."""
    caplog.set_level(logging.INFO, logger="heartbeatd")
    key, _ = await daemon.store.create_api_key("ops", False, daemon.clock.now(), "cli")
    named, anonymous = [
        await (
            await daemon.client.post("/api/v3/checks/", json=body, headers={"X-Api-Key": key})
        ).json()
        for body in ({"name": "Nightly backup", "timeout": 60}, {"timeout": 60})
    ]
    assert named["slug"] == anonymous["slug"] == ""
    for check in (named, anonymous):
        await daemon.client.post(f"/ping/{check['uuid']}/fail")
    unique = unique_key(anonymous["uuid"])
    await eventually(lambda: f"log: down sent for {unique} in" in caplog.text)
    assert f"Nightly backup is DOWN (fail) [Nightly backup, {named['ping_url']}]" in caplog.text
    assert "log: down sent for Nightly backup in" in caplog.text
    assert f"{unique} is DOWN (fail) [{unique}, {anonymous['ping_url']}]" in caplog.text
    assert "[-," not in caplog.text and "sent for  in" not in caplog.text
