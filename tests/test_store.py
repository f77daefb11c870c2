"""The Store's public methods on a real SQLite file (heartbeatd/store/), without the app.

Other modules test the store through HTTP and the CLI; these pin what each method promises
to its callers, so a change that keeps the pages working but breaks a promise shows up here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from heartbeatd.core.errors import Conflict, NotFound
from heartbeatd.core.model import Check, CheckDefinition, Status, pause
from heartbeatd.store import BySlug, ByUuid, PingIn, Store

T0 = 1_800_000_000.0
HOUR = 3600.0


def ping(action: str = "success", body: bytes = b"", rid: str | None = None) -> PingIn:
    return PingIn(
        action=action, exit_status=1 if action == "fail" else None, rid=rid, method="POST",
        scheme="http", remote_addr="127.0.0.1", ua="curl/8", body=body, body_size=len(body),
    )  # fmt: skip


def hourly(slug: str = "backup", **fields: object) -> CheckDefinition:
    defaults: dict[str, object] = {"name": slug.title(), "slug": slug, "period": HOUR}
    return CheckDefinition(**{"grace": 600.0, **defaults, **fields})  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """An opened store whose every check's alerts go to one notifier, `hook`."""
    async with Store(tmp_path / "heartbeatd.db") as opened:
        opened.router = lambda check, event: ("hook",)
        yield opened


async def pinged(store: Store, check: Check, *actions: str, at: float = T0) -> None:
    for i, action in enumerate(actions):
        await store.record_ping(ByUuid(check.uuid), ping(action), at + i)


# -- pings ---------------------------------------------------------------------------------


async def test_a_first_ping_brings_a_check_up_quietly_and_arms_it(store: Store) -> None:
    check = await store.add_check(hourly(), T0 - 10)
    result = await store.record_ping(ByUuid(check.uuid), ping(body=b"ok"), T0)
    assert result.check_id == check.id and not result.created
    assert not result.notify  # new -> up tells no one
    assert result.late_at == T0 + HOUR
    assert result.alert_after == T0 + HOUR + 600
    stored = await store.get_check(check.uuid)
    assert (stored.status, stored.last_ping, stored.n_pings) == (Status.UP, T0, 1)
    assert await store.outbox() == []


async def test_a_failure_and_the_recovery_each_queue_one_alert(store: Store) -> None:
    check = await store.add_check(hourly(), T0 - 10)
    await pinged(store, check, "success")
    down = await store.record_ping(ByUuid(check.uuid), ping("fail"), T0 + 60)
    assert down.notify and down.alert_after is None  # a down check cannot go down again
    up = await store.record_ping(ByUuid(check.uuid), ping(), T0 + 120)
    assert up.notify
    rows = await store.outbox()
    assert [(r["event"], r["notifier"], r["state"]) for r in rows] == [
        ("up", "hook", "pending"),
        ("down", "hook", "pending"),
    ]
    flips = await store.flips(check.id)
    assert [(f["old_status"], f["new_status"], f["reason"]) for f in flips] == [
        ("down", "up", "ping"),
        ("up", "down", "fail"),
        ("new", "up", "ping"),
    ]
    assert flips[1]["detail"] == "exit status 1"


async def test_a_start_and_its_success_record_the_runs_duration(store: Store) -> None:
    check = await store.add_check(hourly(), T0 - 10)
    await store.record_ping(ByUuid(check.uuid), ping("start", rid="r1"), T0)
    await store.record_ping(ByUuid(check.uuid), ping("success", rid="r1"), T0 + 42)
    newest, start = await store.pings(check.id)
    assert (newest["kind"], newest["duration"]) == ("success", 42)
    assert (start["kind"], start["duration"]) == ("start", None)
    assert await store.recent_runs() == {check.id: "0"}


async def test_pings_are_listed_newest_first_and_only_the_retained_ones(tmp_path: Path) -> None:
    async with Store(tmp_path / "heartbeatd.db", retention=3) as store:
        check = await store.add_check(hourly(), T0 - 10)
        for i in range(5):
            await store.record_ping(ByUuid(check.uuid), ping(body=b"run %d" % i), T0 + i)
        listed = await store.pings(check.id)
        assert [p["n"] for p in listed] == [5, 4, 3]
        assert await store.ping_body(check.id, 5) == b"run 4"
        assert await store.ping_body(check.id, 1) is None  # pruned


