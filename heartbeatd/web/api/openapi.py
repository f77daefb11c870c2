"""An OpenAPI 3.1 description of the v3 management API, served at /api/v3/openapi.json.

Written by hand from api.py and api_schema.py, and kept honest by a schemathesis run
(tests/test_api_fuzz.py) that sends generated requests to a real daemon and checks every
answer against it. v1 and v2 have the same shape, apart from what api_schema.py says.
"""

from __future__ import annotations

from typing import Any

from heartbeatd import __version__
from heartbeatd.core import fields, limits
from heartbeatd.core.silence import MAX_REASON
from heartbeatd.web.api.schema import (
    BODY_FLAG_FIELDS,
    BODY_TEXT_FIELDS,
    LEGACY_SUBJECT_FIELDS,
    UNIQUE_FIELDS,
)

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {JSON: {"schema": schema}}}


# ratelimit.py answers 429 (plain text) to an address that has drawn too many 404s lately.
RATE_LIMITED = {
    "429": {
        "description": "Too many 404s from this address lately; retry after Retry-After",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}
ERRORS = {
    "400": _answer("The request is malformed or a field is invalid", _ref("Error")),
    "401": _answer("The key is missing, wrong, revoked or read-only", _ref("Error")),
    **RATE_LIMITED,
}
NOT_FOUND = {"404": _answer("No such check", _ref("Error"))}
READ_ONLY = {"403": _answer("The check is declared in the config file", _ref("Error"))}
TOO_LARGE = {"413": _answer("The body is larger than 1 MB", _ref("Error"))}
SECONDS = {
    "type": "integer",
    "minimum": int(fields.MIN_SECONDS),
    "maximum": int(fields.MAX_SECONDS),
}
KEYWORDS = {"type": "string", "maxLength": limits.MAX_KEYWORDS}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

CHECK_SPEC: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": limits.MAX_NAME},
        "slug": {
            "type": "string",
            "maxLength": limits.MAX_SLUG,
            "pattern": f"^{limits.SLUG.pattern}$",  # JSON Schema's `$`: the very end
        },
        "tags": {
            "type": "string",
            "maxLength": limits.MAX_TAGS,
            "description": "space-separated; the bound counts one space between tags",
        },
        "desc": {"type": "string", "maxLength": limits.MAX_DESC},
        "timeout": SECONDS,
        "grace": SECONDS,
        "schedule": {
            "type": "string",
            "maxLength": limits.MAX_CRON,
            "description": "5-field cron, or systemd OnCalendar expressions, one per line",
        },
        "tz": {"type": "string", "description": "an IANA time zone"},
        "manual_resume": {"type": "boolean"},
        "methods": {"enum": ["", "POST"]},
        "channels": {
            "type": "string",
            "maxLength": limits.MAX_CHANNELS,
            "description": '"*", "" or ids/names, comma-separated',
        },
        "unique": {"type": "array", "items": {"enum": list(UNIQUE_FIELDS)}},
        "misses": {"type": "integer", "minimum": 1, "maximum": fields.MAX_MISSES},
        "failures": {
            "type": "integer",
            "minimum": 1,
            "maximum": fields.MAX_RUNS,
            "description": "heartbeatd: down after this many failed, timed-out or missed runs "
            "in a row (Sentry's failure_issue_threshold); default 1",
        },
        "recoveries": {
            "type": "integer",
            "minimum": 1,
            "maximum": fields.MAX_RUNS,
            "description": "heartbeatd: up again after this many successful runs in a row "
            "(Sentry's recovery_threshold); default 1",
        },
        "early": {
            "type": "integer",
            "minimum": 0,
            "maximum": int(fields.MAX_EARLY),
            "description": "heartbeatd, cron checks: seconds before a slot that a ping still "
            "counts for that slot; default 0",
        },
        "max_runtime": {
            "type": ["integer", "null"],
            "minimum": SECONDS["minimum"],
            "maximum": SECONDS["maximum"],
        },
        **{field: KEYWORDS for field in (*BODY_TEXT_FIELDS, *LEGACY_SUBJECT_FIELDS)},
        **{field: {"type": "boolean"} for field in BODY_FLAG_FIELDS},
    },
}

