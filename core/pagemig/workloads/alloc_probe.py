"""``alloc_probe``: allocations of one order and GFP mask at a steady rate, to ask
"would this allocation succeed now, and what would it cost?".

Order-3 ``GFP_KERNEL`` is what fork needed on the seed's devices (and what failed
after days of uptime); order-9 ``GFP_TRANSHUGE_LIGHT`` asks for a THP.  Each attempt
goes through ``alloc_pages`` with its slow path (reclaim, direct compaction), and
the latency recorded is the simulated cost of that attempt: the fast path's cost
plus whatever the slow path charged to the machine's stall clock.  A success is held
for ``hold`` (0: freed at once) so that a probe does not itself eat memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from pagemig.api import (
    COST_ALLOC_FAST,
    Gfp,
    Machine,
    PageKind,
    ProbeStats,
    Workload,
    duration_field,
    gfp_field,
    order_field,
    rate_field,
    stall_seconds,
    table_validator,
)
from pagemig.workloads.base import CompoundOwner

FIELDS = {
    "order": order_field(3, "allocation order (3: what fork needs for a kernel stack on some devices)"),
    "gfp": gfp_field("GFP_KERNEL", "GFP mask"),
    "rate": rate_field("10/s", "attempts per second of simulated time"),
    "hold": duration_field("0s", "how long a successful allocation is kept before it is freed"),
}
validate = table_validator(FIELDS)


class AllocProbe(Workload):
    def __init__(self, machine: Machine, options: Mapping[str, Any], rng: np.random.Generator) -> None:
        super().__init__(machine, options, rng)
        text, mask = self.options["gfp"]
        order = self.options["order"]
        kind = PageKind.ANON if mask & Gfp.MOVABLE else PageKind.KERNEL
        self.owner = CompoundOwner(machine, f"{self.name}:order{order}", kind, mask, order)
        self.probe = ProbeStats(name=self.name, order=order, gfp=text)
        self.carry = 0.0
        self.held: deque[tuple[float, int]] = deque()

    def step(self, now: float, dt: float) -> None:
        while self.held and self.held[0][0] <= now:
            self.owner.free([self.held.popleft()[1]])
        self.carry += self.options["rate"] * dt
        n = int(self.carry)
        self.carry -= n
        hold = self.options["hold"]
        machine = self.machine
        for _ in range(n):
            before = stall_seconds(machine)
            got = self.owner.alloc(1)
            self.probe.record(bool(got), COST_ALLOC_FAST + stall_seconds(machine) - before)
            if got:
                if hold > 0:
                    self.held.append((now + hold, got[0]))
                else:
                    self.owner.free(got)

    def stop(self, now: float) -> None:
        self.owner.free([pfn for _, pfn in self.held])
        self.held.clear()

    def stats(self) -> dict[str, int | float]:
        return {"attempts": self.probe.attempts, "failures": self.probe.failures, "held": len(self.held)}

    def probes(self) -> list[ProbeStats]:
        return [self.probe]