async def test_a_ping_to_an_unknown_uuid_is_not_found_and_writes_nothing(store: Store) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert not await store.knows(ByUuid(unknown))
    with pytest.raises(NotFound):
        await store.record_ping(ByUuid(unknown), ping(), T0)
    assert await store.list_checks() == []


async def test_a_slug_ping_needs_the_ping_key_and_may_create_the_check(store: Store) -> None:
    key = await store.ping_key()
    assert not await store.knows(BySlug("wrong-key", "nightly", create=True))
    with pytest.raises(NotFound):
        await store.record_ping(BySlug("wrong-key", "nightly", create=True), ping(), T0)
    with pytest.raises(NotFound):
        await store.record_ping(BySlug(key, "nightly"), ping(), T0)  # not asked to create
    first = await store.record_ping(BySlug(key, "nightly", create=True), ping(), T0)
    again = await store.record_ping(BySlug(key, "nightly", create=True), ping(), T0 + 1)
    assert first.created and not again.created and first.check_id == again.check_id
    (check,) = await store.list_checks()
    assert (check.slug, check.period, check.managed) == ("nightly", 86400.0, False)


async def test_a_rotated_ping_key_refuses_the_old_one(store: Store) -> None:
    old = await store.ping_key()
    await store.add_check(hourly(), T0)
    new = await store.rotate_ping_key()
    assert new != old and await store.ping_key() == new
    with pytest.raises(NotFound):
        await store.record_ping(BySlug(old, "backup"), ping(), T0)
    assert (await store.record_ping(BySlug(new, "backup"), ping(), T0)).check_id


async def test_what_is_written_is_there_after_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "heartbeatd.db"
    async with Store(path) as store:
        check = await store.add_check(hourly(), T0)
        await store.record_ping(ByUuid(check.uuid), ping(body=b"done"), T0)
        key = await store.ping_key()
    async with Store(path) as reopened:
        again = await reopened.get_check("backup")
        assert (again.uuid, again.status, again.n_pings) == (check.uuid, Status.UP, 1)
        assert await reopened.ping_key() == key  # made once, not at every start
        assert await reopened.ping_body(check.id, 1) == b"done"


# -- the timer's side ----------------------------------------------------------------------


async def test_expire_takes_down_only_a_check_whose_moment_is_still_its_own(store: Store) -> None:
    check = await store.add_check(hourly(), T0 - 10)
    await pinged(store, check, "success")
    armed = T0 + HOUR + 600
    assert await store.armed() == [(check.id, armed, 600.0)]
    # a ping moved the moment on after the wheel was armed: nothing goes down
    await store.record_ping(ByUuid(check.uuid), ping(), T0 + 100)
    rearm, notify = await store.expire([(check.id, armed)], armed)
    assert rearm == [(check.id, armed + 100)] and not notify
    rearm, notify = await store.expire([(check.id, armed + 100)], armed + 101)
    assert rearm == [(check.id, None)] and notify
    down = await store.get_check(check.uuid)
    assert down.status == Status.DOWN
    (flip, *_) = await store.flips(check.id)
    assert (flip["at"], flip["noticed"], flip["reason"]) == (armed + 100, armed + 101, "timeout")


async def test_a_pause_is_recorded_and_audited_but_alerts_no_one(store: Store) -> None:
    check = await store.add_check(hourly(), T0 - 10)
    await pinged(store, check, "success")
    paused, flip = await store.change_state("backup", pause, T0 + 5, actor="cli")
    assert flip is not None and paused.status == Status.PAUSED and paused.alert_after is None
    assert await store.outbox() == []
    (entry,) = await store.audit_log()
    assert (entry["actor"], entry["action"], entry["target"]) == ("cli", "check.pause", check.uuid)


# -- definitions ---------------------------------------------------------------------------


