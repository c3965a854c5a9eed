"""The built-in workloads, registered through ``pagemig_register_workloads`` like a
third party's: the core uses its own extension point, so it is known to work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pagemig.api import WorkloadInfo, hookimpl


@hookimpl
def pagemig_register_workloads(register: Callable[[Any], None]) -> None:
    from pagemig.workloads import alloc_probe, app_churn, frag, kernel_build, page_churn

    register(WorkloadInfo("kernel_build", kernel_build.KernelBuild,
                          "make -jN: compiler processes (anon, page tables, stacks, slab) and a page cache "
                          "that grows until reclaim takes it back", kernel_build.validate))
    register(WorkloadInfo("app_churn", app_churn.AppChurn,
                          "applications starting and stopping: anon with THP, stacks, kernel memory of "
                          "orders 0-3", app_churn.validate))
    register(WorkloadInfo("frag", frag.Frag,
                          "fill memory with movable pages, then free all but 1 of every 4 (the kernel's "
                          "proactive-compaction evaluation)", frag.validate))
    register(WorkloadInfo("page_churn", page_churn.PageChurn,
                          "fill with order-0 pages, free a random half, then free and reallocate 10% per "
                          "iteration (the LLFree benchmark)", page_churn.validate))
    register(WorkloadInfo("alloc_probe", alloc_probe.AllocProbe,
                          "allocations of one order and GFP mask at a rate: success, failure and latency",
                          alloc_probe.validate))
