"""`heartbeatd import crontab`: one check per cron job, and the crontab rewritten to report.

Parsing follows cron(5): comments and blank lines, `NAME = value` environment lines (SHELL and
CRON_TZ matter to us), five time fields or an `@nickname`, then the command, in which an
unescaped `%` starts the job's stdin. The rewrite only puts a wrapper in front of the command
text, so cron and the shell still see every character the user wrote, `%` and quotes included.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from heartbeatd.core import fields
from heartbeatd.core.limits import MAX_SLUG
from heartbeatd.core.model import Check, CheckDefinition, slugify
from heartbeatd.store import Store

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_ENV_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_NICKNAME_LINE = re.compile(r"^\s*(@[a-z]+)\s+")
_FIELDS_LINE = re.compile(r"^\s*(\S+\s+){5}")
_UNESCAPED_PERCENT = re.compile(r"(?<!\\)%")
# Programs that run another program: the job is named after what they run.
_WRAPPERS = {"sudo", "nice", "ionice", "nohup", "timeout", "flock", "env", "chronic", "exec",
             "time", "setlock", "cronic", "systemd-cat", "su"}  # fmt: skip
_INTERPRETERS = {"sh", "bash", "dash", "zsh", "python", "python3", "perl", "ruby", "node", "php"}
_PREAMBLE = {"cd", "test", "[", ":", "true", "export", "source", ".", "sleep", "umask", "set"}
_PUNCTUATION = frozenset("();<>|&")
_REDIRECT = re.compile(r"^\d*[<>]")
_OPTION_VALUE = re.compile(r"^(-.*|\d+(\.\d+)?[smhd]?|.*\.(lock|lck|pid))$")
_MONITORED = re.compile(r"heartbeatd\s+run|runitor|/ping/|hc-ping\.com|(^|[\s/])hb\s")


@dataclass(frozen=True, slots=True)
class CronJob:
    """One schedulable crontab line, split where the wrapper goes."""

    line_no: int
    cron: str  # five fields, nicknames expanded
    tz: str
    shell: str
    prefix: str  # the line up to the command, as written (schedule, user field)
    command: str  # what cron hands to the shell
    stdin: str  # from the first unescaped `%` on, or ""


@dataclass(frozen=True, slots=True)
class Skipped:
    line_no: int
    line: str
    why: str


@dataclass
class Crontab:
    lines: list[str]
    jobs: list[CronJob] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Proposal:
    job: CronJob
    slug: str

    def definition(self, grace: float) -> CheckDefinition:
        return CheckDefinition(
            name=self.slug,
            slug=self.slug,
            cron=self.job.cron,
            tz=self.job.tz,
            grace=grace,
            desc=f"crontab line {self.job.line_no}: {self.job.command.strip()}",
        )


def parse_crontab(text: str, tz: str, system: bool = False) -> Crontab:
    """Jobs and skipped lines of a user crontab, or of /etc/crontab and cron.d with `system`.

    `tz` is the zone cron runs in; a `CRON_TZ=` line changes it for the lines after it.
    """
    crontab = Crontab(text.splitlines())
    shell = "/bin/sh"
    for line_no, line in enumerate(crontab.lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if env := _ENV_LINE.match(line):
            name, value = env[1], _unquote(env[2])
            if name == "SHELL":
                shell = value
            elif name == "CRON_TZ":
                tz = value
            continue
        job = _parse_job(line, line_no, tz, shell, system)
        if isinstance(job, Skipped):
            crontab.skipped.append(job)
        else:
            crontab.jobs.append(job)
    return crontab


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _parse_job(line: str, line_no: int, tz: str, shell: str, system: bool) -> CronJob | Skipped:
    if nickname := _NICKNAME_LINE.match(line):
        if nickname[1] == "@reboot":
            return Skipped(line_no, line, "@reboot runs once at boot: no schedule to watch")
        if nickname[1] not in NICKNAMES:
            return Skipped(line_no, line, f"unknown schedule {nickname[1]}")
        cron, end = NICKNAMES[nickname[1]], nickname.end()
    elif fields := _FIELDS_LINE.match(line):
        cron, end = " ".join(line.split()[:5]), fields.end()
    else:
        return Skipped(line_no, line, "not a cron line (expected five fields and a command)")
    if system:
        user = re.match(r"\S+\s+", line[end:])
        if user is None:
            return Skipped(line_no, line, "no user field (system crontab format)")
        end += user.end()
    return _job(line, line_no, cron, tz, shell, end)


def _job(line: str, line_no: int, cron: str, tz: str, shell: str, end: int) -> CronJob | Skipped:
    rest = line[end:]
    split = _UNESCAPED_PERCENT.search(rest)
    command, stdin = (rest[: split.start()], rest[split.start() :]) if split else (rest, "")
    if not command.strip():
        return Skipped(line_no, line, "no command")
    if _MONITORED.search(command):
        return Skipped(line_no, line, "already reports to a monitor")
    try:
        fields.cron(cron)
        fields.tz(tz)
    except ValueError as e:
        return Skipped(line_no, line, str(e))
    return CronJob(line_no, cron, tz, shell, line[:end], command, stdin)


def _tokens(command: str) -> list[str]:
    """Shell words and operators; `$(…)` and backquotes are dropped: they only make words."""
    lexer = shlex.shlex(_without_substitutions(command), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: cron would fail it too; name it from the words
        return command.split()


def _without_substitutions(command: str) -> str:
    out, depth, i = [], 0, 0
    while i < len(command):
        if command.startswith("$(", i):
            depth, i = depth + 1, i + 2
            continue
        char = command[i]
        if depth and char == "(":
            depth += 1
        elif depth and char == ")":
            depth -= 1
        elif not depth:
            out.append(char)
        i += 1
    return re.sub(r"`[^`]*`", "", "".join(out))


def _is_control(token: str) -> bool:
    """`;`, `&&`, `|`, `(`… but not a redirect such as `>` or `2>&1`'s `>&`."""
    if not set(token) <= _PUNCTUATION:
        return False
    return bool(set(token) & set(";|()")) or token in ("&", "&&")


