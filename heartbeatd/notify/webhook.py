"""The `webhook` notifier: POST the event as JSON to a URL.

Statuses decide retries: 2xx is delivered; 408, 429 and 5xx are retried; any other 4xx means the
request itself is wrong and will stay wrong, so it is not retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp

from heartbeatd.durations import parse_duration
from heartbeatd.notify import Event, NotifyError, OptionError, option

RETRIED = {408, 425, 429}
KNOWN = {"url", "timeout", "headers"}


class WebhookNotifier:
    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        for key in options:
            if key not in KNOWN:
                raise OptionError(key, f"unknown option; webhook takes {', '.join(sorted(KNOWN))}")
        url = option(options, "url", str)
        if not url or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise OptionError("url", "required: an http:// or https:// URL")
        try:
            self.timeout = parse_duration(options.get("timeout", "10s"))  # type: ignore[arg-type]
        except ValueError as e:
            raise OptionError("timeout", str(e)) from e
        headers = option(options, "headers", dict, {})
        if not all(isinstance(v, str) for v in headers.values()):
            raise OptionError("headers", "every header value must be a string")
        self.name = name
        self.url = url
        self.headers = {"User-Agent": "heartbeatd", **headers}
        self._session: aiohttp.ClientSession | None = None

    async def send(self, event: Event) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self.headers)
        try:
            async with self._session.post(
                self.url, json=event.as_dict(), timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as response:
                if 200 <= response.status < 300:
                    return
                permanent = response.status < 500 and response.status not in RETRIED
                raise NotifyError(f"HTTP {response.status} from {self.url}", permanent=permanent)
        except aiohttp.ClientError as e:
            raise NotifyError(f"{type(e).__name__}: {e}") from e

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