async def test_reconcile_adds_updates_and_removes_managed_checks_keeping_uuids(
    store: Store,
) -> None:
    changes = await store.reconcile([hourly("db"), hourly("web")], T0)
    assert changes == [
        "added check db from the config file",
        "added check web from the config file",
    ]
    before = {c.slug: c for c in await store.list_checks()}
    assert all(c.managed for c in before.values())
    await pinged(store, before["db"], "success")
    # the file changes db's period and drops web
    changes = await store.reconcile([hourly("db", period=2 * HOUR)], T0 + 10)
    assert changes == ["removed check web (no longer in the config file)"]
    (db,) = await store.list_checks()
    assert db.uuid == before["db"].uuid and db.period == 2 * HOUR
    assert db.alert_after == T0 + 2 * HOUR + 600  # re-armed from its last ping by the new period
    assert await store.reconcile([hourly("db", period=2 * HOUR)], T0 + 20) == []


async def test_reconcile_adopts_a_check_made_by_hand_and_leaves_others_alone(
    store: Store,
) -> None:
    by_hand = await store.add_check(hourly("db"), T0)
    other = await store.add_check(hourly("adhoc"), T0)
    assert await store.reconcile([hourly("db")], T0 + 1) == []
    adopted = await store.get_check("db")
    assert adopted.uuid == by_hand.uuid and adopted.managed  # its ping URL keeps working
    assert await store.reconcile([], T0 + 2) == ["removed check db (no longer in the config file)"]
    assert [c.uuid for c in await store.list_checks()] == [other.uuid]


async def test_rotate_gives_a_new_ping_url_and_the_old_one_stops(store: Store) -> None:
    check = await store.add_check(hourly(), T0)
    await pinged(store, check, "success")
    rotated = await store.rotate("backup", actor="api:ops", now=T0 + 1)
    assert rotated.id == check.id and rotated.uuid != check.uuid
    with pytest.raises(NotFound):
        await store.record_ping(ByUuid(check.uuid), ping(), T0 + 2)
    await store.record_ping(ByUuid(rotated.uuid), ping(), T0 + 2)
    assert [p["n"] for p in await store.pings(check.id)] == [2, 1]  # history kept
    (entry,) = await store.audit_log()
    assert (entry["action"], entry["target"]) == ("check.rotate", check.uuid)


async def test_remove_deletes_a_check_with_its_history(store: Store) -> None:
    check = await store.add_check(hourly(), T0)
    await pinged(store, check, "success", "fail")
    assert await store.outbox_depth() == 1
    removed = await store.remove(check.uuid.upper(), actor="cli", now=T0 + 5)  # as typed
    assert removed.id == check.id
    assert await store.pings(check.id) == [] and await store.flips(check.id) == []
    assert await store.outbox() == [] and await store.outbox_depth() == 0
    with pytest.raises(NotFound, match="no check 'backup'"):
        await store.remove("backup")


async def test_a_slug_two_checks_share_is_refused_in_favour_of_the_uuid(store: Store) -> None:
    first = await store.add_check(hourly("twin"), T0)
    await store.add_check(hourly("twin"), T0)
    with pytest.raises(Conflict, match="use its UUID"):
        await store.get_check("twin")
    assert (await store.get_check(first.uuid)).id == first.id


async def test_update_check_changes_the_definition_and_re_arms(store: Store) -> None:
    check = await store.add_check(hourly(), T0)
    await pinged(store, check, "success")
    seen: list[Check | None] = []

    def shorter_grace(current: Check | None) -> CheckDefinition:
        seen.append(current)
        return hourly(grace=60.0, tags=("db",))

    updated = await store.update_check("backup", shorter_grace, T0 + 1, actor="api:ops")
    assert seen[0] is not None and seen[0].grace == 600.0  # built from the stored check
    assert (updated.uuid, updated.grace, updated.tags) == (check.uuid, 60.0, "db")
    assert updated.alert_after == T0 + HOUR + 60
    (entry,) = await store.audit_log()
    assert entry["action"] == "check.update" and entry["actor"] == "api:ops"
    await store.update_check("backup", shorter_grace, T0 + 2, actor="api:ops")
    assert len(await store.audit_log()) == 1  # no change, no audit row


