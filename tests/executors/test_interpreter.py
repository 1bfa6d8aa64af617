"""The interpreter executor says clearly why it cannot run here and what to use instead."""

from __future__ import annotations

import sys

import pytest

from conveyor.errors import ConfigurationError
from conveyor.executors import create_executor


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="the message differs on 3.14+")
def test_interpreter_executor_names_the_requirement_and_the_fallback():
    with pytest.raises(ConfigurationError) as info:
        create_executor("interpreter", {}, 2)
    message = str(info.value)
    assert "Python 3.14+" in message and f"{sys.version_info[0]}.{sys.version_info[1]}" in message
    assert "executor='process'" in message
