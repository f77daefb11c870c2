"""The management API's contract (PROTOCOL.md §4) against the real app over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest

from heartbeatd.core import rules
from heartbeatd.notify import iso
from heartbeatd.store import CheckDefinition
from heartbeatd.web.api.schema import unique_key
from tests.conftest import Daemon

RID = "6b1ac1b2-5d5c-4e0a-9a43-6a0e2c9d2f10"
MISSING = "00000000-0000-4000-8000-000000000000"
NOTIFIERS = """
[[notifier]]
name = "ops-mail"
type = "log"
default = true

[[notifier]]
name = "pager"
type = "log"
"""


class Api:
    """A daemon plus a read-write and a read-only key, and a JSON request helper."""

    def __init__(self, daemon: Daemon, rw: str, ro: str) -> None:
        self.daemon, self.rw, self.ro = daemon, rw, ro

    async def call(
        self, method: str, path: str, body: Any = None, key: str | None = "rw", **kw: Any
    ) -> tuple[int, Any]:
        headers = kw.pop("headers", {})
        if key is not None:
            headers["X-Api-Key"] = {"rw": self.rw, "ro": self.ro}.get(key, key)
        if body is not None:
            kw["data"] = body if isinstance(body, bytes | str) else json.dumps(body)
        url = path if path.startswith("/") else f"/api/v3/{path}"
        response = await self.daemon.client.request(method, url, headers=headers, **kw)
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text

    async def create(self, **fields: Any) -> dict[str, Any]:
        status, check = await self.call("POST", "checks/", {"timeout": 60, "grace": 10, **fields})
        assert status == 201, check
        return check

    async def ping(self, check: dict[str, Any], suffix: str = "", body: str = "") -> None:
        path = urlparse(check["ping_url"]).path + suffix
        response = await self.daemon.client.post(path, data=body)
        assert response.status == 200


@pytest.fixture
async def make_api(start_daemon: Callable[..., Any]) -> Callable[..., Any]:
    async def make(toml: str = NOTIFIERS) -> Api:
        daemon = await start_daemon(toml)
        now = daemon.clock.now()
        rw, _ = await daemon.store.create_api_key("writer", False, now, "cli")
        ro, _ = await daemon.store.create_api_key("reader", True, now, "cli")
        return Api(daemon, rw, ro)

    return make


@pytest.fixture
async def api(make_api: Callable[..., Any]) -> Api:
    return await make_api()


# -- creating, reading, updating, deleting --------------------------------------------------


async def test_it_creates_a_check_whose_ping_url_works(api: Api) -> None:
    check = await api.create(name="Backups", tags="prod www", desc="nightly")
    assert check["name"] == "Backups" and check["tags"] == "prod www" and check["desc"] == "nightly"
    assert (check["timeout"], check["grace"], check["status"], check["n_pings"]) == (
        60,
        10,
        "new",
        0,
    )
    assert check["ping_url"].endswith(f"/ping/{check['uuid']}")
    assert check["update_url"].endswith(f"/api/v3/checks/{check['uuid']}")
    assert check["pause_url"] == check["update_url"] + "/pause"
    assert check["resume_url"] == check["update_url"] + "/resume"
    assert check["slug"] == ""  # v3 never derives the slug from the name
    await api.ping(check)
    _, read = await api.call("GET", f"checks/{check['uuid']}")
    assert (read["status"], read["n_pings"]) == ("up", 1)
    assert read["last_ping"] == iso(api.daemon.clock.now())


async def test_v1_and_v2_derive_the_slug_from_the_name_and_v3_keeps_the_given_one(api: Api) -> None:
    for version in (1, 2):
        status, check = await api.call("POST", f"/api/v{version}/checks/", {"name": "Nightly DB"})
        assert status == 201
        assert check["slug"] == "nightly-db"
        assert f"/api/v{version}/checks/" in check["update_url"]
    _, check = await api.call("POST", "checks/", {"name": "Nightly DB", "slug": "db_1"})
    assert check["slug"] == "db_1"


async def test_unique_upserts_the_matching_check_with_200(api: Api) -> None:
    first = await api.create(name="Backups", unique=["name"])
    status, again = await api.call(
        "POST", "checks/", {"name": "Backups", "timeout": 300, "unique": ["name"]}
    )
    assert status == 200
    assert again["uuid"] == first["uuid"] and again["timeout"] == 300
    status, other = await api.call("POST", "checks/", {"name": "Other", "unique": ["name"]})
    assert status == 201 and other["uuid"] != first["uuid"]
    # a field named in `unique` but absent from the request: always a new check
    status, _ = await api.call("POST", "checks/", {"timeout": 300, "unique": ["name"]})
    assert status == 201
    _, listed = await api.call("GET", "checks/")
    assert len(listed["checks"]) == 3


@pytest.mark.parametrize("field", ["slug", "tags", "timeout", "grace"])
async def test_unique_matches_on_each_field(api: Api, field: str) -> None:
    values = {"slug": "db", "tags": "prod db", "timeout": 120, "grace": 30}
    first = await api.create(**{field: values[field]})
    status, again = await api.call(
        "POST", "checks/", {field: values[field], "desc": "changed", "unique": [field]}
    )
    assert status == 200 and again["uuid"] == first["uuid"] and again["desc"] == "changed"


async def test_update_changes_only_the_given_fields(api: Api) -> None:
    check = await api.create(name="Backups", tags="prod", desc="d")
    status, updated = await api.call(
        "POST", f"checks/{check['uuid']}", {"schedule": "0 3 * * *", "tz": "Europe/Riga"}
    )
    assert status == 200
    assert (updated["schedule"], updated["tz"]) == ("0 3 * * *", "Europe/Riga")
    assert "timeout" not in updated
    assert (updated["name"], updated["tags"], updated["desc"]) == ("Backups", "prod", "d")
    _, simple = await api.call("POST", f"checks/{check['uuid']}", {"timeout": 3600})
    assert simple["timeout"] == 3600 and "schedule" not in simple


async def test_heartbeatd_fields_are_added_and_settable(api: Api) -> None:
    check = await api.create(misses=3, max_runtime=120)
    assert (check["misses"], check["max_runtime"], check["managed"]) == (3, 120, False)
    _, cleared = await api.call("POST", f"checks/{check['uuid']}", {"max_runtime": None})
    assert cleared["max_runtime"] is None


async def test_body_keyword_filters_are_set_and_applied(api: Api) -> None:
    check = await api.create(filter_http_body=True, failure_kw="ERROR,FATAL")
    assert (check["filter_http_body"], check["failure_kw"], check["success_kw"]) == (
        True,
        "ERROR,FATAL",
        "",
    )
    await api.ping(check, body="backup done")  # matches no keyword: ignored
    await api.ping(check, body="FATAL: disk full")
    _, read = await api.call("GET", f"checks/{check['uuid']}")
    assert read["status"] == "down"
    _, off = await api.call("POST", f"checks/{check['uuid']}", {"filter_http_body": False})
    assert (off["filter_http_body"], off["failure_kw"]) == (False, "")


async def test_an_update_keeps_the_rules_the_api_does_not_show(api: Api) -> None:
    definition = CheckDefinition(
        name="db", period=60.0, grace=10.0, rules=rules.from_config({"assert": {"rows": ["> 0"]}})
    )
    added = await api.daemon.store.add_check(definition, api.daemon.clock.now())
    await api.call("POST", f"checks/{added.uuid}", {"name": "db2", "success_kw": "OK"})
    stored = await api.daemon.store.get_check(added.uuid)
    assert stored.name == "db2"
    assert stored.rules.as_config()["assert"] == {"rows": ["> 0"]}


async def test_delete_returns_the_check_and_its_ping_url_stops_working(api: Api) -> None:
    check = await api.create(name="gone")
    status, deleted = await api.call("DELETE", f"checks/{check['uuid']}")
    assert status == 200 and deleted["name"] == "gone"
    assert (await api.call("GET", f"checks/{check['uuid']}"))[0] == 404
    response = await api.daemon.client.get(urlparse(check["ping_url"]).path)
    assert response.status == 404


async def test_list_filters_by_every_tag_and_by_slug(api: Api) -> None:
    await api.create(name="a", slug="a", tags="prod db")
    await api.create(name="b", slug="b", tags="prod")
    await api.create(name="c", slug="c", tags="production")
    _, prod = await api.call("GET", "checks/?tag=prod")
    assert sorted(c["name"] for c in prod["checks"]) == ["a", "b"]
    _, both = await api.call("GET", "checks/?tag=prod&tag=db")
    assert [c["name"] for c in both["checks"]] == ["a"]
    _, by_slug = await api.call("GET", "checks/?slug=c")
    assert [c["name"] for c in by_slug["checks"]] == ["c"]


async def test_a_started_check_is_started_in_v1_and_flagged_in_v2(api: Api) -> None:
    check = await api.create()
    await api.ping(check)
    await api.ping(check, "/start")
    _, v1 = await api.call("GET", f"/api/v1/checks/{check['uuid']}")
    _, v2 = await api.call("GET", f"/api/v2/checks/{check['uuid']}")
    assert (v1["status"], v1["started"]) == ("started", True)
    assert (v2["status"], v2["started"]) == ("up", True)


async def test_an_api_created_check_goes_down_on_time(api: Api) -> None:
    check = await api.create(timeout=60, grace=10)
    await api.ping(check)
    await api.daemon.advance(65)
    assert (await api.call("GET", f"checks/{check['uuid']}"))[1]["status"] == "grace"
    await api.daemon.advance(10)
    assert (await api.call("GET", f"checks/{check['uuid']}"))[1]["status"] == "down"


# -- keys ------------------------------------------------------------------------------------


async def test_a_read_only_key_reads_without_secrets_and_by_unique_key(api: Api) -> None:
    check = await api.create(name="db")
    _, listed = await api.call("GET", "checks/", key="ro")
    (seen,) = listed["checks"]
    for secret in ("uuid", "ping_url", "update_url", "pause_url", "resume_url", "channels"):
        assert secret not in seen
    assert seen["unique_key"] == unique_key(check["uuid"])
    status, by_key = await api.call("GET", f"checks/{seen['unique_key']}", key="ro")
    assert status == 200 and by_key["name"] == "db"
    status, flips = await api.call("GET", f"checks/{seen['unique_key']}/flips/", key="ro")
    assert status == 200 and flips == {"flips": []}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "checks/", {"name": "x"}),
        ("POST", "checks/{uuid}", {"name": "x"}),
        ("DELETE", "checks/{uuid}", None),
        ("POST", "checks/{uuid}/pause", None),
        ("POST", "checks/{uuid}/resume", None),
        ("GET", "checks/{uuid}/pings/", None),
        ("GET", "channels/", None),
        ("GET", "/api/v3/audit/", None),
    ],
)
async def test_a_read_only_key_is_refused_where_healthchecks_refuses_it(
    api: Api, method: str, path: str, body: Any
) -> None:
    check = await api.create()
    status, error = await api.call(method, path.format(uuid=check["uuid"]), body, key="ro")
    assert (status, error) == (401, {"error": "wrong api key"})


@pytest.mark.parametrize(
    ("key", "error"),
    [(None, "missing api key"), ("short", "missing api key"), ("x" * 32, "wrong api key")],
)
async def test_a_missing_or_wrong_key_gets_401(api: Api, key: str | None, error: str) -> None:
    assert await api.call("GET", "checks/", key=key) == (401, {"error": error})


async def test_a_post_may_carry_its_key_in_the_body(api: Api) -> None:
    status, check = await api.call("POST", "checks/", {"api_key": api.rw, "name": "x"}, key=None)
    assert status == 201 and check["name"] == "x"


async def test_a_revoked_key_stops_working(api: Api) -> None:
    await api.daemon.store.revoke_api_key("writer", api.daemon.clock.now(), "cli")
    assert await api.call("GET", "checks/") == (401, {"error": "wrong api key"})


async def test_only_the_hash_of_a_key_is_stored(api: Api) -> None:
    rows = await api.daemon.query("SELECT hash FROM api_keys")
    assert len(rows) == 2
    assert all(api.rw not in row[0] and api.ro not in row[0] for row in rows)
    await api.call("GET", "checks/")
    (used,) = await api.daemon.query("SELECT last_used FROM api_keys WHERE name = 'writer'")
    assert used[0] == api.daemon.clock.now()


# -- bad input: 400 naming the field, never a 500 ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"timeout": "60"}, "json validation error: timeout is not a number"),
        ({"timeout": 60.5}, "json validation error: timeout is not a number"),
        ({"timeout": True}, "json validation error: timeout is not a number"),
        ({"timeout": 0}, "json validation error: timeout is too small"),
        ({"grace": 31536001}, "json validation error: grace is too large"),
        ({"name": None}, "json validation error: name is not a string"),
        ({"name": "x" * 101}, "json validation error: name is too long"),
        ({"slug": "Not OK"}, "json validation error: slug does not match pattern"),
        ({"tz": "Mars/Olympus_Mons"}, "json validation error: tz is not a valid timezone"),
        (
            {"schedule": "every day"},
            "json validation error: schedule is not a valid cron or OnCalendar expression",
        ),
        (
            {"schedule": "61 * * * *"},
            "json validation error: schedule is not a valid cron or OnCalendar expression",
        ),
        ({"manual_resume": "yes"}, "json validation error: manual_resume is not a boolean"),
        ({"methods": "GET"}, "json validation error: methods has unexpected value"),
        ({"unique": "name"}, "json validation error: unique is not an array"),
        ({"unique": ["desc"]}, "json validation error: an item in 'unique' has unexpected value"),
        ({"misses": 0}, "json validation error: misses must be from 1 to 100"),
        ({"channels": "nobody"}, "invalid channel identifier: nobody"),
        ({"channels": "pager,"}, "empty channel identifier"),
        ({"subject": "x" * 201}, "json validation error: subject is too long (201 characters"),
        ({"success_kw": 1}, "json validation error: success_kw is not a string"),
        ({"failure_re": "(", "filter_http_body": True}, "json validation error: failure_re: "),
        ({"filter_body": 1}, "json validation error: filter_body is not a boolean"),
        ([1, 2], "json validation error: value is not an object"),
        ('{"name": "\\ud800"}', "json validation error: name is not valid Unicode"),
        ('{"desc": "a\\udfffb"}', "json validation error: desc is not valid Unicode"),
        ('{"tags": "\\ud800"}', "json validation error: tags is not valid Unicode"),
        ("not json", "could not parse request body"),
        ("[" * 100_000, "could not parse request body"),
        (b"\xff\xfe", "could not parse request body"),
    ],
)
async def test_bad_input_gets_400_naming_the_problem(api: Api, body: Any, error: str) -> None:
    check = await api.create()
    for path in ("checks/", f"checks/{check['uuid']}"):
        status, answer = await api.call("POST", path, body)
        assert status == 400 and answer["error"].startswith(error)


async def test_a_body_over_1_mb_gets_413(api: Api) -> None:
    status, answer = await api.call("POST", "checks/", {"desc": "x" * 1_000_001})
    assert status == 413 and "larger than" in answer["error"]


@pytest.mark.parametrize("code", [MISSING, MISSING.upper(), "not-a-uuid", "a" * 40])
async def test_an_unknown_check_is_404(api: Api, code: str) -> None:
    for method, path in [("GET", "checks/{}"), ("POST", "checks/{}"), ("DELETE", "checks/{}"),
                         ("POST", "checks/{}/pause"), ("GET", "checks/{}/flips/"),
                         ("GET", "checks/{}/pings/")]:  # fmt: skip
        status, answer = await api.call(method, path.format(code))
        assert status == 404 and answer["error"] in ("not found", f"no check {code!r}")


@pytest.mark.parametrize("query", ["start=-1", "end=abc", "seconds=1e3", "start=99999999999999"])
async def test_bad_flip_filters_get_400(api: Api, query: str) -> None:
    check = await api.create()
    status, answer = await api.call("GET", f"checks/{check['uuid']}/flips/?{query}")
    assert status == 400 and query.split("=")[0] in answer["error"]


# -- config-file checks -----------------------------------------------------------------------


async def test_config_file_checks_are_read_only_through_the_api(make_api: Callable) -> None:
    api = await make_api(
        NOTIFIERS + '\n[[check]]\nname = "Nightly"\nslug = "nightly"\nperiod = "1d"\n'
    )
    _, listed = await api.call("GET", "checks/")
    (check,) = listed["checks"]
    assert check["managed"] is True
    code = check["uuid"]
    writes = [
        ("POST", f"checks/{code}", {"name": "x"}),
        ("DELETE", f"checks/{code}", None),
        ("POST", f"checks/{code}/pause", None),
        ("POST", "checks/", {"name": "Nightly", "unique": ["name"]}),
    ]
    for method, path, body in writes:
        status, answer = await api.call(method, path, body)
        assert status == 403
        assert "declared in the config file" in answer["error"]
    _, after = await api.call("GET", f"checks/{code}")
    assert after["name"] == "Nightly" and after["status"] == "new"


# -- pause, resume, pings, flips -------------------------------------------------------------


async def test_pause_and_resume(api: Api) -> None:
    check = await api.create()
    await api.ping(check)
    status, paused = await api.call("POST", f"checks/{check['uuid']}/pause", "")
    assert (status, paused["status"]) == (200, "paused")
    assert (await api.call("POST", f"checks/{check['uuid']}/pause"))[1]["status"] == "paused"
    status, resumed = await api.call("POST", f"checks/{check['uuid']}/resume")
    assert (status, resumed["status"], resumed["last_ping"]) == (200, "new", None)
    status, answer = await api.call("POST", f"checks/{check['uuid']}/resume")
    assert (status, answer) == (409, {"error": "check is not paused"})


async def test_pings_are_listed_newest_first_with_durations_by_rid(api: Api) -> None:
    check = await api.create()
    await api.ping(check, f"/start?rid={RID}")
    await api.daemon.advance(2.5)
    await api.ping(check, f"?rid={RID}", body="all done")
    await api.ping(check, "/log")
    status, answer = await api.call("GET", f"checks/{check['uuid']}/pings/")
    assert status == 200
    kinds = [(p["n"], p["type"]) for p in answer["pings"]]
    assert kinds == [(3, "log"), (2, "success"), (1, "start")]
    success = answer["pings"][1]
    assert success["duration"] == 2.5 and success["rid"] == RID
    assert success["method"] == "POST" and success["scheme"] == "http"
    assert "duration" not in answer["pings"][2]
    assert answer["pings"][2]["body_url"] is None
    body_path = urlparse(success["body_url"]).path
    response = await api.daemon.client.get(body_path, headers={"X-Api-Key": api.rw})
    assert response.status == 200 and await response.text() == "all done"
    assert response.content_type == "text/plain"
    assert (await api.call("GET", f"checks/{check['uuid']}/pings/9/body"))[0] == 404
    assert (await api.call("GET", f"checks/{check['uuid']}/pings/1/body"))[0] == 404


async def test_overlapping_runs_each_get_their_duration_as_healthchecks_gives_them(
    api: Api,
) -> None:
    """start a, start b, success b, fail a: both finishes carry their own run's duration (the
    check only remembers the last start). A finish without rid pairs with the start without
    one, past runs with rids between; a second finish of a run gets none; a start older than
    Healthchecks' 72 h lookback closes no run."""
    check = await api.create(timeout=86400, grace=3600)
    run_a, run_b = RID, "0f0e0d0c-0b0a-4909-8807-060504030201"
    await api.ping(check, f"/start?rid={run_a}")
    await api.daemon.advance(10)
    await api.ping(check, f"/start?rid={run_b}")
    await api.ping(check, "/start")
    await api.daemon.advance(5)
    await api.ping(check, f"?rid={run_b}")
    await api.daemon.advance(20)
    await api.ping(check, f"/fail?rid={run_a}")
    await api.ping(check, f"/log?rid={run_a}")
    await api.ping(check)
    await api.ping(check, f"?rid={run_a}")
    await api.ping(check, f"/start?rid={run_b}")
    await api.daemon.advance(72 * 3600)
    await api.ping(check, f"?rid={run_b}")
    _, answer = await api.call("GET", f"checks/{check['uuid']}/pings")
    finishes = [(p["type"], p["rid"], p.get("duration")) for p in reversed(answer["pings"])
                if p["type"] in ("success", "fail")]  # fmt: skip
    assert finishes == [
        ("success", run_b, 5.0),
        ("fail", run_a, 35.0),
        ("success", None, 25.0),
        ("success", run_a, None),
        ("success", run_b, None),
    ]
    _, read = await api.call("GET", f"checks/{check['uuid']}")
    assert "last_duration" not in read


