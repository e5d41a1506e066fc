"""Test doubles that ship with syncd, so that its tests and ``syncd demo`` share them."""

from syncd.testing.hipchat_contract import (
    HIPCHAT_LIMITS,
    Attempt,
    Fault,
    Limits,
    Received,
    ServerRoom,
)
from syncd.testing.hipchat_server import HipChatServer

__all__ = [
    "HIPCHAT_LIMITS",
    "Attempt",
    "Fault",
    "HipChatServer",
    "Limits",
    "Received",
    "ServerRoom",
]
