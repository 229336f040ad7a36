"""Fixtures of the sans-I/O core's tests: ``side`` runs a test once as the server and once as the client, ``conn``
is an OPEN Connection on that side (its handshake already drained)."""

from __future__ import annotations

import pytest

from signaling.ws.connection import Connection, Side
from tests.ws.helpers import after_handshake


@pytest.fixture(params=[pytest.param(Side.SERVER, id="server"), pytest.param(Side.CLIENT, id="client")])
def side(request: pytest.FixtureRequest) -> Side:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def conn(side: Side) -> Connection:
    return after_handshake(side)
