"""slimkit.core.allocator: the heap thresholds raised inside heap_reuse and restored after."""

from __future__ import annotations

import pytest
import torch

from slimkit.core import allocator


class _FakeMallopt:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


@pytest.fixture
def mallopt(monkeypatch):
    fake = _FakeMallopt()
    monkeypatch.setattr(allocator, "_mallopt", lambda: fake)
    monkeypatch.delenv("SLIMKIT_HEAP_REUSE", raising=False)
    return fake


def test_heap_reuse_raises_then_restores_the_thresholds(mallopt):
    with allocator.heap_reuse() as raised:
        assert raised
        assert mallopt.calls == [(-3, 32 * 2**20), (-1, 2**31 - 1)]
    assert mallopt.calls[2:] == [(-3, 32 * 2**20), (-1, 64 * 2**20)]


def test_heap_reuse_nests_and_restores_once(mallopt):
    with allocator.heap_reuse() as outer:
        with allocator.heap_reuse() as inner:
            assert outer and not inner
        assert len(mallopt.calls) == 2  # the inner exit left the outer's setting alone
    assert len(mallopt.calls) == 4


def test_heap_reuse_restores_on_error(mallopt):
    with pytest.raises(RuntimeError), allocator.heap_reuse():
        raise RuntimeError("calibration failed")
    assert mallopt.calls[-2:] == [(-3, 32 * 2**20), (-1, 64 * 2**20)]
    with allocator.heap_reuse() as raised:  # and the next one raises again
        assert raised


@pytest.mark.parametrize("how", ["env", "argument"])
def test_heap_reuse_can_be_turned_off(mallopt, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("SLIMKIT_HEAP_REUSE", "0")
        ctx = allocator.heap_reuse()
    else:
        ctx = allocator.heap_reuse(enabled=False)
    with ctx as raised:
        assert not raised
    assert mallopt.calls == []


def test_heap_reuse_without_mallopt_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_mallopt", lambda: None)
    monkeypatch.delenv("SLIMKIT_HEAP_REUSE", raising=False)
    with allocator.heap_reuse() as raised:
        assert not raised


def test_heap_reuse_on_this_machine_changes_no_result():
    """On the real C library: the thresholds take, and a computation gives the same bits."""
    x = torch.randn(256, 300, generator=torch.Generator().manual_seed(0))
    before = x.T @ x
    with allocator.heap_reuse():
        inside = x.T @ x
    assert torch.equal(before, inside)
