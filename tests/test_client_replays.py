"""The exact requests real management-API clients send, replayed against a running heartbeatd.

Each request below is what the client's own source builds (method, path, headers, body), named
by file and line at the commit read:

- Ansible's community.healthchecksio @38c4e80 (`plugins/module_utils/healthchecksio.py`): every
  path without a trailing slash but one, every request with a body (a GET's is `null`), and a
  urllib-made `Content-Type: application/x-www-form-urlencoded`. Healthchecks redirects the
  slash-less paths; these tests prove heartbeatd answers them as it answers the slashed ones.
- Terraform's provider kristofferahl/terraform-provider-healthchecksio @b8e535d
  (`healthchecksio/resource_check.go`) through its client kristofferahl/go-healthchecksio
  @37a9dc9 (`client.go`, `healtcheck.go`): slashed paths, a JSON body of the set fields.

Both create, read, update and delete a cron check and list the channels; each step must get the
status code the client takes for success, or the module or the plan fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.conftest import Daemon

NOTIFIERS = """
[[notifier]]
name = "ops"
type = "log"
default = true
"""
ANSIBLE_UA = "ansible-httpget"  # ansible.module_utils.urls: the default http_agent
GO_UA = "Go-http-client/1.1"


class Replay:
    """A daemon with a read-write key, sending requests exactly as given."""

    def __init__(self, daemon: Daemon, key: str) -> None:
        self.daemon, self.key = daemon, key
        self.log: list[tuple[str, str, int]] = []

    async def send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, Any]:
        response = await self.daemon.client.request(
            method, path, data=body, headers=headers, allow_redirects=False
        )
        text = await response.text()
        self.log.append((method, path, response.status))
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def replayer(start_daemon: Callable[..., Any]) -> Replay:
    daemon = await start_daemon(NOTIFIERS)
    key, _ = await daemon.store.create_api_key("ops", False, daemon.clock.now(), "cli")
    return Replay(daemon, key)


# -- Ansible: community.healthchecksio ------------------------------------------------------

ANSIBLE_BASE = "/api/v1"  # management_api_base_url's default is https://healthchecks.io/api/v1


async def ansible(replay: Replay, method: str, path: str, data: Any = None) -> tuple[int, Any]:
    """HealthchecksioHelper.send (module_utils/healthchecksio.py:72-89): `base/path`, the body
    `module.jsonify(data)` (so a GET carries `null`; only DELETE drops it), X-Api-Key only,
    and urllib's form Content-Type on any request with a body."""
    body = json.dumps(data)
    payload = None if method == "DELETE" and body == "null" else body.encode()
    headers = {"X-Api-Key": replay.key, "User-Agent": ANSIBLE_UA}
    if payload is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return await replay.send(method, f"{ANSIBLE_BASE}/{path.lstrip('/')}", payload, headers)


def ansible_checks_params(replay: Replay, **given: Any) -> dict[str, Any]:
    """What Checks.create posts (module_utils/healthchecksio.py:415-431): every module param
    (plugins/modules/checks.py:200-218, defaults included) but `state` and `uuid`, with
    `timeout` dropped for a cron check and tags joined by spaces."""
    params: dict[str, Any] = {
        "management_api_token": replay.key,
        "management_api_base_url": f"http://heartbeatd{ANSIBLE_BASE}",
        "ping_api_base_url": "https://hc-ping.com",
        "ping_api_token": None,
        "name": "",
        "tags": [],
        "desc": "",
        "timeout": None,
        "grace": 3600,
        "schedule": None,
        "tz": None,
        "manual_resume": False,
        "methods": "",
        "channels": "",
        "unique": [],
        "slug": "",
        **given,
    }
    if params["schedule"] and params["tz"]:
        del params["timeout"]
    params["tags"] = " ".join(params["tags"])
    return params


def ansible_uuid(check: dict[str, Any]) -> str:
    """Checks.get_uuid (module_utils/healthchecksio.py:341-350): the ping URL's last part."""
    return str(check.get("ping_url", "")).split("/")[-1]


