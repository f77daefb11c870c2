"""config.example.toml's notifier examples work: each one, uncommented, starts a notifier.

The examples are what users copy. Every commented-out `[[notifier]]` block is uncommented
(its `key = value` lines; the prose between them is dropped) and loaded on its own through
the same load_config + build_notifiers that `heartbeatd serve` runs, so an example with a
renamed option, a wrong value or a missing required key fails here instead of for a user.
"""

from __future__ import annotations

import re
import ssl
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from heartbeatd.core.config import load_config
from heartbeatd.notify import GROUP, build_notifiers

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"
README = EXAMPLE.with_name("README.md")
SETTING = re.compile(r"# ([a-z_]+ = .+)")
SECRET_FROM = re.compile(r'([a-z_]+)_(file|env) = "([^"]*)"')
SECRET = "s3cret-from-elsewhere"
URL_SECRET = "https://hooks.slack.com/services/T0001/B0002/s3cret"  # for url_file / url_env


def notifier_examples() -> dict[str, list[str]]:
    """Each commented-out [[notifier]] block's settings, uncommented, by its name."""
    lines = EXAMPLE.read_text().splitlines()
    examples: dict[str, list[str]] = {}
    for start, line in enumerate(lines):
        if line != "# [[notifier]]":
            continue
        settings = []
        for following in lines[start + 1 :]:
            if not following.startswith("#") or following == "# [[notifier]]":
                break
            if match := SETTING.fullmatch(following):
                settings.append(match[1])
        name = next(s for s in settings if s.startswith("name = ")).split('"')[1]
        examples[name] = settings
    return examples


EXAMPLES = notifier_examples()


def kind_of(settings: list[str]) -> str:
    return next(s for s in settings if s.startswith("type = ")).split('"')[1]


def write_config(tmp_path: Path, lines: list[str]) -> dict[str, str]:
    """Write the config, its secrets in files and the environment as its `<key>_file` and
    `<key>_env` lines say, and return the environment to load it with."""
    env: dict[str, str] = {}
    written = []
    for line in lines:
        if line.startswith("ca_file = "):  # a certificate, not a secret: the system's will do
            line = f'ca_file = "{system_ca_file()}"'
        elif match := SECRET_FROM.fullmatch(line):
            key, source, where = match.groups()
            value = URL_SECRET if key == "url" else SECRET
            if source == "file":
                secret = tmp_path / f"{key}.secret"
                secret.write_text(value + "\n")
                line = f'{key}_file = "{secret}"'
            else:
                env[where] = value
        written.append(line)
    (tmp_path / "heartbeatd.toml").write_text("\n".join(written) + "\n")
    return env


def system_ca_file() -> str:
    path = ssl.get_default_verify_paths().cafile
    if path is None:
        pytest.skip("no system CA bundle to stand in for the example's ca_file")
    return path


async def start_notifiers(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """Load the config as `heartbeatd serve` does; the names of the notifiers it built."""
    config = load_config(tmp_path / "heartbeatd.toml", env, {"db": str(tmp_path / "hb.db")})
    notifiers = build_notifiers(config)
    for notifier in notifiers.values():
        await notifier.close()
    return list(notifiers)


@pytest.mark.parametrize("name", list(EXAMPLES))
async def test_each_notifier_example_loads_as_written(tmp_path: Path, name: str) -> None:
    settings = EXAMPLES[name]
    if kind_of(settings) == "apprise":
        pytest.importorskip("apprise")
    shell = ["enable_shell = true"] if kind_of(settings) == "shell" else []
    env = write_config(tmp_path, [*shell, "[[notifier]]", *settings])
    assert await start_notifiers(tmp_path, env) == [name]


async def test_the_readme_notifier_example_loads_as_written(tmp_path: Path) -> None:
    readme = README.read_text().split("## Notifications", 1)[1]
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    env = write_config(tmp_path, example.splitlines())
    assert await start_notifiers(tmp_path, env) == ["phone", "backups"]


def test_every_notifier_type_has_an_example() -> None:
    documented = {kind_of(settings) for settings in EXAMPLES.values()} | {"log"}
    assert documented >= {ep.name for ep in entry_points(group=GROUP)}


def test_examples_show_each_option_once() -> None:
    """An example that sets password and password_file, or a key twice, would not load."""
    for name, settings in EXAMPLES.items():
        keys = [setting.split(" = ")[0] for setting in settings]
        bases = [re.sub(r"_(file|env)$", "", key) for key in keys if key != "ca_file"]
        assert len(bases) == len(set(bases)), f"{name} repeats an option"


async def test_the_example_file_as_shipped_starts(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, {}, {"db": str(tmp_path / "hb.db")})
    notifiers = build_notifiers(config)
    for notifier in notifiers.values():
        await notifier.close()
    assert notifiers
