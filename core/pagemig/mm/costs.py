"""What kernel work costs in simulated time.

The simulator runs on a simulated clock; the slow path's latency (what an
allocation probe records) is the sum of these per-operation costs.  The figures are
orders of magnitude a kernel engineer would accept for a 2020s x86-64 core, not
measurements of any one machine; docs/architecture.md says so, and they live in
one place so that a study can change them together.
"""

from __future__ import annotations

NS = 1e-9

COST_ALLOC_FAST = 150 * NS  # a fast-path allocation from the free lists
COST_SCAN_PAGE = 15 * NS  # one pfn looked at by a compaction scanner
COST_ISOLATE_PAGE = 60 * NS  # isolating one page (LRU or driver)
COST_MIGRATE_PAGE = 2_000 * NS  # unmap, copy 4 KiB, remap one LRU page
COST_MIGRATE_DRIVER_PAGE = 1_500 * NS  # a driver's migrate_page (its own costs come on top)
COST_RECLAIM_CLEAN = 400 * NS  # dropping one clean page-cache page
COST_WRITEBACK_PAGE = 50_000 * NS  # writing one dirty page before it can be dropped
COST_SWAP_OUT = 3_000 * NS  # compressing one anon page into zram (or queueing it to a swap device)
COST_SWAP_IN = 2_000 * NS
