"""reclaim.Reclaimer: memory is reclaimed once the live count fell by RECLAIM_AFTER and stopped falling."""

from __future__ import annotations

import gc
import platform

import pytest

from zocket_django.reclaim import Reclaimer


def test_reclaims_only_after_a_mass_went_away(monkeypatch: pytest.MonkeyPatch) -> None:
    collected: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *a: collected.append(1) or 0)
    reclaimer = Reclaimer(after=100)
    reclaimer._trim = None
    assert not any(reclaimer.tick(n) for n in (10, 500, 450, 401))  # up to 500, down by 99
    assert not reclaimer.tick(300) and collected == []  # down by 200, still falling
    assert reclaimer.tick(300) and collected == [1]  # stopped falling: once
    assert not reclaimer.tick(300) and not reclaimer.tick(250) and collected == [1]  # the mark is now 300
    assert not reclaimer.tick(1000) and not reclaimer.tick(900)
    assert reclaimer.tick(900) and collected == [1, 1]


def test_malloc_trim_is_found_on_glibc_and_absent_elsewhere() -> None:
    trim = Reclaimer()._trim
    assert (trim is not None) == (platform.libc_ver()[0] == "glibc")
    if trim is not None:
        assert trim() in (0, 1)  # glibc: 1 if memory was given back to the system, else 0