def job_name(command: str) -> str:
    """What a person would call the job: the program it runs, past `cd … &&` and wrappers."""
    segments: list[list[str]] = [[]]
    for token in _tokens(command):
        if _is_control(token):
            segments.append([])
        else:
            segments[-1].append(token)
    candidates = [name for segment in segments if (name := _program(segment))]
    return candidates[0] if candidates else "cron-job"


def _program(segment: list[str]) -> str | None:
    """The program a simple command runs, or None for `cd /x`, `sleep 30` and the like."""
    words = iter(segment)
    after_wrapper = False
    for word in words:
        if _REDIRECT.match(word):
            next(words, None)  # the redirect's target
            continue
        if "=" in word.split("/")[0] or (after_wrapper and _OPTION_VALUE.match(word)):
            continue
        base = PurePosixPath(word).name
        if base in _WRAPPERS:
            after_wrapper = True
            continue
        if base in _PREAMBLE:
            return None
        if base in _INTERPRETERS:
            script = _script(words)
            return script or base
        return _stem(base)
    return None


def _script(words: Iterator[str]) -> str | None:
    """The script an interpreter runs: `python3 -m etl.nightly`, `bash /opt/backup.sh`."""
    for word in words:
        if word == "-c":
            inline = next(words, "")
            return job_name(inline) if inline else None
        if word == "-m":
            module = next(words, "")
            return module.rsplit(".", 1)[-1] if module else None
        if not word.startswith("-"):
            return _stem(PurePosixPath(word).name)
    return None


def _stem(base: str) -> str:
    return re.sub(r"\.(sh|bash|py|pl|rb|php|js)$", "", base)


def propose(crontab: Crontab) -> list[Proposal]:
    """One check per job; jobs that would share a slug get `-2`, `-3` in line order."""
    taken: set[str] = set()
    proposals = []
    for job in crontab.jobs:
        base = slugify(job_name(job.command))
        slug, n = base, 1
        while slug in taken:
            n += 1
            suffix = f"-{n}"
            slug = f"{base[: MAX_SLUG - len(suffix)]}{suffix}"  # a long name gives up its end
        taken.add(slug)
        proposals.append(Proposal(job, slug))
    return proposals


def needs_shell(command: str) -> bool:
    """True when the command has shell operators a prefix would not cover (`a && b`, pipes)."""
    return any(_is_control(token) for token in _tokens(command))


def wrap(job: CronJob, wrapper: str) -> str:
    """The rewritten crontab line: `<schedule> <wrapper> -- <command>%<stdin>`.

    A command with operators runs under `sh -c '…'` (the crontab's SHELL) so the wrapper sees
    the whole job end; `%` and `\\%` stay as written because cron reads them before any shell.
    """
    command = job.command.strip()
    if needs_shell(command):
        shell = "sh" if job.shell == "/bin/sh" else job.shell
        command = f"{shell} -c {shlex.quote(command)}"
    return f"{job.prefix}{wrapper} -- {command}{job.stdin}"


def rewrite(crontab: Crontab, wrappers: Mapping[int, str], header: list[str]) -> str:
    """The whole crontab with each job line (by number) wrapped; everything else kept."""
    jobs = {job.line_no: job for job in crontab.jobs}
    out = list(header)
    for line_no, line in enumerate(crontab.lines, 1):
        out.append(wrap(jobs[line_no], wrappers[line_no]) if line_no in wrappers else line)
    return "\n".join(out) + "\n"


def table(proposals: list[Proposal], skipped: list[Skipped]) -> list[str]:
    rows = [("LINE", "SLUG", "CRON", "TZ", "COMMAND")]
    for p in proposals:
        command = p.job.command.strip()
        short = command if len(command) <= 50 else command[:49] + "…"
        rows.append((str(p.job.line_no), p.slug, p.job.cron, p.job.tz, short))
    lines = columns(rows)
    lines += [f"skipped line {s.line_no}: {s.why}: {s.line.strip()}" for s in skipped]
    return lines


def columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as lines of left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip


class Proposed(Protocol):
    """A check an importer proposes: crontab lines and systemd timers alike."""

    @property
    def slug(self) -> str: ...

    def definition(self, grace: float) -> CheckDefinition: ...


async def create_checks(
    store: Store, proposals: Sequence[Proposed], grace: float, now: float
) -> list[tuple[Check, bool]]:
    """Each proposal's check, created unless one with its slug exists (so importing twice
    changes nothing), and whether it was created."""
    existing = {c.slug: c for c in await store.list_checks()}
    result = []
    for proposal in proposals:
        found = existing.get(proposal.slug)
        if found is None:
            found = await store.add_check(proposal.definition(grace), now)
        result.append((found, proposal.slug not in existing))
    return result


def system_timezone(env: Mapping[str, str], root: Path = Path("/")) -> str:
    """The zone cron runs jobs in: /etc/timezone, the /etc/localtime link, $TZ, else UTC."""
    candidates = []
    with contextlib.suppress(OSError):
        candidates.append((root / "etc/timezone").read_text().strip())
    link = os.path.realpath(root / "etc/localtime")
    if "/zoneinfo/" in link:
        candidates.append(link.split("/zoneinfo/", 1)[1])
    candidates.append(env.get("TZ", "").lstrip(":"))
    for name in candidates:
        try:
            fields.tz(name)
            return name
        except ValueError:
            continue
    return "UTC"