# -- outbox --------------------------------------------------------------------------------


async def queued_down(store: Store) -> int:
    """A check that just failed, its one `hook` alert pending; returns the row's id."""
    check = await store.add_check(hourly(), T0 - 10)
    await pinged(store, check, "success", "fail")
    (row,) = await store.outbox()
    return int(row["id"])


async def test_a_due_notification_carries_what_its_message_needs(store: Store) -> None:
    await queued_down(store)
    due, next_at, newest = await store.due_notifications(T0 + 5, {"hook": (4, ())})
    (item,) = due
    assert (item.notifier, item.event, item.attempts) == ("hook", "down", 0)
    assert (item.flip.old, item.flip.new, item.flip.reason) == ("up", "down", "fail")
    assert item.check.slug == "backup" and item.exit_status == 1
    assert item.flip_is_latest and next_at == T0 + 1 and newest == item.id


async def test_a_notifier_with_no_room_or_its_row_in_flight_gets_nothing(store: Store) -> None:
    row_id = await queued_down(store)
    assert (await store.due_notifications(T0 + 5, {"hook": (0, ())}))[0] == []
    assert (await store.due_notifications(T0 + 5, {"hook": (4, (row_id,))}))[0] == []
    assert await store.outbox_depth() == 1


async def test_a_failed_attempt_is_retried_at_its_time_and_then_sent(store: Store) -> None:
    row_id = await queued_down(store)
    await store.notification_failed(row_id, "HTTP 502 from hooks.test", retry_at=T0 + 100)
    due, next_at, _ = await store.due_notifications(T0 + 99, {"hook": (4, ())})
    assert due == [] and next_at == T0 + 100
    (item,), _, _ = await store.due_notifications(T0 + 100, {"hook": (4, ())})
    assert item.attempts == 1
    await store.notification_sent(row_id, T0 + 101)
    (row,) = await store.outbox()
    assert (row["state"], row["attempts"], row["sent_at"], row["last_error"]) == (
        "sent", 2, T0 + 101, "",
    )  # fmt: skip
    assert (await store.due_notifications(T0 + 999, {"hook": (4, ())}))[:2] == ([], None)


async def test_a_failure_with_no_retry_gives_up_and_keeps_the_error(store: Store) -> None:
    row_id = await queued_down(store)
    await store.notification_failed(row_id, "x" * 5000, retry_at=None)
    (row,) = await store.outbox()
    assert row["state"] == "failed" and len(row["last_error"]) == 1000
    assert await store.outbox_depth() == 0


async def test_a_row_for_a_notifier_gone_from_the_config_fails_naming_it(store: Store) -> None:
    await queued_down(store)
    due, next_at, _ = await store.due_notifications(T0 + 5, {"other": (4, ())})
    assert due == [] and next_at is None
    (row,) = await store.outbox()
    assert (
        row["state"] == "failed" and row["last_error"] == "no notifier named 'hook' in the config"
    )


async def test_a_reminder_is_a_new_row_and_a_cancelled_one_is_never_due(store: Store) -> None:
    row_id = await queued_down(store)
    await store.notification_sent(row_id, T0 + 6, remind_at=T0 + 7200)
    reminder, original = await store.outbox()
    assert (reminder["event"], reminder["next_attempt"]) == ("repeat", T0 + 7200)
    assert (original["id"], original["state"]) == (row_id, "sent")
    (item,), _, _ = await store.due_notifications(T0 + 7200, {"hook": (4, ())})
    assert (item.id, item.flip.new) == (reminder["id"], "down")  # the same outage
    await store.notification_cancelled(reminder["id"], "the check is up again")
    assert (await store.due_notifications(T0 + 9999, {"hook": (4, ())}))[0] == []
    assert (await store.outbox())[0]["state"] == "cancelled"


async def test_a_send_for_a_row_deleted_meanwhile_leaves_no_reminder(store: Store) -> None:
    row_id = await queued_down(store)
    await store.remove("backup")
    await store.notification_sent(row_id, T0 + 6, remind_at=T0 + 7200)
    assert await store.outbox() == [] and await store.outbox_depth() == 0


