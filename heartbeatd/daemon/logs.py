"""One-line logs on stderr that journald reads well.

Under systemd (JOURNAL_STREAM is set) each line starts with a `<N>` syslog priority, which
journald turns into the entry's level, and carries no timestamp of its own (journald adds one).
"""

from __future__ import annotations

import logging
import os
import sys

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}".replace("\n", " | ")


class ClientMistakes(logging.Filter):
    """aiohttp logs every malformed request (bad request line, bad headers, a body that breaks
    off or a client that hangs up mid-request) at ERROR with a traceback, so any client could
    fill the log with them. They are the client's mistake: keep them as one debug line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(
            error, HttpProcessingError | web.RequestPayloadError | ConnectionResetError
        ):
            return True
        # The error quotes what the client sent: it goes in as an argument, never as format.
        record.msg, record.args = "%s: %s: %s", (record.getMessage(), type(error).__name__, error)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aiosmtpd (smtp_listen) logs each recipient, a check's secret ping address, at INFO
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(ClientMistakes())
