"""Test doubles that ship with syncd, so that its tests and ``syncd demo`` share them."""

from syncd.testing.hipchat_server import (
    HIPCHAT_LIMITS,
    Attempt,
    Fault,
    HipChatServer,
    Limits,
    Received,
    ServerRoom,
)

__all__ = [
    "HIPCHAT_LIMITS",
    "Attempt",
    "Fault",
    "HipChatServer",
    "Limits",
    "Received",
    "ServerRoom",
]
