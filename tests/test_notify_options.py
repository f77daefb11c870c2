"""What every notifier kind's options share (heartbeatd/notify/options.py): a required option left
out, or an option no kind knows, stops start-up naming the option.

Each kind's own wrong values are tested in its module, beside the options that kind accepts.
"""

from __future__ import annotations

import pytest

from heartbeatd.notify.apprise_urls import AppriseNotifier
from heartbeatd.notify.discord import DiscordNotifier
from heartbeatd.notify.gotify import GotifyNotifier
from heartbeatd.notify.matrix import MatrixNotifier
from heartbeatd.notify.ntfy import NtfyNotifier
from heartbeatd.notify.options import OptionError
from heartbeatd.notify.pushover import PushoverNotifier
from heartbeatd.notify.slack import SlackNotifier
from heartbeatd.notify.telegram import TelegramNotifier
from tests import (
    test_notify_apprise,
    test_notify_discord,
    test_notify_gotify,
    test_notify_matrix,
    test_notify_ntfy,
    test_notify_pushover,
    test_notify_slack,
    test_notify_telegram,
)

VALID: dict[type, dict[str, object]] = {
    TelegramNotifier: test_notify_telegram.VALID,
    PushoverNotifier: test_notify_pushover.VALID,
    MatrixNotifier: test_notify_matrix.VALID,
    AppriseNotifier: test_notify_apprise.VALID,
    NtfyNotifier: test_notify_ntfy.VALID,
    GotifyNotifier: test_notify_gotify.VALID,
    DiscordNotifier: test_notify_discord.VALID,
    SlackNotifier: test_notify_slack.VALID,
}


@pytest.mark.parametrize(
    ("kind", "key"), [(kind, key) for kind, options in VALID.items() for key in options]
)
def test_a_missing_required_option_is_named(kind: type, key: str) -> None:
    options = {k: v for k, v in VALID[kind].items() if k != key}
    with pytest.raises(OptionError) as failure:
        kind("notifier", options)
    assert failure.value.key == key and "required" in failure.value.message


@pytest.mark.parametrize("kind", list(VALID))
def test_an_unknown_option_is_named(kind: type) -> None:
    with pytest.raises(OptionError) as failure:
        kind("notifier", {**VALID[kind], "tokn": "x"})
    assert failure.value.key == "tokn" and "unknown option" in failure.value.message
