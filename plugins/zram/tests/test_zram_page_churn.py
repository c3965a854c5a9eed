"""page_churn swapping into zram: a page reclaim swapped out is still the workload's, and
when the churn frees it its slot goes back to the device.

Memory pressure from elsewhere (another process's demand, here ``reclaim_pages`` of 200
pages each second) swaps 200 of the churn's pages out every second; the churn frees 10%
of what it holds each second, swapped pages included, so the swapped share settles
where 10% of it is 200 pages: about 2,000, half the 4,096-slot device.  Had the
workload forgotten its swapped pages, every one of the 12,000 pages swapped out over
the run would keep its slot and the device would be full within about 20 seconds.
"""

from __future__ import annotations

import numpy as np

from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import MachineConfig, MiB
from pagemig.mm.mm_init import boot
from pagemig.mm.vmscan import background_tick, reclaim_pages
from pagemig.workloads import page_churn
from pagemig_zram.driver import ZramDevice
from pagemig_zram.options import validate_options

SECONDS = 60
PRESSURE = 200  # pages reclaimed each second


def test_page_churn_frees_its_swapped_pages_slots() -> None:
    m = boot(MachineConfig.x86_64_guest(128 * MiB))
    z = ZramDevice(m, validate_options({"disksize": "16MiB"}))
    assert z.capacity == 4096
    opts = dict(page_churn.validate({"size": "64MiB"}))
    opts["name"] = "churn"
    w = page_churn.PageChurn(m, opts, np.random.default_rng(3))
    assert w.lru is not None
    w.start(0.0)
    t = 0.0
    for _ in range(SECONDS):
        m.now = t
        w.step(t, 1.0)
        reclaim_pages(m, PRESSURE)
        background_tick(m, t)
        t += 1.0
        # every slot in use holds a page the workload still has, and nothing else
        assert z.slots_used == m.swap.nr_used == w.lru.nr_swapped
    assert m.vmstat["pswpout"] > 2 * z.capacity  # long enough to fill the device twice over had slots leaked
    assert z.slots_used < z.capacity // 2 + z.capacity // 8 and z.counters["failed_writes"] == 0
    assert w.nr_held() == len(w.lru.pages) + w.lru.nr_swapped
    st = w.stats()
    assert st["pages_held"] == st["target_pages"] and st["shortfall_pages"] == 0  # occupancy kept, swap counted
    assert z.verify() == []
    assert_consistent(m)
    # what is left in swap is the workload's content: freeing it all empties the device
    w.free_random(w.nr_held())
    assert w.nr_held() == 0 and z.slots_used == 0
    assert_consistent(m)
