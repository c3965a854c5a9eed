"""alloc_probe counts what it claims: attempts at its rate, failures exactly when no
block of its order can be had."""

from __future__ import annotations

import numpy as np
import pytest

from pagemig.mm.costs import COST_ALLOC_FAST
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.pages import PageKind
from pagemig.workloads import alloc_probe

from .conftest import build, drive


def test_attempts_follow_the_rate_and_all_succeed_on_free_memory(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(128)
    w = build(alloc_probe.AllocProbe, m, alloc_probe.validate, order=3, rate="2.5/s")
    drive(w, m, 10.0, dt=0.5)
    (p,) = w.probes()
    assert p.attempts == 25 and p.failures == 0
    d = p.as_dict()
    assert (d["order"], d["gfp"], d["success_rate"]) == (3, "GFP_KERNEL", 1.0)
    assert d["latency_us"]["max"] == pytest.approx(COST_ALLOC_FAST * 1e6)  # the fast path every time
    assert int(np.count_nonzero(m.pages.kind == PageKind.KERNEL)) == 0  # hold 0: freed at once


def test_every_attempt_fails_when_no_block_of_the_order_can_exist(machine) -> None:  # type: ignore[no-untyped-def]
    """Every even page pinned kernel memory, every odd page free (a state loaded as a
    snapshot is): no two free pages are buddies, so no order-1 block can be formed, by
    reclaim or by compaction, and every attempt must fail."""
    m = machine(64)
    kind = np.full(m.nr_pages, PageKind.RESERVED, dtype=np.uint8)
    for z in m.zones:
        span = np.arange(z.start_pfn, z.end_pfn)
        kind[span] = np.where(span % 2 == 0, PageKind.KERNEL, PageKind.FREE)
    free = np.flatnonzero(kind == PageKind.FREE)
    m.load_state(kind, free, np.zeros(len(free), dtype=np.int64),
                 np.zeros(len(m.buddy.pageblock_mt), dtype=np.uint8), pinned=kind == PageKind.KERNEL)
    assert all(z.nr_free_by_order()[1:] == [0] * 10 for z in m.zones)
    w = build(alloc_probe.AllocProbe, m, alloc_probe.validate, order=1, rate="5/s")
    drive(w, m, 4.0)
    (p,) = w.probes()
    assert p.attempts == 20 and p.failures == 20
    assert min(p.latencies) > COST_ALLOC_FAST  # each failure went through the slow path
    assert_consistent(m)


def test_hold_keeps_allocations_for_a_while(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(128)
    w = build(alloc_probe.AllocProbe, m, alloc_probe.validate, order=2, rate="1/s", hold="3s")
    drive(w, m, 5.0)
    assert w.stats()["held"] == 3  # taken at 2, 3 and 4 s; the ones of 0 and 1 s went back
    assert int(np.count_nonzero(m.pages.kind == PageKind.KERNEL)) == 3 << 2
    w.stop(5.0)
    assert int(np.count_nonzero(m.pages.kind == PageKind.KERNEL)) == 0
