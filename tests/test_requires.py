"""``requires.require_module``: optional test dependencies skip locally and fail under CI=true."""

from __future__ import annotations

import pytest

from requires import require_module

MISSING = "conveyor_test_no_such_module"


def test_a_missing_module_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        require_module(MISSING, "pip install it")


def test_a_missing_module_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="pip install it"):
        require_module(MISSING, "pip install it")


def test_a_present_module_is_returned() -> None:
    assert require_module("json", "stdlib").dumps([1]) == "[1]"
