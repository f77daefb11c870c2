"""What every notifier that speaks HTTP shares: one session, a timeout, status handling.

Statuses decide retries: 2xx is delivered; 408, 425, 429 and 5xx are retried; any other 4xx
means the request itself is wrong (a bad token, a deleted channel) and will stay wrong, so it
fails for good. Error messages name the host, never the URL: some services (Telegram) put the
token in the path, and errors are logged and stored. What a service answers may quote what it
was sent (Express's 404 page reads "Cannot POST /hooks/<token>"), so the URL's parts and the
headers' values are hidden in it. A service's answer is kept parsed on the error, so each
notifier needs only a small picker for the service's own words (`explained`).
A 429 or 503 with a Retry-After header puts that wait on the error: the dispatcher does not
retry sooner, since an early retry only meets the same limit.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp

from heartbeatd import __version__
from heartbeatd.core.durations import format_duration
from heartbeatd.core.redact import host as host_of
from heartbeatd.notify import NotifyError

RETRIED = {408, 425, 429}
SAYS_WHEN = {429, 503}  # the statuses whose Retry-After header means "not before then"
TIMEOUT_MARGIN = 1.0  # the dispatcher's limit is the request's own plus this
SAID_LIMIT = 200  # characters of a service's answer quoted in an error
READ_LIMIT = 65536  # bytes of an answer kept on the error: where secrets are looked for
USER_AGENT = f"heartbeatd/{__version__}"
PUBLIC_HEADERS = frozenset({"content-type", "accept"})  # say what the body is, never a secret
TOKEN_LENGTH = 8  # a URL part or header word this long may be a token; shorter ones are words

Secrets = list[tuple[str, str]]  # (name shown instead, secret)

Picker = Callable[[dict[str, Any]], object]  # one notifier's reading of its service's JSON


class ServiceRefused(NotifyError):
    """The service answered with an error status.

    `head` says who and how ("HTTP 401 from api.telegram.org"); `said` is the whole body as
    text and `answer` the body parsed as JSON (None when it is not JSON), for a notifier to
    pick the service's own words from. `sent` is what the request carried that may be
    secret. The message quotes only the start of `said`, so secrets are hidden in all of it
    first: a secret cut in two would go unrecognised.
    """

    def __init__(
        self,
        head: str,
        said: str,
        answer: Any,
        permanent: bool = False,
        retry_after: float | None = None,
        sent: Secrets | None = None,
    ) -> None:
        self.sent = sent or []
        message = _message(head, _hidden(said, self.sent), retry_after)
        super().__init__(message, permanent, retry_after)
        self.head = head
        self.said = said
        self.answer = answer


class HttpNotifier:
    """Base for HTTP notifiers: subclasses set name and limit and call request().

    `limit` bounds the whole request (connecting, sending, reading the answer). The dispatcher
    waits `timeout`, a little longer, so that a silent service fails here, with its host
    named, rather than there as a bare TimeoutError.
    """

    name: str
    limit: float = 10.0
    _session: aiohttp.ClientSession | None = None

    @property
    def timeout(self) -> float:
        return self.limit + TIMEOUT_MARGIN

    async def request(self, method: str, url: str, **kwargs: Any) -> bytes:
        """Send one request; return the body of a 2xx answer, else raise ServiceRefused (the
        service answered) or NotifyError (it could not be reached, or did not answer)."""
        if self._session is None:
            # No cookie jar: a service's cookie must not ride along on the next alert (for
            # another check, perhaps to another service on the same host), and it spares each
            # request the jar's matching.
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=self.limit),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        host = host_of(url)
        try:
            async with self._session.request(method, url, **kwargs) as response:
                body = await response.read()
        except (TimeoutError, aiohttp.ClientError) as e:
            message = _unreachable(e, host, self.limit)
            _forget(e)
            raise NotifyError(message) from None
        if 200 <= response.status < 300:
            return body
        raise ServiceRefused(
            f"HTTP {response.status} from {host}",
            body[:READ_LIMIT].decode("utf-8", "replace").strip(),
            _json(body),
            permanent=response.status < 500 and response.status not in RETRIED,
            retry_after=retry_after(response.headers) if response.status in SAYS_WHEN else None,
            sent=sent_secrets(url, kwargs.get("headers")),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _unreachable(error: BaseException, host: str, limit: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer from {host} within {format_duration(limit)}"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect to {host}: {error.os_error.strerror or error}"
    return f"{type(error).__name__} talking to {host}"


def _forget(error: BaseException | None) -> None:
    """Drop the frames an error and its causes hold. A failed aiohttp request leaves ~80
    objects in reference cycles through them (the request body among them), which only the
    cyclic collector frees; with a dead target retried all day they piled up between its
    rounds and fragmented the heap (a soak's RSS grew 5 MB in 7 minutes with a dead target,
    0.9 MB without). Our error keeps the text, which is all anyone reads."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if error.__traceback__ is not None:
            traceback.clear_frames(error.__traceback__)
        error.__traceback__ = None
        error = error.__cause__ or error.__context__


