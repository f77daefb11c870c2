"""One validator per check field (core/fields.py): a value that one way of defining a check
refuses, every way refuses — the config file, the management API, the web form and the CLI —
and a value one takes, the others take. Before, each had its own rules: `misses = 500` was
fine in the file and a 400 through the API, and the form took any time zone for a period."""

from __future__ import annotations

from typing import Any

import pytest

from heartbeatd.core.config import ConfigError
from heartbeatd.core.errors import BadRequest
from heartbeatd.web.api.schema import parse_spec
from heartbeatd.web.ui.actions import parse_form
from tests.conftest import Invoke, MakeConfig

FORM = {"name": "job", "slug": "", "tags": "", "desc": "", "kind": "period", "period": "1d",
        "cron": "0 3 * * *", "tz": "UTC", "grace": "1h"}  # fmt: skip

# field: (a value every way refuses, a value every way takes), in each way's own spelling
CASES: dict[str, dict[str, tuple[Any, Any]]] = {
    "misses": {"toml": (500, 100), "api": (500, 100), "cli": ("500", "100")},
    "tz": {"toml": ('"Mars/Base"', '"Europe/Berlin"'), "api": ("Mars/Base", "Europe/Berlin"),
           "form": ("Mars/Base", "Europe/Berlin"), "cli": ("Mars/Base", "Europe/Berlin")},
    "slug": {"toml": ('"Not OK"', '"ok-1"'), "api": ("Not OK", "ok-1"), "form": ("Not OK", "ok-1"),
             "cli": ("Not OK", "ok-1")},
    "grace": {"toml": ('"0s"', '"1s"'), "api": (0, 1), "form": ("0s", "1s"), "cli": ("0s", "1s")},
    "cron": {"toml": ('"0 3 * *"', '"0 3 * * *"'), "api": ("0 3 * *", "0 3 * * *"),
             "form": ("0 3 * *", "0 3 * * *"), "cli": ("0 3 * *", "0 3 * * *")},
    "name": {"toml": (f'"{"x" * 101}"', f'"{"x" * 100}"'), "api": ("x" * 101, "x" * 100),
             "form": ("x" * 101, "x" * 100), "cli": ("x" * 101, "x" * 100)},
}  # fmt: skip
API_NAMES = {"cron": "schedule"}
CLI_OPTIONS = {"misses": "--misses", "tz": "--tz", "slug": "--slug", "grace": "--grace",
               "cron": "--cron"}  # fmt: skip


def by_config(make_config: MakeConfig, field: str, value: Any) -> bool:
    schedule = {"cron": "", "tz": 'cron = "0 3 * * *"\n'}.get(field, 'period = "1d"\n')
    name = "" if field == "name" else 'name = "job"\n'
    try:
        make_config(f"[[check]]\n{name}{schedule}{field} = {value}\n")
    except ConfigError:
        return False
    return True


def by_api(field: str, value: Any) -> bool:
    try:
        parse_spec({API_NAMES.get(field, field): value})
    except BadRequest:
        return False
    return True


def by_form(field: str, value: Any) -> bool:
    kind = {"kind": "cron"} if field == "cron" else {}
    definition, _ = parse_form({**FORM, **kind, field: value}, None)
    return definition is not None


def by_cli(hb: Invoke, field: str, value: Any) -> bool:
    args = ["--cron", "0 3 * * *"] if field == "tz" else []
    if field == "name":
        return hb("check", "add", value).exit_code == 0
    return hb("check", "add", "job", *args, CLI_OPTIONS[field], value).exit_code == 0


@pytest.mark.parametrize("field", sorted(CASES))
def test_every_way_in_refuses_and_takes_the_same_values(
    field: str, make_config: MakeConfig, hb: Invoke
) -> None:
    ways = CASES[field]
    for index, expected in ((0, False), (1, True)):
        taken = {"toml": by_config(make_config, field, ways["toml"][index]),
                 "api": by_api(field, ways["api"][index]),
                 "cli": by_cli(hb, field, ways["cli"][index])}  # fmt: skip
        if "form" in ways:
            taken["form"] = by_form(field, ways["form"][index])
        assert taken == dict.fromkeys(taken, expected), (field, index)
