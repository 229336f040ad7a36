"""Fixtures of the domain tests."""

from tests.rooms.clients import rooms

__all__ = ["rooms"]