async def test_flips_are_listed_and_filtered(api: Api) -> None:
    check = await api.create()
    start = int(api.daemon.clock.now())
    await api.ping(check)
    await api.daemon.advance(100)
    await api.ping(check, "/fail")
    await api.daemon.advance(100)
    await api.ping(check)
    path = f"checks/{check['uuid']}/flips/"
    _, answer = await api.call("GET", path)
    assert [f["up"] for f in answer["flips"]] == [1, 0, 1]
    assert answer["flips"][1]["timestamp"].endswith("+00:00")
    assert len((await api.call("GET", f"{path}?seconds=150"))[1]["flips"]) == 2
    assert len((await api.call("GET", f"{path}?start={start + 50}"))[1]["flips"]) == 2
    assert len((await api.call("GET", f"{path}?end={start + 50}"))[1]["flips"]) == 1


# -- channels, badges, status, CORS, audit ----------------------------------------------------


async def test_channels_are_the_notifiers_and_checks_can_pick_them(api: Api) -> None:
    _, answer = await api.call("GET", "channels/")
    by_name = {c["name"]: c for c in answer["channels"]}
    assert set(by_name) == {"ops-mail", "pager"}
    assert by_name["pager"]["kind"] == "log" and len(by_name["pager"]["id"]) == 36
    default = await api.create()
    assert default["channels"] == by_name["ops-mail"]["id"]
    picked = await api.create(channels=f"pager,{by_name['ops-mail']['id']}")
    assert picked["channels"] == ",".join(sorted(c["id"] for c in by_name.values()))
    none = await api.create(channels="")
    assert none["channels"] == ""


