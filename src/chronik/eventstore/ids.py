"""Event ids: UUIDv7 (RFC 9562), time-ordered so the id index stays compact."""

from __future__ import annotations

import os
import time
from uuid import UUID

__all__ = ["uuid7"]

_RAND_B = (1 << 62) - 1


def uuid7() -> UUID:
    """A new UUIDv7: 48 bits of Unix milliseconds, then 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | ((rand >> 62) & 0xFFF) << 64
        | 0b10 << 62
        | (rand & _RAND_B)
    )
    return UUID(int=value)