async def test_a_clock_step_moves_only_pending_rows_up_to_the_bound(store: Store) -> None:
    row_id = await queued_down(store)
    assert await store.shift_pending(-HOUR, up_to_id=row_id - 1) == 0
    assert await store.shift_pending(-HOUR, up_to_id=row_id) == 1
    (row,) = await store.outbox()
    assert row["next_attempt"] == T0 + 1 - HOUR


async def test_the_outbox_lists_one_checks_rows_when_asked(store: Store) -> None:
    await queued_down(store)
    other = await store.add_check(hourly("other"), T0)
    assert await store.outbox(check_id=other.id) == []
    assert len(await store.outbox(check_id=(await store.get_check("backup")).id)) == 1


# -- users and sessions --------------------------------------------------------------------


async def test_users_are_added_listed_and_removed_with_their_sessions(store: Store) -> None:
    await store.set_password("alice", "scrypt$1$8$1$salt$hash", T0)
    await store.add_user("bob", "!", "viewer", T0)
    with pytest.raises(Conflict, match="there is a user 'bob' already"):
        await store.add_user("bob", "scrypt$x", "admin", T0)
    assert await store.users() == [
        {"name": "alice", "role": "admin", "created": T0, "password": True},
        {"name": "bob", "role": "viewer", "created": T0, "password": False},
    ]
    assert await store.role_of("bob") == "viewer" and await store.role_of("carol") is None
    assert await store.user_count() == 2
    found = await store.password_of("bob")
    assert found is not None
    await store.add_session("tok", found[0], "csrf", T0, T0 + HOUR)
    assert await store.session("tok", T0 + 1) == ("bob", "csrf", "viewer")
    await store.remove_user("bob")
    assert await store.session("tok", T0 + 1) is None
    with pytest.raises(NotFound, match="no user 'bob'"):
        await store.remove_user("bob")


async def test_a_new_password_ends_the_users_sessions_and_keeps_the_role(store: Store) -> None:
    await store.add_user("bob", "scrypt$old", "viewer", T0)
    found = await store.password_of("bob")
    assert found is not None
    await store.add_session("tok", found[0], "csrf", T0, T0 + HOUR)
    await store.set_password("bob", "scrypt$new", T0 + 1)
    assert await store.session("tok", T0 + 2) is None
    assert await store.password_of("bob") == (found[0], "scrypt$new")
    assert await store.role_of("bob") == "viewer"


async def test_a_session_ends_at_its_expiry_and_at_logout(store: Store) -> None:
    await store.set_password("alice", "scrypt$h", T0)
    found = await store.password_of("alice")
    assert found is not None
    await store.add_session("a", found[0], "c1", T0, T0 + 10)
    await store.add_session("b", found[0], "c2", T0, T0 + HOUR)
    assert await store.session("a", T0 + 10) is None  # expired at its moment
    assert await store.session("b", T0 + 10) == ("alice", "c2", "admin")
    await store.end_session("b")
    assert await store.session("b", T0 + 11) is None


async def test_a_password_upgrade_loses_to_a_change_made_meanwhile(store: Store) -> None:
    await store.set_password("alice", "scrypt$cheap", T0)
    found = await store.password_of("alice")
    assert found is not None
    await store.set_password("alice", "scrypt$changed", T0 + 1)
    await store.upgrade_password(found[0], "scrypt$cheap", "scrypt$costly")
    assert await store.password_of("alice") == (found[0], "scrypt$changed")
    await store.upgrade_password(found[0], "scrypt$changed", "scrypt$costly")
    assert await store.password_of("alice") == (found[0], "scrypt$costly")


async def test_an_instance_secret_is_made_once_and_replaces_the_old_one(store: Store) -> None:
    old = await store.instance_secret("old_secret")
    assert len(old) >= 40 and await store.instance_secret("old_secret") == old
    new = await store.instance_secret("new_secret", replaces="old_secret")
    assert await store.instance_secret("new_secret", replaces="old_secret") == new != old
    assert await store.instance_secret("old_secret") != old  # deleted: a fresh one is made
