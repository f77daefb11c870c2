"""The `apprise` notifier: any of the ~100 services Apprise knows, by URL.

Needs the optional extra: `pip install 'heartbeatd[apprise]'`. Each URL is checked at start-up,
so a typo stops heartbeatd instead of losing alerts; mistakes name only the URL's scheme,
because the rest of an Apprise URL is usually a secret.

Apprise sends with blocking I/O, so it runs in this notifier's own threads, never in the event
loop (pings keep being answered while a slow service is being sent to) and never in the loop's
default executor (that one resolves host names for every other notifier). Each URL is sent to
separately: when some fail, the retry goes only to those, so the services that worked do not
get the same alert again on every retry.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import apprise

from heartbeatd.notify import Event, NotifyError
from heartbeatd.notify.options import OptionError, Options

log = logging.getLogger("heartbeatd.notify")

THREADS = 8  # sends at once, as many as the dispatcher starts per notifier
REMEMBERED = 1000  # partly delivered alerts whose delivered URLs are kept for the retry
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")
TYPES = {
    "down": apprise.NotifyType.FAILURE,
    "repeat": apprise.NotifyType.FAILURE,
    "up": apprise.NotifyType.SUCCESS,
    "test": apprise.NotifyType.INFO,
}


class AppriseNotifier:
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        read = Options("apprise", options)
        self.name = name
        # One URL a line, too: what `urls_file` reads from a secrets file.
        lines = (line.strip() for entry in read.str_list("urls") for line in entry.splitlines())
        self.urls: list[str] = [line for line in lines if line]
        self.timeout = read.duration("timeout", 30.0)
        read.done()
        if not self.urls:
            raise OptionError("urls", "expected at least one Apprise URL")
        for number, url in enumerate(self.urls, 1):
            if not apprise.Apprise().add(url):
                raise OptionError("urls", f"{_which(url, number, len(self.urls))}: {_why(url)}")
        self._threads = ThreadPoolExecutor(THREADS, thread_name_prefix=f"heartbeatd-{name}")
        # event key -> indexes of the URLs it reached; filled in from the sending threads
        self._delivered: OrderedDict[str, set[int]] = OrderedDict()

    async def send(self, event: Event) -> None:
        delivered = self._remembered(event)
        todo = [i for i in range(len(self.urls)) if i not in delivered]
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(self._threads, self._notify, i, event, delivered) for i in todo)
        )
        failed = results.count(False)
        if failed:
            raise NotifyError(f"apprise could not deliver to {failed} of {len(self.urls)} URLs")
        self._delivered.pop(event.key, None)

    def _remembered(self, event: Event) -> set[int]:
        """The URLs an earlier attempt at this alert reached. Reminders and tests share their
        key with earlier ones, so for them nothing is remembered."""
        if event.kind not in ("down", "up"):
            return set()
        delivered = self._delivered.setdefault(event.key, set())
        self._delivered.move_to_end(event.key)
        while len(self._delivered) > REMEMBERED:
            self._delivered.popitem(last=False)
        return delivered

    def _notify(self, index: int, event: Event, delivered: set[int]) -> bool:
        """In a worker thread: send to one URL; record success at once, so an attempt that
        outlives the dispatcher's timeout still counts for the retry."""
        service = apprise.Apprise()
        service.add(self.urls[index])
        try:
            ok = bool(
                service.notify(
                    body=event.text(),
                    title=event.summary,
                    notify_type=TYPES.get(event.kind, apprise.NotifyType.INFO),
                    body_format=apprise.NotifyFormat.TEXT,
                )
            )
        except Exception as e:  # a plugin's bug must not escape as something never retried
            log.warning("%s: apprise raised %s sending to URL %d", self.name, type(e).__name__,
                        index + 1)  # fmt: skip
            ok = False
        if ok:
            delivered.add(index)
        return ok

    async def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def _which(url: str, number: int, count: int) -> str:
    scheme, sep, _ = url.partition("://")
    shown = f"the {scheme}:// URL" if sep and SCHEME.fullmatch(scheme) else "a URL"
    return shown if count == 1 else f"{shown} (number {number})"


def _why(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep or not SCHEME.fullmatch(scheme):
        return "not an Apprise URL; expected SCHEME://..., e.g. tgram://TOKEN/CHAT_ID"
    if scheme.lower() not in _known_schemes():
        return "Apprise has no service with this scheme"
    return "Apprise cannot parse it; see the service's page in the Apprise wiki"


def _known_schemes() -> set[str]:
    schemes: set[str] = set()
    for service in apprise.Apprise().details()["schemas"]:
        for key in ("protocols", "secure_protocols"):
            found = service.get(key) or ()
            schemes.update([found] if isinstance(found, str) else found)
    return {scheme.lower() for scheme in schemes}
