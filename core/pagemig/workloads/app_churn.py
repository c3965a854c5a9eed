"""``app_churn``: long-running applications starting and stopping, with mixed orders.

The life of a phone or a desktop: applications arrive at random (a Poisson process
of ``rate``), live an exponentially distributed ``lifetime``, and exit.  Each takes:

* anonymous memory (``rss``, log-normal around the mean), a ``thp`` share of it first
  tried as transparent huge pages (order 9, ``GFP_TRANSHUGE_LIGHT``: no direct
  reclaim, falls back to base pages at once, as a THP fault does);
* page tables for it, and a kernel stack (order 2) per thread;
* unmovable kernel memory (``kernel``) in mixed orders: slab and buffers of order 0,
  1, 2 and 3, shares 50/20/10/20% by pages (kmalloc-8k lives in order-3 slabs);

and frees all of it on exit.  The unmovable pieces land in whatever pageblocks the
fallback rules give them and stay for the application's life: over hours this is
what scatters unmovable memory across a machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from pagemig.api import (
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    GFP_TRANSHUGE_LIGHT,
    Gfp,
    LruOwner,
    Machine,
    PageKind,
    Workload,
    duration_field,
    integer_field,
    pages_field,
    percent_field,
    rate_field,
    table_validator,
)
from pagemig.workloads.base import CompoundOwner, ProcessPool, TrackedOwner

FIELDS = {
    "apps": integer_field(8, "applications running at the start", minimum=0),
    "rate": rate_field("0.1/s", "arrivals of new applications"),
    "lifetime": duration_field("2min", "mean life of an application", positive=True),
    "rss": pages_field("48MiB", "mean anonymous memory of an application", minimum=1),
    "thp": percent_field("30%", "share of rss first tried as transparent huge pages"),
    "threads": integer_field(4, "threads per application (an order-2 kernel stack each)", minimum=1),
    "kernel": pages_field("1MiB", "unmovable kernel memory per application, in mixed orders"),
    "max_apps": integer_field(64, "most applications alive at once", minimum=1),
}
validate = table_validator(FIELDS)

THP_ORDER = 9
STACK_ORDER = 2
KERNEL_ORDERS = ((0, 0.5), (1, 0.2), (2, 0.1), (3, 0.2))  # (order, share of the kernel pages)


@attrs.define
class App:
    end: float
    mm: LruOwner
    pagetables: np.ndarray
    thp: list[int]
    stacks: list[int]
    kernel: dict[int, list[int]]  # order -> slots


class AppChurn(Workload):
    def __init__(self, machine: Machine, options: Mapping[str, Any], rng: np.random.Generator) -> None:
        super().__init__(machine, options, rng)
        n = self.name
        self.procs = ProcessPool(machine, n)
        self.thp = CompoundOwner(machine, f"{n}:thp", PageKind.ANON, GFP_TRANSHUGE_LIGHT, THP_ORDER)
        self.pagetables = TrackedOwner(machine, f"{n}:pagetables", PageKind.PAGETABLE,
                                       GFP_KERNEL_ACCOUNT | Gfp.ZERO)
        self.stacks = CompoundOwner(machine, f"{n}:stacks", PageKind.KERNEL, GFP_KERNEL_ACCOUNT, STACK_ORDER)
        self.kernel = {o: CompoundOwner(machine, f"{n}:kernel_order{o}", PageKind.SLAB_UNRECLAIMABLE,
                                        GFP_KERNEL, o) for o, _ in KERNEL_ORDERS}
        self.apps: list[App] = []
        self.started = 0
        self.exited = 0
        self.refused = 0  # arrivals turned away at max_apps
        self.thp_fallbacks = 0
        self.shortfall = 0

    def start(self, now: float) -> None:
        for _ in range(self.options["apps"]):
            self._launch(now)

    def _launch(self, now: float) -> None:
        o = self.options
        if len(self.apps) >= o["max_apps"]:
            self.refused += 1
            return
        rng = self.rng
        rss = max(1, int(o["rss"] * rng.lognormal(-0.125, 0.5)))
        want_thp = int(rss * o["thp"]) >> THP_ORDER
        thp = self.thp.alloc(want_thp)
        self.thp_fallbacks += want_thp - len(thp)
        base = rss - (len(thp) << THP_ORDER)
        mm = self.procs.get()
        got = len(mm.alloc(base, PageKind.ANON, GFP_HIGHUSER_MOVABLE))
        nr_pt = rss // 512 + 3
        pagetables = self.pagetables.alloc_slots(nr_pt)
        stacks = self.stacks.alloc(o["threads"])
        kernel: dict[int, list[int]] = {}
        for order, share in KERNEL_ORDERS:
            blocks = self.kernel[order].alloc(int(o["kernel"] * share) >> order)
            kernel[order] = [self.kernel[order].slot_of(p) for p in blocks]
        self.shortfall += (base - got) + (nr_pt - len(pagetables))
        self.apps.append(App(end=now + float(rng.exponential(o["lifetime"])), mm=mm, pagetables=pagetables,
                             thp=[self.thp.slot_of(p) for p in thp],
                             stacks=[self.stacks.slot_of(p) for p in stacks], kernel=kernel))
        self.started += 1

    def _exit(self, app: App) -> None:
        self.procs.put(app.mm)
        self.pagetables.free_slots(app.pagetables)
        self.thp.free_slots(app.thp)
        self.stacks.free_slots(app.stacks)
        for order, slots in app.kernel.items():
            self.kernel[order].free_slots(slots)
        self.exited += 1

    def step(self, now: float, dt: float) -> None:
        end = now + dt
        alive = []
        for app in self.apps:
            if app.end < end:
                self._exit(app)
            else:
                alive.append(app)
        self.apps = alive
        for _ in range(int(self.rng.poisson(self.options["rate"] * dt))):
            self._launch(now)

    def stop(self, now: float) -> None:
        for app in self.apps:
            self._exit(app)
        self.apps = []

    def stats(self) -> dict[str, int | float]:
        return {
            "apps_running": len(self.apps),
            "apps_started": self.started,
            "apps_exited": self.exited,
            "apps_refused": self.refused,
            "anon_pages": self.procs.resident_pages(),
            "anon_swapped_pages": self.procs.swapped_pages(),
            "thp_pages": len(self.thp) << THP_ORDER,
            "thp_fallbacks": self.thp_fallbacks,
            "kernel_pages": sum(len(k) << o for o, k in self.kernel.items()),
            "stack_pages": len(self.stacks) << STACK_ORDER,
            "pagetable_pages": len(self.pagetables),
            "alloc_shortfall_pages": self.shortfall,
        }
