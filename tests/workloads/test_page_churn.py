"""page_churn keeps the occupancy it claims: after the fill and the random half freed,
every iteration frees 10% of what is held and allocates as many again."""

from __future__ import annotations

import numpy as np
import pytest

from pagemig.mm.invariants import assert_consistent
from pagemig.mm.pages import PageKind
from pagemig.workloads import page_churn

from .conftest import build, drive


def held(m, kind: PageKind) -> int:  # type: ignore[no-untyped-def]
    return int(np.count_nonzero(m.pages.kind == kind))


def test_occupancy_is_kept(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(256)
    w = build(page_churn.PageChurn, m, page_churn.validate, size="128MiB")
    w.start(0.0)
    w.step(0.0, 1.0)
    fill = 128 * 256
    target = fill - round(fill * 0.5)
    assert held(m, PageKind.ANON) == target
    before = set(w.held().tolist())
    drive(w, m, 20.0)
    assert held(m, PageKind.ANON) == target
    st = w.stats()
    assert st["iterations"] == 20 and st["shortfall_pages"] == 0
    assert st["pages_churned"] == 20 * round(target * 0.1)
    assert len(before & set(w.held().tolist())) < target  # pages did change
    assert_consistent(m)


def test_churn_rate_and_interval(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(128)
    w = build(page_churn.PageChurn, m, page_churn.validate, size="32MiB", churn="25%", interval="2s")
    drive(w, m, 10.0)
    target = w.stats()["target_pages"]
    assert w.stats()["iterations"] == 4  # at 2, 4, 6 and 8 s (the first one comes one interval after the fill)
    assert w.stats()["pages_churned"] == 4 * round(target * 0.25)


def test_unmovable_churn_uses_kernel_pages(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(128)
    w = build(page_churn.PageChurn, m, page_churn.validate, size="16MiB", gfp="GFP_KERNEL")
    drive(w, m, 3.0)
    assert held(m, PageKind.KERNEL) == w.stats()["target_pages"] and held(m, PageKind.ANON) == 0
    assert_consistent(m)


@pytest.mark.parametrize("seed", [1, 2])
def test_seeded_choice(machine, seed: int) -> None:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(2):
        m = machine(128)
        w = build(page_churn.PageChurn, m, page_churn.validate, seed=seed, size="16MiB")
        drive(w, m, 3.0)
        runs.append(np.sort(w.held()))
    assert np.array_equal(runs[0], runs[1])