async def ansible_checks_present(replay: Replay, **given: Any) -> tuple[int, dict[str, Any]]:
    """`community.healthchecksio.checks: state=present`, the requests in their order."""
    status, _ = await ansible(replay, "GET", "checks")  # :55, helper init: 401 fails the task
    assert status == 200
    params = ansible_checks_params(replay, **given)
    status, listing = await ansible(replay, "GET", "checks")  # :357, _find_existing_check
    assert status == 200
    if params["channels"] == "*":
        status, _ = await ansible(replay, "GET", "channels")  # :376
        assert status == 200
    # :486-496 would stop here, without a POST, if a check matched every param; in these
    # replays none does (a new check, or a new schedule)
    assert all(c["schedule"] != params["schedule"] for c in listing["checks"])
    return await ansible(replay, "POST", "checks/", params)  # :413, :498; 200 or 201


async def test_ansible_creates_reads_updates_and_deletes_a_cron_check(
    start_daemon: Callable[..., Any],
) -> None:
    replay = await replayer(start_daemon)
    # create (module_utils/healthchecksio.py:517: 201 is "New check <uuid> created")
    status, created = await ansible_checks_present(
        replay, name="nightly-backup", schedule="0 3 * * *", tz="UTC", unique=["name"]
    )
    assert status == 201, created
    uuid = ansible_uuid(created)
    assert (created["schedule"], created["tz"], created["grace"]) == ("0 3 * * *", "UTC", 3600)

    # read: checks_info with uuid (:279-297): GET checks/<uuid>, after the helper's GET checks
    assert (await ansible(replay, "GET", "checks"))[0] == 200
    status, read = await ansible(replay, "GET", f"checks/{uuid}")
    assert status == 200 and read["name"] == "nightly-backup"

    # update: the same task with a new schedule upserts by `unique` (:502: 200 is "updated")
    status, updated = await ansible_checks_present(
        replay, name="nightly-backup", schedule="30 4 * * *", tz="UTC", unique=["name"]
    )
    assert status == 200, updated
    assert ansible_uuid(updated) == uuid and updated["schedule"] == "30 4 * * *"

    # pings and flips info (:317, :258) and badges info (:207)
    for path in (f"checks/{uuid}/pings", f"checks/{uuid}/flips", "badges"):
        assert (await ansible(replay, "GET", "checks"))[0] == 200
        status, answer = await ansible(replay, "GET", path)
        assert status == 200, (path, answer)
    assert "pings" in (await ansible(replay, "GET", f"checks/{uuid}/pings"))[1]

    # channels info (:234), and a check that takes all of them: channels="*" (:374-378)
    assert (await ansible(replay, "GET", "checks"))[0] == 200
    status, channels = await ansible(replay, "GET", "channels")
    assert status == 200 and [c["name"] for c in channels["channels"]] == ["ops"]
    status, with_all = await ansible_checks_present(
        replay, name="hourly-sync", schedule="0 * * * *", tz="UTC", channels="*"
    )
    assert status == 201 and with_all["channels"] == channels["channels"][0]["id"]

    # delete (:539-556): 200 is "successfully deleted"; then the check is gone
    assert (await ansible(replay, "GET", "checks"))[0] == 200
    status, _ = await ansible(replay, "DELETE", f"checks/{uuid}")
    assert status == 200
    assert (await ansible(replay, "GET", f"checks/{uuid}"))[0] == 404
    assert [entry for entry in replay.log[:-1] if entry[2] >= 300] == []


async def test_ansible_slashless_paths_answer_as_the_slashed_ones_in_every_version(
    start_daemon: Callable[..., Any],
) -> None:
    """Every list path, v1 to v3, with and without the slash: the same answer, no redirect,
    and a POST to `checks` keeps its body (a redirect would have dropped it)."""
    replay = await replayer(start_daemon)
    headers = {"X-Api-Key": replay.key}
    body = json.dumps({"name": "db", "schedule": "0 3 * * *", "tz": "UTC"}).encode()
    status, created = await replay.send("POST", "/api/v3/checks", body, headers)
    assert status == 201 and created["schedule"] == "0 3 * * *"
    uuid = ansible_uuid(created)
    for version in (1, 2, 3):
        for path in (
            "checks",
            "channels",
            "badges",
            f"checks/{uuid}/pings",
            f"checks/{uuid}/flips",
        ):
            bare = await replay.send("GET", f"/api/v{version}/{path}", None, headers)
            slashed = await replay.send("GET", f"/api/v{version}/{path}/", None, headers)
            assert bare == slashed and bare[0] == 200, (version, path, bare)


