"""The state machine of PROTOCOL.md §1.6 and §2, without a database."""

from __future__ import annotations

from heartbeatd.core import model
from heartbeatd.core.model import Check, Status

T0 = 1_800_000_000.0
RID = "6b1ac1b2-5d5c-4e0a-9a43-6a0e2c9d2f10"
OTHER_RID = "0e1d6a3c-9f7b-4c55-8d52-3f9d6c1b7a21"


def make_check(**changes: object) -> Check:
    values: dict[str, object] = dict(
        id=1, uuid="u", name="backup", slug="backup", tags="", desc="", period=60.0, cron=None,
        tz="UTC", grace=10.0, misses=1, max_runtime=None, manual_resume=False, methods="",
        notifiers=None, managed=False, created=T0, status="new", last_ping=None, last_start=None,
        last_start_rid=None, last_duration=None, n_pings=0, alert_after=None,
    )  # fmt: skip
    values.update(changes)
    return Check(**values)  # type: ignore[arg-type]


def test_it_goes_up_on_the_first_success_without_alerting() -> None:
    check = make_check()
    flip = model.apply_ping(check, "success", None, T0)
    assert check.status == Status.UP
    assert flip is not None and flip.old == "new" and not flip.notifies
    assert check.alert_after == T0 + 60 + 10


def test_it_goes_down_at_once_on_fail_and_alerts() -> None:
    check = make_check(status="up", last_ping=T0)
    flip = model.apply_ping(check, "fail", None, T0 + 5, "exit status 3")
    assert check.status == Status.DOWN and check.alert_after is None
    assert flip is not None and flip.reason == "fail" and flip.notifies
    assert flip.detail == "exit status 3"


def test_a_success_after_down_is_a_recovery_that_notifies() -> None:
    check = make_check(status="down", last_ping=T0)
    flip = model.apply_ping(check, "success", None, T0 + 100)
    assert flip is not None and flip.old == "down" and flip.new == "up" and flip.notifies


def test_log_and_ign_change_nothing_but_the_count() -> None:
    check = make_check(status="up", last_ping=T0, alert_after=T0 + 70)
    assert model.apply_ping(check, "log", None, T0 + 30) is None
    assert model.apply_ping(check, "ign", None, T0 + 31) is None
    assert (check.status, check.last_ping, check.n_pings) == ("up", T0, 2)


def test_start_then_success_with_the_same_rid_measures_the_run() -> None:
    check = make_check(status="up", last_ping=T0)
    model.apply_ping(check, "start", RID, T0 + 10)
    assert check.last_ping == T0  # a start is not a success
    model.apply_ping(check, "success", RID, T0 + 25)
    assert check.last_duration == 15 and check.last_start is None


def test_a_success_with_another_rid_keeps_the_run_open() -> None:
    check = make_check(status="up", last_ping=T0)
    model.apply_ping(check, "start", RID, T0)
    model.apply_ping(check, "success", OTHER_RID, T0 + 5)
    assert check.last_start == T0 and check.last_duration is None


def test_a_fail_with_another_rid_closes_the_run_without_duration() -> None:
    check = make_check(status="up", last_ping=T0)
    model.apply_ping(check, "start", RID, T0)
    model.apply_ping(check, "fail", OTHER_RID, T0 + 5)
    assert check.last_start is None and check.last_duration is None


def test_a_started_run_must_finish_within_the_grace_by_default() -> None:
    check = make_check(status="up", last_ping=T0, grace=10.0)
    model.apply_ping(check, "start", None, T0 + 30)
    assert check.alert_after == T0 + 40  # before the schedule's T0 + 70
    deadline = model.going_down(check)
    assert deadline is not None and "did not finish within 10s" in deadline.detail


def test_max_runtime_replaces_the_grace_for_runs() -> None:
    check = make_check(status="up", last_ping=T0, max_runtime=5.0)
    model.apply_ping(check, "start", None, T0 + 30)
    assert check.alert_after == T0 + 35


def test_misses_waits_for_that_many_periods_in_a_row() -> None:
    check = make_check(misses=3)
    model.apply_ping(check, "success", None, T0)
    assert check.alert_after == T0 + 3 * 60 + 10
    deadline = model.going_down(check)
    assert deadline is not None and deadline.detail == "missed 3 pings in a row"


def test_expire_flips_down_dated_at_the_deadline_not_when_noticed() -> None:
    check = make_check()
    model.apply_ping(check, "success", None, T0)
    flip = model.expire(check, T0 + 70)
    assert flip is not None and flip.at == T0 + 70 and flip.reason == "timeout"
    assert check.status == Status.DOWN and check.alert_after is None


def test_expire_with_a_stale_moment_only_rearms() -> None:
    check = make_check()
    model.apply_ping(check, "success", None, T0)
    model.apply_ping(check, "success", None, T0 + 50)
    assert model.expire(check, T0 + 70) is None
    assert check.status == Status.UP and check.alert_after == T0 + 120


def test_pause_is_a_noop_when_paused_and_never_goes_down() -> None:
    check = make_check(status="up", last_ping=T0, last_start=T0)
    flip = model.pause(check, T0 + 1)
    assert flip is not None and not flip.notifies
    assert check.alert_after is None and check.last_start is None
    assert model.pause(check, T0 + 2) is None
    assert model.going_down(check) is None


def test_resume_returns_to_new_and_refuses_unpaused_checks() -> None:
    check = make_check(status="paused", last_ping=T0)
    flip = model.resume(check, T0 + 1)
    assert flip is not None and check.status == "new" and check.last_ping is None
    assert model.resume(check, T0 + 2) is None


def test_a_paused_check_with_manual_resume_ignores_pings() -> None:
    check = make_check(status="paused", manual_resume=True)
    assert model.effective_action(check, "success", "GET") == "ign"
    check.manual_resume = False
    assert model.effective_action(check, "success", "GET") == "success"


def test_post_only_checks_ignore_other_methods() -> None:
    check = make_check(methods="POST")
    assert model.effective_action(check, "fail", "GET") == "ign"
    assert model.effective_action(check, "fail", "POST") == "fail"


def test_status_at_shows_late_during_grace_then_down() -> None:
    check = make_check()
    model.apply_ping(check, "success", None, T0)
    assert model.status_at(check, T0 + 59) == Status.UP
    assert model.status_at(check, T0 + 60) == Status.GRACE
    assert model.status_at(check, T0 + 70) == Status.DOWN


def test_status_at_shows_started_then_down_when_the_run_overruns() -> None:
    check = make_check(status="up", last_ping=T0)
    model.apply_ping(check, "start", None, T0 + 1)
    assert model.status_at(check, T0 + 5) == Status.STARTED
    assert model.status_at(check, T0 + 11) == Status.DOWN


def test_a_paused_check_that_starts_and_never_finishes_goes_down() -> None:
    check = make_check(status="paused")
    model.apply_ping(check, "start", None, T0)
    assert check.alert_after == T0 + 10


def test_cron_checks_expect_the_next_slot_in_their_time_zone() -> None:
    # 2023-10-29 is the autumn DST change in Europe/Riga (PROTOCOL.md §5.3).
    check = make_check(period=None, cron="15 * * * *", tz="Europe/Riga", status="up", grace=60.0)
    last = 1698539400.0  # 2023-10-29 00:30 UTC = 03:30 EEST, before the change
    check.last_ping = last
    deadline = model.going_down(check)
    assert deadline is not None
    assert deadline.at == 1698542100.0 + 60  # 01:15 UTC = 03:15 EET (the repeated hour)
