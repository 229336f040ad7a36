"""The test suite."""

import pytest

# The contract suites are plain modules that test files import: rewrite their asserts too, for useful failures.
pytest.register_assert_rewrite("tests.rooms.contract", "tests.rooms.events_contract")
