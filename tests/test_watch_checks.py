"""watch/checks.py: whichever door changes a check, the monitor learns its new deadlines."""

from __future__ import annotations

from heartbeatd.core import model
from heartbeatd.web.keys import CHECKS
from tests.conftest import Daemon
from tests.test_monitor import flips


async def test_a_schedule_shortened_by_update_takes_the_check_down_at_its_new_deadline(
    daemon: Daemon,
) -> None:
    check = await daemon.add(period=3600.0, grace=60.0)
    await daemon.client.get(f"/ping/{check.uuid}")

    def shorter(current: model.Check | None) -> model.CheckDefinition:
        assert current is not None
        return model.CheckDefinition(name=current.name, slug=current.slug, period=60.0, grace=10.0)

    await daemon.app[CHECKS].update(check.uuid, shorter, "test")
    await daemon.advance(71)
    assert [f[1] for f in await flips(daemon)] == ["up", "down"]


async def test_a_removed_check_is_no_longer_watched(daemon: Daemon) -> None:
    check = await daemon.add(period=60.0, grace=10.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    assert len(daemon.monitor) == 1
    await daemon.app[CHECKS].remove(check.uuid, "test")
    assert len(daemon.monitor) == 0
    await daemon.advance(120)  # nothing fires for a check that is gone


async def test_a_paused_check_is_not_watched_until_it_is_pinged_again(daemon: Daemon) -> None:
    check = await daemon.add(period=60.0, grace=10.0)
    await daemon.client.get(f"/ping/{check.uuid}")
    await daemon.app[CHECKS].change_state(check.uuid, model.pause, "test")
    assert len(daemon.monitor) == 0
    await daemon.advance(120)
    assert [f[1] for f in await flips(daemon)] == ["up", "paused"]
    await daemon.client.get(f"/ping/{check.uuid}")
    assert len(daemon.monitor) == 1
