"""The log notifier, the embedded default: an alert is a line on stderr."""

from __future__ import annotations

import logging

import pytest

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