CHECK: dict[str, Any] = {
    "type": "object",
    "required": [
        "name",
        "slug",
        "tags",
        "desc",
        "grace",
        "n_pings",
        "status",
        "started",
        "last_ping",
        "next_ping",
        "manual_resume",
        "methods",
        "badge_url",
        "misses",
        "failures",
        "recoveries",
        "early",
        "counting",
        "max_runtime",
        "managed",
    ],
    "properties": {
        "name": {"type": "string"},
        "slug": {"type": "string"},
        "tags": {"type": "string"},
        "desc": {"type": "string"},
        "grace": {"type": "integer"},
        "n_pings": {"type": "integer"},
        "status": {"enum": ["new", "up", "grace", "down", "paused", "started"]},
        "started": {"type": "boolean"},
        "last_ping": NULLABLE_TIME,
        "next_ping": NULLABLE_TIME,
        "manual_resume": {"type": "boolean"},
        "methods": {"enum": ["", "POST"]},
        "badge_url": {"type": "string"},
        "last_duration": {"type": "integer"},
        "uuid": {"type": "string", "format": "uuid"},
        "unique_key": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
        "ping_url": {"type": "string"},
        "update_url": {"type": "string"},
        "pause_url": {"type": "string"},
        "resume_url": {"type": "string"},
        "channels": {"type": "string"},
        "timeout": {"type": "integer"},
        "schedule": {"type": "string"},
        "tz": {"type": "string"},
        "misses": {"type": "integer"},
        "failures": {"type": "integer"},
        "recoveries": {"type": "integer"},
        "early": {"type": "integer"},
        "counting": {
            "type": "string",
            "description": "heartbeatd: where a threshold's count stands, e.g. \"1 of 3 "
            'failures" (still up) or "1 of 2 successes" (still down); "" when none counts',
        },
        "max_runtime": {"type": ["integer", "null"]},
        "managed": {"type": "boolean"},
        **{field: {"type": "string"} for field in (*BODY_TEXT_FIELDS, *LEGACY_SUBJECT_FIELDS)},
        **{field: {"type": "boolean"} for field in BODY_FLAG_FIELDS},
    },
}

PING = {
    "type": "object",
    "required": ["type", "date", "n", "scheme", "remote_addr", "method", "ua", "rid", "body_url"],
    "properties": {
        "type": {"enum": ["success", "start", "fail", "log", "ign"]},
        "date": {"type": "string", "format": "date-time"},
        "n": {"type": "integer"},
        "scheme": {"type": "string"},
        "remote_addr": {"type": "string"},
        "method": {"type": "string"},
        "ua": {"type": "string"},
        "rid": {"type": ["string", "null"]},
        "body_url": {"type": ["string", "null"]},
        "exitstatus": {"type": ["integer", "null"]},
        "duration": {"type": "number"},
    },
}

FLIP = {
    "type": "object",
    "required": ["timestamp", "up"],
    "properties": {"timestamp": {"type": "string", "format": "date-time"}, "up": {"enum": [0, 1]}},
}

CODE = {
    "name": "code",
    "in": "path",
    "required": True,
    "description": "the check's UUID (reads also take its unique_key)",
    "schema": {"type": "string"},
}
SPEC_BODY = {"required": False, "content": {JSON: {"schema": _ref("CheckSpec")}}}
FLIP_FILTERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0, "maximum": 253_402_300_799},
    }
    for name in ("seconds", "start", "end")
]


def _check_answer(description: str) -> dict[str, Any]:
    return _answer(description, _ref("Check"))


