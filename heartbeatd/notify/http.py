"""What every notifier that speaks HTTP shares: one session, a timeout, status handling.

Statuses decide retries: 2xx is delivered; 408, 425, 429 and 5xx are retried; any other 4xx
means the request itself is wrong (a bad token, a deleted channel) and will stay wrong, so it
fails for good. Error messages name the host, never the URL: some services (Telegram) put the
token in the path, and errors are logged and stored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp

from heartbeatd import __version__
from heartbeatd.notify import NotifyError

RETRIED = {408, 425, 429}
USER_AGENT = f"heartbeatd/{__version__}"


class HttpNotifier:
    """Base for HTTP notifiers: subclasses set name and timeout and call request()."""

    name: str
    timeout: float = 10.0
    _session: aiohttp.ClientSession | None = None

    async def request(self, method: str, url: str, **kwargs: Any) -> bytes:
        """Send one request; return the body of a 2xx answer or raise NotifyError."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        host = urlsplit(url).netloc.rpartition("@")[2]
        try:
            async with self._session.request(
                method, url, timeout=aiohttp.ClientTimeout(total=self.timeout), **kwargs
            ) as response:
                body = await response.read()
        except aiohttp.ClientConnectorError as e:
            raise NotifyError(f"cannot connect to {host}: {e.os_error.strerror or e}") from e
        except aiohttp.ClientError as e:
            raise NotifyError(f"{type(e).__name__} talking to {host}") from e
        if 200 <= response.status < 300:
            return body
        said = body[:200].decode("utf-8", "replace").strip()
        permanent = response.status < 500 and response.status not in RETRIED
        message = f"HTTP {response.status} from {host}" + (f": {said}" if said else "")
        raise NotifyError(message, permanent=permanent)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
