"""`heartbeatd import crontab`: parsing real-world crontabs, the rewrite, and --apply."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cronsim import CronSim

from heartbeatd.cli import cli
from heartbeatd.importers.crontab import job_name, parse_crontab, propose, rewrite, system_timezone
from heartbeatd.importers.systemd import (
    calendar_specs,
    calendar_to_cron,
    parse_list_timers,
    propose_timers,
)
from tests.conftest import Daemon

CRONTAB = r"""# m h dom mon dow command
SHELL=/bin/bash
MAILTO = "ops@example.net"

30 2 * * * cd /srv/backup && ./backup.sh --full >/dev/null 2>&1
*/15 9-17 * * mon-fri /usr/bin/python3 -m etl.nightly
@daily /usr/local/bin/rotate-logs
@reboot /usr/local/bin/start-tunnel
0 8 * * 1 mail -s "weekly report" root%Hello,%the report is attached.
5 4 * * sun tar czf /backups/home-$(date +\%F).tgz /home
0 25 * * * /bin/true
nonsense
0 1 * * * curl -fsS https://hc-ping.com/0b6c3a3e-0000-4000-8000-000000000000
"""


def test_jobs_are_found_and_everything_else_is_skipped_or_kept() -> None:
    crontab = parse_crontab(CRONTAB, "Europe/Berlin")
    assert [(job.line_no, job.cron) for job in crontab.jobs] == [
        (5, "30 2 * * *"),
        (6, "*/15 9-17 * * mon-fri"),
        (7, "0 0 * * *"),
        (9, "0 8 * * 1"),
        (10, "5 4 * * sun"),
    ]
    assert {job.tz for job in crontab.jobs} == {"Europe/Berlin"}
    why = {s.line_no: s.why for s in crontab.skipped}
    assert why[8] == "@reboot runs once at boot: no schedule to watch"
    assert why[11].startswith("bad cron expression '0 25 * * *'")
    assert why[12].startswith("not a cron line")
    assert why[13] == "already reports to a monitor"
    assert set(why) == {8, 11, 12, 13}


def test_a_percent_starts_stdin_and_an_escaped_one_stays_in_the_command() -> None:
    jobs = {job.line_no: job for job in parse_crontab(CRONTAB, "UTC").jobs}
    assert jobs[9].command == 'mail -s "weekly report" root'
    assert jobs[9].stdin == "%Hello,%the report is attached."
    assert jobs[10].command == r"tar czf /backups/home-$(date +\%F).tgz /home"
    assert jobs[10].stdin == ""


@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("/usr/local/bin/backup.sh", "backup"),
        ("cd /srv/backup && ./backup.sh --full >/dev/null 2>&1", "backup"),
        ("/usr/bin/python3 -m etl.nightly", "nightly"),
        ("python3 /opt/jobs/sync_photos.py --all", "sync_photos"),
        ("sleep $((RANDOM % 60)); /usr/bin/certbot renew -q", "certbot"),
        ("flock -n /tmp/rsync.lock nice -n 10 rsync -a /a /b", "rsync"),
        ("RESTIC_REPOSITORY=/mnt/r restic backup /home", "restic"),
        ("bash -c 'pg_dump mydb > /tmp/db.sql'", "pg_dump"),
        ("timeout 2h /opt/etl/run-etl", "run-etl"),
        ("cd /tmp", "cron-job"),
    ],
)
def test_a_job_is_named_after_the_program_it_runs(command: str, name: str) -> None:
    assert job_name(command) == name


def test_jobs_that_would_share_a_slug_are_numbered_in_line_order() -> None:
    crontab = parse_crontab("0 1 * * * /a/backup.sh\n0 2 * * * /b/backup.sh\n", "UTC")
    assert [p.slug for p in propose(crontab)] == ["backup", "backup-2"]


def test_a_job_with_a_very_long_name_gets_a_slug_within_the_bound() -> None:
    long = "/opt/" + "x" * 150
    crontab = parse_crontab(f"0 1 * * * {long}\n0 2 * * * {long}\n", "UTC")
    assert [p.slug for p in propose(crontab)] == ["x" * 100, "x" * 98 + "-2"]


def test_cron_tz_changes_the_zone_for_the_lines_after_it() -> None:
    text = "0 1 * * * /bin/a\nCRON_TZ=America/New_York\n0 2 * * * /bin/b\n"
    assert [job.tz for job in parse_crontab(text, "UTC").jobs] == ["UTC", "America/New_York"]


def test_the_system_crontab_user_field_stays_before_the_wrapper() -> None:
    crontab = parse_crontab("17 * * * * root  cd / && run-parts --report /etc/cron.hourly\n",
                            "UTC", system=True)  # fmt: skip
    (proposal,) = propose(crontab)
    assert proposal.slug == "run-parts"
    new = rewrite(crontab, {1: "hb URL"}, [])
    assert new == "17 * * * * root  hb URL -- sh -c 'cd / && run-parts --report /etc/cron.hourly'\n"


def test_the_rewrite_wraps_only_job_lines_and_keeps_the_rest_verbatim() -> None:
    crontab = parse_crontab(CRONTAB, "UTC")
    wrappers = {p.job.line_no: f"W {p.slug}" for p in propose(crontab)}
    new = rewrite(crontab, wrappers, ["HEADER=1"]).splitlines()
    assert new[0] == "HEADER=1"
    old = CRONTAB.splitlines()
    for n, line in enumerate(old, 1):
        if n not in wrappers:
            assert new[n] == line
    assert new[5] == (
        "30 2 * * * W backup -- /bin/bash -c 'cd /srv/backup && ./backup.sh --full >/dev/null 2>&1'"
    )
    assert new[6] == "*/15 9-17 * * mon-fri W nightly -- /usr/bin/python3 -m etl.nightly"
    assert new[7] == "@daily W rotate-logs -- /usr/local/bin/rotate-logs"
    assert (
        new[9] == '0 8 * * 1 W mail -- mail -s "weekly report" root%Hello,%the report is attached.'
    )
    assert new[10] == r"5 4 * * sun W tar -- tar czf /backups/home-$(date +\%F).tgz /home"


def as_cron_runs(line: str) -> tuple[str, bytes]:
    """What cron(8) does with a line's command field: the shell command and the job's stdin."""
    command_field = re.sub(r"^(\S+\s+){5}", "", line)
    parts = re.split(r"(?<!\\)%", command_field)
    command = parts[0].replace("\\%", "%")
    stdin = "\n".join(parts[1:]).replace("\\%", "%")
    return command, stdin.encode()


async def test_a_rewritten_line_run_as_cron_runs_it_reports_to_the_daemon(
    daemon: Daemon, tmp_path: Path
) -> None:
    """Quotes, `;`, a pipe, `\\%` and stdin from `%` all survive the wrapping."""
    await daemon.add("printf")
    line = r"""* * * * * cd /tmp; printf '50\%\% \%s\n' "$(cat)" | tr a-z A-Z%one%two"""
    crontab = parse_crontab(line, "UTC")
    (proposal,) = propose(crontab)
    assert proposal.slug == "printf"
    wrapper = f"{sys.executable} -m heartbeatd run --check {proposal.slug}"
    command, stdin = as_cron_runs(rewrite(crontab, {1: wrapper}, []).strip())
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEATD_")}
    env["HEARTBEATD_SITE_URL"] = str(daemon.client.make_url("/")).rstrip("/")
    env["HEARTBEATD_PING_KEY"] = await daemon.store.ping_key()
    job = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env=env,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(job.communicate(stdin), 30)
    assert job.returncode == 0
    assert out == b"50% ONE\nTWO\n"
    assert await daemon.query("SELECT kind, body FROM pings ORDER BY id") == [
        ("start", None), ("success", out)
    ]  # fmt: skip


def import_crontab(tmp_path: Path, text: str, *args: str) -> tuple[int, str, str]:
    source = tmp_path / "crontab"
    source.write_text(text)
    result = CliRunner().invoke(
        cli,
        [
            "import",
            "crontab",
            str(source),
            "--db",
            str(tmp_path / "hb.db"),
            "--exe",
            "/opt/hb/bin/heartbeatd",
            *args,
        ],
        env={"HEARTBEATD_SITE_URL": "http://mon.lan:8000"},
    )
    return result.exit_code, result.stdout, result.stderr


def test_a_dry_run_prints_the_table_and_the_new_crontab_and_creates_nothing(
    tmp_path: Path,
) -> None:
    code, out, err = import_crontab(tmp_path, CRONTAB, "--tz", "Europe/Berlin")
    assert code == 0, err
    assert re.search(r"^5 +backup +30 2 \* \* \* +Europe/Berlin +cd /srv/backup", err, re.M)
    assert "skipped line 8: @reboot" in err
    assert "Dry run" in err
    lines = out.splitlines()
    assert lines[1:3] == [
        "HEARTBEATD_SITE_URL=http://mon.lan:8000",
        "HEARTBEATD_PING_KEY=<ping-key>",
    ]
    assert (
        "@daily /opt/hb/bin/heartbeatd run --check rotate-logs -- /usr/local/bin/rotate-logs"
        in lines
    )
    assert not (tmp_path / "hb.db").exists()


def test_apply_creates_cron_checks_once_and_prints_the_real_key(tmp_path: Path) -> None:
    code, out, err = import_crontab(
        tmp_path, CRONTAB, "--tz", "Europe/Berlin", "--grace", "2h", "--apply"
    )
    assert code == 0, err
    with sqlite3.connect(tmp_path / "hb.db") as db:
        rows = db.execute("SELECT slug, cron, tz, grace FROM checks ORDER BY id").fetchall()
        key = db.execute("SELECT value FROM meta WHERE key = 'ping_key'").fetchone()[0]
    db.close()
    assert rows == [
        ("backup", "30 2 * * *", "Europe/Berlin", 7200.0),
        ("nightly", "*/15 9-17 * * mon-fri", "Europe/Berlin", 7200.0),
        ("rotate-logs", "0 0 * * *", "Europe/Berlin", 7200.0),
        ("mail", "0 8 * * 1", "Europe/Berlin", 7200.0),
        ("tar", "5 4 * * sun", "Europe/Berlin", 7200.0),
    ]
    assert f"HEARTBEATD_PING_KEY={key}" in out.splitlines()
    assert err.count("created check") == 5

    again, out_again, err_again = import_crontab(
        tmp_path, CRONTAB, "--tz", "Europe/Berlin", "--apply"
    )
    assert again == 0 and out_again == out
    assert err_again.count("reused existing check") == 5
    with sqlite3.connect(tmp_path / "hb.db") as db:
        assert db.execute("SELECT count(*) FROM checks").fetchone() == (5,)
    db.close()


def test_the_hb_form_puts_the_slug_url_in_each_line(tmp_path: Path) -> None:
    code, out, _ = import_crontab(tmp_path, "0 3 * * * /usr/local/bin/backup.sh\n", "--with", "hb",
                                  "--exe", "/usr/local/bin/hb", "--tz", "UTC")  # fmt: skip
    assert code == 0
    url = "http://mon.lan:8000/ping/<ping-key>/backup"
    assert out == f"0 3 * * * /usr/local/bin/hb {url} -- /usr/local/bin/backup.sh\n"


def test_an_unknown_time_zone_is_refused(tmp_path: Path) -> None:
    code, _, err = import_crontab(tmp_path, CRONTAB, "--tz", "Mars/Olympus")
    assert code == 2 and "unknown time zone 'Mars/Olympus'" in err


def test_the_system_zone_comes_from_etc_timezone_then_localtime_then_tz(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    assert system_timezone({}, tmp_path) == "UTC"
    assert system_timezone({"TZ": ":Asia/Tokyo"}, tmp_path) == "Asia/Tokyo"
    (etc / "localtime").symlink_to("/usr/share/zoneinfo/America/Chicago")
    assert system_timezone({"TZ": "Asia/Tokyo"}, tmp_path) == "America/Chicago"
    (etc / "timezone").write_text("Europe/Lisbon\n")
    assert system_timezone({"TZ": "Asia/Tokyo"}, tmp_path) == "Europe/Lisbon"


# -- systemd timers -----------------------------------------------------------------------

TIMER_ROWS = [
    ("NEXT", "LEFT", "LAST", "PASSED", "UNIT", "ACTIVATES"),
    ("Mon 2026-11-23 10:00:00 UTC", "43min left", "Mon 2026-11-23 09:00:00 UTC", "16min ago",
     "logrotate.timer", "logrotate.service"),
    ("Tue 2026-11-24 02:30:00 UTC", "17h left", "Mon 2026-11-23 02:31:12 UTC", "6h ago",
     "backup.timer", "backup.service"),
    ("Mon 2026-11-23 09:31:10 UTC", "14min left", "Sun 2026-11-22 09:31:10 UTC", "23h ago",
     "systemd-tmpfiles-clean.timer", "systemd-tmpfiles-clean.service"),
    ("-", "-", "-", "-", "fstrim.timer", "fstrim.service"),
]  # fmt: skip


def list_timers_output() -> str:
    """What `systemctl list-timers --all --no-pager` prints: columns as wide as their widest."""
    widths = [max(len(row[i]) for row in TIMER_ROWS) for i in range(6)]
    lines = [" ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in TIMER_ROWS]  # fmt: skip
    return "\n".join([*lines, "", "4 timers listed."]) + "\n"


def test_list_timers_output_is_read_by_its_columns() -> None:
    timers = parse_list_timers(list_timers_output())
    assert [(t.unit, t.activates) for t in timers] == [
        ("logrotate.timer", "logrotate.service"),
        ("backup.timer", "backup.service"),
        ("systemd-tmpfiles-clean.timer", "systemd-tmpfiles-clean.service"),
        ("fstrim.timer", "fstrim.service"),
    ]
    assert timers[0].next == datetime(2026, 11, 23, 10, 0) and timers[3].next is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("*-*-* 00:00:00", ("0 0 * * *", None)),
        ("Mon..Fri *-*-* 08:00:00", ("0 8 * * 1-5", None)),
        ("Sat,Sun *-*-* 10:30:00", ("30 10 * * 6,7", None)),
        ("*-*-* *:00/15:00", ("0-59/15 * * * *", None)),
        ("*-*-* 06,18:00:00 Europe/Berlin", ("0 6,18 * * *", "Europe/Berlin")),
        ("*-01,07-01 00:00:00", ("0 0 1 1,7 *", None)),
        ("weekly", ("0 0 * * 1", None)),
        ("*-*-* 02:30:10", None),  # seconds
        ("2027-*-* 00:00:00", None),  # a year
        ("*-*~01 00:00:00", None),  # the month's last day
        ("Sat,Sun *-*-01,15 06:30:00", None),  # systemd: weekday AND day; cron: OR
    ],
)
def test_on_calendar_becomes_cron_where_cron_can_say_it(
    spec: str, expected: tuple[str, str | None] | None
) -> None:
    assert calendar_to_cron(spec) == expected


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize(
    "spec", ["daily", "Mon..Fri 08:00", "*:0/15", "Sat,Sun 10:30", "*-1,7-1 00:00", "06,18:00"]
)
def test_the_cron_fires_when_systemd_would(spec: str) -> None:
    """systemd-analyze's own next elapses against cronsim's for the converted expression."""
    base = "2026-11-23 09:00:00 UTC"
    shown = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=5", f"--base-time={base}", spec],
        capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, check=True,
    ).stdout  # fmt: skip
    normalized = re.search(r"Normalized form: (.*)", shown)
    assert normalized is not None
    converted = calendar_to_cron(normalized[1])
    assert converted is not None
    systemd_times = re.findall(r"(?:Next elapse|Iter\. #\d): \w+ (\S+ \S+) UTC", shown)
    cron_times = CronSim(converted[0], datetime(2026, 11, 23, 9, 0))
    assert [next(cron_times).strftime("%Y-%m-%d %H:%M:%S") for _ in range(5)] == systemd_times


def test_timers_get_their_calendar_as_cron_else_a_period_from_next_and_last() -> None:
    timers = parse_list_timers(list_timers_output())
    shown = "TimersCalendar={ OnCalendar=*-*-* 02:30:00 ; next_elapse=Tue 2026-11-24 02:30:00 UTC }"
    calendars = {"backup.timer": calendar_specs(shown)}
    proposals, skipped = propose_timers(timers, calendars, "Europe/Berlin")
    assert [(p.slug, p.cron, p.period, p.tz) for p in proposals] == [
        ("logrotate", None, 3600.0, "Europe/Berlin"),
        ("backup", "30 2 * * *", None, "Europe/Berlin"),
        ("systemd-tmpfiles-clean", None, 86400.0, "Europe/Berlin"),
    ]
    assert skipped == [("fstrim.timer", "no OnCalendar= heartbeatd can read, and no NEXT and "
                                        "LAST run to measure a period from")]  # fmt: skip


def test_import_systemd_timers_applies_and_prints_drop_ins(tmp_path: Path) -> None:
    source = tmp_path / "timers.txt"
    source.write_text(list_timers_output())
    args = ["import", "systemd-timers", str(source), "--db", str(tmp_path / "hb.db"), "--tz", "UTC"]
    result = CliRunner().invoke(cli, [*args, "--apply"])
    assert result.exit_code == 0, result.stderr
    assert "skipped fstrim.timer" in result.stderr
    assert "OnFailure=heartbeatd-ping@backup.service" in result.stdout.splitlines()
    assert "# /etc/systemd/system/logrotate.service.d/heartbeatd.conf (logrotate.timer)" in (
        result.stdout.splitlines()
    )
    again = CliRunner().invoke(cli, [*args, "--apply"])
    assert again.stderr.count("reused existing check") == 3
    with sqlite3.connect(tmp_path / "hb.db") as db:
        rows = db.execute("SELECT slug, period, cron FROM checks ORDER BY id").fetchall()
    db.close()
    assert rows == [("logrotate", 3600.0, None), ("backup", 86340.0, None),
                    ("systemd-tmpfiles-clean", 86400.0, None)]  # fmt: skip


def test_a_bad_grace_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    code, _, err = import_crontab(tmp_path, CRONTAB, "--tz", "UTC", "--grace", "soon", "--apply")
    assert code == 2 and "--grace" in err
    assert not (tmp_path / "hb.db").exists()
