"""Config: precedence, defaults, and mistakes reported as FILE:LINE: key: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from heartbeatd.core.config import ConfigError, load_config

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "heartbeatd.toml"
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {}, {})
    return str(caught.value).removeprefix(f"{path}:")


def test_embedded_default_needs_no_file() -> None:
    config = load_config(None, {}, {})
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert config.db == "heartbeatd.db"
    assert config.site_url == "http://127.0.0.1:8000"
    assert config.ping_body_limit == 100_000 and config.ping_retention == 100
    assert [(n.name, n.type, n.default) for n in config.notifiers] == [("log", "log", True)]


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'listen = "127.0.0.1:7000"\nping_retention = 5\n')
    env = {"HEARTBEATD_LISTEN": "127.0.0.1:7001", "HEARTBEATD_PING_RETENTION": "7"}
    assert load_config(path, {}, {}).port == 7000
    assert load_config(path, env, {}).port == 7001
    assert load_config(path, env, {}).ping_retention == 7
    assert load_config(path, env, {"listen": "127.0.0.1:7002"}).port == 7002


def test_relative_db_in_a_file_is_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'db = "state/hb.db"\n')
    assert load_config(path, {}, {}).db == str(tmp_path / "state" / "hb.db")
    assert load_config(path, {}, {"db": "other.db"}).db == "other.db"


def test_site_url_follows_listen_unless_given(tmp_path: Path) -> None:
    assert load_config(None, {}, {"listen": "0.0.0.0:9000"}).site_url == "http://localhost:9000"
    path = write(tmp_path, 'site_url = "https://hb.example.org/"\n')
    assert load_config(path, {}, {}).site_url == "https://hb.example.org"


def test_checks_and_notifiers_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[notifier]]
name = "ops"
type = "webhook"
url = "http://127.0.0.1:9/hook"
tags = ["backup"]

[[check]]
name = "Nightly Backup"
cron = "0 3 * * *"
tz = "Europe/Berlin"
grace = "30m"
tags = ["backup", "db"]
notifiers = ["ops"]
misses = 2
""",
    )
    config = load_config(path, {}, {})
    (check,) = config.checks
    assert check.slug == "nightly-backup"
    assert (check.cron, check.tz, check.grace) == ("0 3 * * *", "Europe/Berlin", 1800.0)
    assert check.tags == ("backup", "db") and check.notifiers == ("ops",) and check.misses == 2
    (ops,) = config.notifiers
    assert ops.options == {"url": "http://127.0.0.1:9/hook"} and ops.tags == ("backup",)


def test_the_example_config_loads_and_documents_every_setting() -> None:
    config = load_config(EXAMPLE, {}, {})
    assert config.checks and config.notifiers
    text = EXAMPLE.read_text()
    from heartbeatd.core.config import CHECK_KEYS, NOTIFIER_KEYS, SETTINGS

    for key in [*SETTINGS, *CHECK_KEYS, *NOTIFIER_KEYS]:
        assert f"{key} =" in text, f"config.example.toml does not document {key}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('listen = "nowhere"\n', "1: listen: expected HOST:PORT"),
        ("\n\nping_retention = 0\n", "3: ping_retention: expected a whole number from 1"),
        ('ping_body_limit = "big"\n', "1: ping_body_limit: expected a whole number"),
        ('trusted_proxies = ["10.0.0.0/33"]\n', "1: trusted_proxies: expected addresses"),
        ('startup_grace = "soon"\n', "1: startup_grace: expected a duration"),
        ('colour = "red"\n', "1: colour: unknown key"),
        ("listen = \n", "1: syntax: Invalid value"),
        (
            '[[check]]\nname = "a"\nperiod = "1h"\n\n[[check]]\nname = "b"\nperiod = "0s"\n',
            "7: period: must be between 1s and 365d",
        ),
        ('[[check]]\nname = "a"\n', "1: period: give either period"),
        ('[[check]]\nname = "a"\nperiod = "1h"\ncron = "* * * * *"\n', "3: period: give either"),
        ('[[check]]\nname = "a"\ncron = "61 * * * *"\n', "3: cron: "),
        ('[[check]]\nname = "a"\ncron = "0 3 * * *"\ntz = "Mars/Olympus"\n', "4: tz: unknown time"),
        ('[[check]]\nname = "a"\nperiod = 60\nspeed = 3\n', "4: speed: unknown key"),
        ('[[check]]\nname = "a"\nperiod = 60\nnotifiers = ["pager"]\n', "4: notifiers: no"),
        ('[[check]]\nname = "a"\nperiod = 60\nslug = "A B"\n', "4: slug: use lowercase"),
        (
            '[[check]]\nname = "a"\nperiod = 60\n[[check]]\nname = "a"\nperiod = 60\n',
            "4: slug: another check has slug 'a'",
        ),
        ('[[notifier]]\ntype = "log"\n', "1: name: required"),
        ('[[notifier]]\nname = "x"\ntype = "log"\ndefault = "yes"\n', "4: default: expected"),
        ('[check]\nname = "a"\n', "1: check: write tables as [[check]]"),
        ('[[notifier]]\nname = "x"\ntype = "shell"\n', "3: type: shell notifiers need"),
    ],
)
def test_mistakes_name_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text).startswith(expected)


def test_environment_and_flag_mistakes_name_their_source() -> None:
    with pytest.raises(ConfigError, match=r"^environment: HEARTBEATD_LISTEN: expected HOST:PORT"):
        load_config(None, {"HEARTBEATD_LISTEN": "8000"}, {})
    with pytest.raises(ConfigError, match=r"^command line: --ping-retention: expected"):
        load_config(None, {}, {"ping_retention": "lots"})


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path, {}, {})


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_an_empty_file_is_a_config_error_but_a_comment_runs_on_the_defaults(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "heartbeatd.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: file: is empty"):
        load_config(path, {}, {})
    path.write_text("# the defaults\n")
    assert load_config(path, {}, {}).checks == ()


def test_keys_inside_multiline_strings_do_not_confuse_line_numbers(tmp_path: Path) -> None:
    text = '[[check]]\nname = "a"\ndesc = """\nperiod = 5\n"""\nperiod = "0s"\n'
    assert error(tmp_path, text).startswith("6: period:")


def test_notifier_secrets_come_from_files_and_environment(tmp_path: Path) -> None:
    (tmp_path / "smtp-password").write_text("hunter2\n")
    path = write(
        tmp_path,
        '[[notifier]]\nname = "mail"\ntype = "email"\npassword_file = "smtp-password"\n'
        'token_env = "HB_TOKEN"\n',
    )
    (mail,) = load_config(path, {"HB_TOKEN": "t0ken"}, {}).notifiers
    assert mail.options == {"password": "hunter2", "token": "t0ken"}


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('password_file = "missing"\n', "4: password_file: cannot read missing"),
        ('token_env = "NOT_SET_ANYWHERE"\n', "4: token_env: environment variable NOT_SET"),
        ('password = "x"\npassword_file = "f"\n', "5: password_file: give password or"),
    ],
)
def test_secret_mistakes_name_the_key(tmp_path: Path, table: str, expected: str) -> None:
    text = f'[[notifier]]\nname = "mail"\ntype = "email"\n{table}'
    assert error(tmp_path, text).startswith(expected)
