"""Mininet tier: fixtures that fail a test which leaves any of our bridges, veths, host shells or
processes behind (tests.helpers.emu_guard finds and removes them, under the Mininet lock)."""
from __future__ import annotations

import pytest

from tests.helpers.emu_guard import check_clean


@pytest.fixture
def no_leftovers(tmp_path_factory):
    """Function scope: the test (and its finally blocks) must leave nothing behind."""
    yield
    check_clean(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def no_leftovers_module(tmp_path_factory):
    """Module scope, for modules sharing one network through a module fixture."""
    yield
    check_clean(tmp_path_factory.getbasetemp())
