"""Fixtures of the domain tests."""

from tests.rooms.clients import hub

__all__ = ["hub"]
