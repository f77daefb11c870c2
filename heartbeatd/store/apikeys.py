"""Management API keys: how they are made and how they are kept.

A key has the Healthchecks shape (32 characters, `hcw_` read-write or `hcr_` read-only, then
28 random URL-safe characters = 168 bits), because some clients check the length, and the prefix
tells a person which kind of key leaked. Only the key's sha256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_LENGTH = 32
READ_WRITE_PREFIX = "hcw_"
READ_ONLY_PREFIX = "hcr_"


def new_key(read_only: bool) -> str:
    prefix = READ_ONLY_PREFIX if read_only else READ_WRITE_PREFIX
    return prefix + secrets.token_urlsafe(21)  # 21 bytes: 28 characters, 168 bits


def digest(key: str) -> str:
    """The stored form of a key: hex sha256.

    A fast hash is right here, unlike for passwords: a key is 168 random bits, so nobody can
    guess their way to it however many hashes per second they compute, and a slow hash would
    only cost time on every API request.
    """
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()  # bad bytes: 401