# -- Terraform: kristofferahl/terraform-provider-healthchecksio ------------------------------

TERRAFORM_BASE = "/api/v1"  # provider `api_url` (config.go:12 HEALTHCHECKSIO_API_URL)


async def terraform(
    replay: Replay, method: str, path: str, check: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """go-healthchecksio Client.request (client.go:46-50): BaseURL + path, Content-Type
    application/json and X-Api-Key on every request; a body only for create and update."""
    headers = {"Content-Type": "application/json", "X-Api-Key": replay.key, "User-Agent": GO_UA}
    body = None if check is None else json.dumps(check, separators=(",", ":")).encode()
    return await replay.send(method, f"{TERRAFORM_BASE}{path}", body, headers)


def terraform_check(**given: Any) -> dict[str, Any]:
    """Healthcheck.ToJSON (healtcheck.go:9-21): `channels` and `methods` always, the rest
    `omitempty`; createHealthcheckFromResourceData (resource_check.go:227-275) sets the slug
    from the name when none is given (:329-339)."""
    check: dict[str, Any] = {"channels": "", "methods": ""}
    check.update({k: v for k, v in given.items() if v})
    return check


async def terraform_read(replay: Replay, uuid: str) -> dict[str, Any] | None:
    """resourceHealthcheckRead (resource_check.go:128-150): GET /checks/ and find the check
    whose update_url ends in its id (healtcheck.go:61-64)."""
    status, listing = await terraform(replay, "GET", "/checks/")  # client.go:88
    assert status == 200
    found = [c for c in listing["checks"] if c["update_url"].split("/")[-1] == uuid]
    return found[0] if found else None


async def test_terraform_creates_reads_updates_and_deletes_a_cron_check(
    start_daemon: Callable[..., Any],
) -> None:
    replay = await replayer(start_daemon)
    # data "healthchecksio_channel" (data_source_channel.go:42): GET /channels/ (client.go:180)
    status, channels = await terraform(replay, "GET", "/channels/")
    assert status == 200 and channels["channels"][0]["kind"] == "log"
    channel = channels["channels"][0]["id"]

    # create (resource_check.go:105-125): POST /checks/ (client.go:110), then read
    spec = terraform_check(
        channels=channel, grace=600, name="Nightly backup", slug="nightly-backup",
        schedule="0 3 * * *", tags="prod db", tz="Europe/Riga",
    )  # fmt: skip
    status, created = await terraform(replay, "POST", "/checks/", spec)
    assert status == 201, created
    uuid = created["update_url"].split("/")[-1]
    read = await terraform_read(replay, uuid)
    assert read is not None
    assert (read["slug"], read["schedule"], read["tz"], read["grace"], read["channels"]) == (
        "nightly-backup", "0 3 * * *", "Europe/Riga", 600, channel,
    )  # fmt: skip

    # update (resource_check.go:191-211): POST /checks/<id> with every set field (client.go:132)
    spec["schedule"], spec["grace"] = "30 4 * * 1-5", 900
    status, updated = await terraform(replay, "POST", f"/checks/{uuid}", spec)
    assert status == 200, updated
    read = await terraform_read(replay, uuid)
    assert read is not None and (read["schedule"], read["grace"]) == ("30 4 * * 1-5", 900)

    # delete (resource_check.go:214-224): DELETE /checks/<id> (client.go:164); a refresh
    # then finds nothing and drops the resource from the state
    status, deleted = await terraform(replay, "DELETE", f"/checks/{uuid}")
    assert status == 200 and deleted["name"] == "Nightly backup"
    assert await terraform_read(replay, uuid) is None