def explained(
    error: NotifyError,
    words: Picker | None = None,
    secrets: Mapping[str, str] | None = None,
    wait: Picker | None = None,
) -> NotifyError:
    """`error` as a person should read it: the service's own words (what `words` picks from its
    JSON answer) instead of the raw JSON, how long it asked us to wait (what `wait` picks, else
    its Retry-After header), and every secret replaced by its name: `{"bot_token": token}`
    shows `<bot_token>`, even where a service echoes what it was sent."""
    hide = list((secrets or {}).items())
    if not isinstance(error, ServiceRefused):
        return NotifyError(_hidden(str(error), hide), error.permanent, error.retry_after)
    said, retry_after = error.said, error.retry_after
    if isinstance(error.answer, dict):
        picked = words(error.answer) if words is not None else None
        asked = wait(error.answer) if wait is not None else None
        if isinstance(asked, int | float) and not isinstance(asked, bool) and asked >= 0:
            retry_after = float(asked)
        if isinstance(picked, str) and picked.strip():
            said = picked.strip()
    # The notifier's names first: `<bot_token>` says more than `<url path>`.
    message = _message(error.head, _hidden(_hidden(said, hide), error.sent), retry_after)
    return NotifyError(message, error.permanent, retry_after)


def sent_secrets(url: str, headers: Mapping[str, str] | None) -> Secrets:
    """What a request carried that may be secret: the URL, its path and query and each part of
    them long enough to be a token, its userinfo, and each header's value (and the words of
    it: `Bearer <token>`) but Content-Type's and Accept's."""
    parts = urlsplit(url)
    found = [("url", url), ("url path", url.partition(parts.netloc)[2])]
    pieces = [*parts.path.split("/"), *(v for _, v in parse_qsl(parts.query)), parts.password]
    found += [("url part", piece) for piece in pieces if piece and len(piece) >= TOKEN_LENGTH]
    for name, value in (headers or {}).items():
        if name.lower() not in PUBLIC_HEADERS:
            words = [value, *value.split()]
            found += [(name, word) for word in words if len(word) >= TOKEN_LENGTH]
    return found


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds: given as seconds, or as a date that is measured against the
    answer's own Date header rather than our clock, which may disagree with the server's."""
    value = headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        wait = parsedate_to_datetime(value) - parsedate_to_datetime(headers["Date"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(wait.total_seconds(), 0.0)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _hidden(text: str, secrets: Secrets) -> str:
    """`text` with each secret replaced by its name, longest first: one secret may contain
    another. A path of "/" alone is no secret; replaced, it would garble every message."""
    for name, secret in sorted(secrets, key=lambda named: -len(named[1])):
        if len(secret) > 1:
            text = text.replace(secret, f"<{name}>")
    return text


def _message(head: str, said: str, retry_after: float | None) -> str:
    """What the service said, its start only, and when it asked to be tried again."""
    if len(said) > SAID_LIMIT:
        said = said[: SAID_LIMIT - 1] + "…"
    message = f"{head}: {said}" if said else head
    if retry_after is not None and "retry after" not in message.lower():
        message += f" (retry after {format_duration(retry_after)})"
    return message