SILENCE = {
    "type": "object",
    "required": ["kind", "name", "ends"],
    "properties": {
        "kind": {"enum": ["window", "snooze"]},
        "name": {"type": "string"},
        "ends": {**NULLABLE_TIME, "description": "when it ends; null: a window not on now"},
        "cron": {"type": ["string", "null"]},
        "start": NULLABLE_TIME,
        "duration": {"type": "number"},
        "tz": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "checks": {"type": "array", "items": {"type": "string"}},
        "check": {"type": "string", "description": "a snooze's check, by UUID"},
        "slug": {"type": "string"},
        "reason": {"type": "string"},
        "created": {"type": "string", "format": "date-time"},
    },
}
SILENCES = {
    "type": "object",
    "required": ["silences"],
    "properties": {"silences": {"type": "array", "items": SILENCE}},
}
SNOOZE_SPEC = {
    "type": "object",
    "required": ["check", "for"],
    "properties": {
        "check": {"type": "string", "description": "the check's UUID"},
        "for": {
            "type": ["string", "integer"],
            "description": "how long: a duration like '2h' or seconds, more than 0, at most 7d",
        },
        "reason": {"type": "string", "maxLength": MAX_REASON},
    },
}

PATHS: dict[str, Any] = {
    "/api/v3/checks/": {
        "get": {
            "summary": "List checks, filtered by every `tag` given and by `slug`",
            "parameters": [
                {"name": "tag", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "slug", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": _answer(
                    "The checks",
                    {
                        "type": "object",
                        "required": ["checks"],
                        "properties": {"checks": {"type": "array", "items": _ref("Check")}},
                    },
                ),
                **ERRORS,
            },
        },
        "post": {
            "summary": "Create a check, or update the one `unique` finds",
            "requestBody": SPEC_BODY,
            "responses": {
                "201": _check_answer("Created"),
                "200": _check_answer("An existing check matched `unique` and was updated"),
                **ERRORS,
                **READ_ONLY,
                **TOO_LARGE,
            },
        },
    },
    "/api/v3/checks/{code}": {
        "parameters": [CODE],
        "get": {
            "summary": "One check",
            "responses": {"200": _check_answer("The check"), **ERRORS, **NOT_FOUND},
        },
        "post": {
            "summary": "Change the given fields of a check",
            "requestBody": SPEC_BODY,
            "responses": {
                "200": _check_answer("The changed check"),
                **ERRORS,
                **NOT_FOUND,
                **READ_ONLY,
                **TOO_LARGE,
            },
        },
        "delete": {
            "summary": "Delete a check",
            "responses": {
                "200": _check_answer("The deleted check"),
                **ERRORS,
                **NOT_FOUND,
                **READ_ONLY,
            },
        },
    },
    "/api/v3/checks/{code}/pause": {
        "parameters": [CODE],
        "post": {
            "summary": "Pause a check",
            "responses": {
                "200": _check_answer("The paused check"),
                **ERRORS,
                **NOT_FOUND,
                **READ_ONLY,
                **TOO_LARGE,
            },
        },
    },
    "/api/v3/checks/{code}/resume": {
        "parameters": [CODE],
        "post": {
            "summary": "Resume a paused check",
            "responses": {
                "200": _check_answer("The resumed check"),
                "409": _answer("The check is not paused", _ref("Error")),
                **ERRORS,
                **NOT_FOUND,
                **READ_ONLY,
                **TOO_LARGE,
            },
        },
    },
    "/api/v3/checks/{code}/pings/": {
        "parameters": [CODE],
        "get": {
            "summary": "A check's pings, newest first",
            "responses": {
                "200": _answer(
                    "The pings",
                    {
                        "type": "object",
                        "required": ["pings"],
                        "properties": {"pings": {"type": "array", "items": PING}},
                    },
                ),
                **ERRORS,
                **NOT_FOUND,
            },
        },
    },
    "/api/v3/checks/{code}/pings/{n}/body": {
        "parameters": [
            CODE,
            {
                "name": "n",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999},
            },
        ],
        "get": {
            "summary": "A ping's body",
            "responses": {
                "200": {
                    "description": "The body",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **ERRORS,
                **NOT_FOUND,
            },
        },
    },
    "/api/v3/checks/{code}/flips/": {
        "parameters": [CODE],
        "get": {
            "summary": "A check's status changes, newest first",
            "parameters": FLIP_FILTERS,
            "responses": {
                "200": _answer(
                    "The flips",
                    {
                        "type": "object",
                        "required": ["flips"],
                        "properties": {"flips": {"type": "array", "items": FLIP}},
                    },
                ),
                **ERRORS,
                **NOT_FOUND,
            },
        },
    },
    "/api/v3/channels/": {
        "get": {
            "summary": "The notifiers",
            "responses": {
                "200": _answer(
                    "The notifiers",
                    {
                        "type": "object",
                        "required": ["channels"],
                        "properties": {
                            "channels": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["id", "name", "kind"],
                                    "properties": {
                                        "id": {"type": "string"},
                                        "name": {"type": "string"},
                                        "kind": {"type": "string"},
                                    },
                                },
                            }
                        },
                    },
                ),
                **ERRORS,
            },
        },
    },
    "/api/v3/badges/": {
        "get": {
            "summary": "Badge URLs per tag, and `*` for all checks",
            "responses": {
                "200": _answer(
                    "The badges",
                    {
                        "type": "object",
                        "required": ["badges"],
                        "properties": {
                            "badges": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            }
                        },
                    },
                ),
                **ERRORS,
            },
        },
    },
    "/api/v3/status/": {
        "get": {
            "summary": "Database liveness",
            "security": [],
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"text/plain": {"schema": {"const": "OK"}}},
                },
                "503": {"description": "The database cannot be read or cannot take writes"},
                **RATE_LIMITED,
            },
        },
    },
    "/api/v3/silences/": {
        "get": {
            "summary": "The config's [[silence]] windows and every running snooze "
            "(heartbeatd's extension)",
            "responses": {"200": _answer("Silences", SILENCES), **ERRORS},
        },
        "post": {
            "summary": "Snooze a check's alerts, replacing its snooze (heartbeatd's extension); "
            "the check is still monitored, its alerts are held and told when the snooze ends",
            "requestBody": {"required": True, "content": {JSON: {"schema": SNOOZE_SPEC}}},
            "responses": {
                "201": _answer("The snooze", SILENCE),
                **ERRORS,
                **NOT_FOUND,
                **TOO_LARGE,
            },
        },
    },
    "/api/v3/silences/{code}": {
        "delete": {
            "summary": "Lift a check's snooze (heartbeatd's extension); its held alerts are "
            "settled at once",
            "parameters": [CODE],
            "responses": {
                "200": _answer("The silences left", SILENCES),
                "401": ERRORS["401"],
                "404": _answer("No such check, or it is not snoozed", _ref("Error")),
                **RATE_LIMITED,
            },
        },
    },
    "/api/v3/audit/": {
        "get": {
            "summary": "The audit log, newest first (heartbeatd's extension)",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0, "maximum": 100_000},
                }
            ],
            "responses": {
                "200": _answer(
                    "Audit rows",
                    {
                        "type": "object",
                        "required": ["audit"],
                        "properties": {
                            "audit": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": [
                                        "id",
                                        "at",
                                        "actor",
                                        "action",
                                        "target",
                                        "before",
                                        "after",
                                    ],
                                },
                            }
                        },
                    },
                ),
                **ERRORS,
            },
        },
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "heartbeatd management API",
        "version": __version__,
        "description": "Compatible with the Healthchecks management API (v1, v2, v3).",
    },
    "security": [{"ApiKey": []}],
    "paths": PATHS,
    "components": {
        "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}},
        "schemas": {
            "Check": CHECK,
            "CheckSpec": CHECK_SPEC,
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
        },
    },
}
