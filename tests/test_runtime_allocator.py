"""The runtime sets the CUDA caching allocator to expandable segments unless the environment configures it."""

from __future__ import annotations

import logging
import os

import pytest
from ftc.runtime.environment import ALLOCATOR_SETTING, ALLOCATOR_VARIABLE, configure_cuda_allocator


def test_expandable_segments_by_default(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(ALLOCATOR_VARIABLE, raising=False)
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    caplog.set_level(logging.INFO, logger="ftc")
    configure_cuda_allocator()
    assert os.environ[ALLOCATOR_VARIABLE] == ALLOCATOR_SETTING == "expandable_segments:True"
    assert "expandable_segments:True" in caplog.text and "override" in caplog.text


@pytest.mark.parametrize("name", [ALLOCATOR_VARIABLE, "PYTORCH_ALLOC_CONF"])
def test_the_users_setting_wins(name: str, monkeypatch: pytest.MonkeyPatch,
                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(ALLOCATOR_VARIABLE, raising=False)
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    monkeypatch.setenv(name, "max_split_size_mb:128")
    caplog.set_level(logging.INFO, logger="ftc")
    configure_cuda_allocator()
    assert os.environ[name] == "max_split_size_mb:128"
    assert name == ALLOCATOR_VARIABLE or ALLOCATOR_VARIABLE not in os.environ
    assert "from the environment" in caplog.text