async def test_badges_are_listed_per_tag_and_served(api: Api) -> None:
    await api.create(tags="prod db a/b?")
    status, answer = await api.call("GET", "badges/", key="ro")
    assert status == 200
    assert set(answer["badges"]) == {"*", "prod", "db", "a/b?"}
    odd = await api.daemon.client.get(urlparse(answer["badges"]["a/b?"]["json"]).path)
    assert odd.status == 200 and (await odd.json())["total"] == 1
    urls = answer["badges"]["prod"]
    assert set(urls) == {"svg", "svg3", "json", "json3", "shields", "shields3"}
    response = await api.daemon.client.get(urlparse(urls["json3"]).path)
    assert response.status == 200
    assert (await response.json())["total"] == 1


async def test_status_answers_ok_without_a_key(api: Api) -> None:
    for version in (1, 2, 3):
        assert await api.call("GET", f"/api/v{version}/status/", key=None) == (200, "OK")


async def test_cors_preflight_and_method_not_allowed(api: Api) -> None:
    check = await api.create()
    response = await api.daemon.client.options(f"/api/v1/checks/{check['uuid']}/pause")
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Headers"] == "X-Api-Key"
    assert response.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert (await api.call("GET", f"checks/{check['uuid']}/pause"))[0] == 405
    response = await api.daemon.client.get("/api/v3/checks/", headers={"X-Api-Key": api.ro})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    response = await api.daemon.client.get("/api/v3/checks/")
    assert response.status == 401 and response.headers["Access-Control-Allow-Origin"] == "*"


async def test_every_api_write_is_in_the_audit_log(api: Api) -> None:
    check = await api.create(name="a")
    await api.call("POST", f"checks/{check['uuid']}", {"name": "b"})
    await api.call("POST", f"checks/{check['uuid']}", {"name": "b"})  # no change: no row
    await api.call("POST", f"checks/{check['uuid']}/pause")
    await api.call("POST", f"checks/{check['uuid']}/resume")
    await api.call("DELETE", f"checks/{check['uuid']}")
    status, answer = await api.call("GET", "/api/v3/audit/?limit=5")
    assert status == 200
    rows = answer["audit"]
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("api:writer", "check.delete"),
        ("api:writer", "check.resume"),
        ("api:writer", "check.pause"),
        ("api:writer", "check.update"),
        ("api:writer", "check.create"),
    ]
    update = rows[3]
    assert (update["before"]["name"], update["after"]["name"]) == ("a", "b")
    assert update["target"] == check["uuid"] and rows[0]["after"] is None
