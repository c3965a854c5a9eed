"""Memory: bytes of core state per simulated page, and the process's peak memory.

Each machine size is measured in a fresh Python process (``ru_maxrss`` is a
high-water mark, so one process per figure).  Reported:

* the page columns (``pages.nbytes / nr_pages``: the 16-byte budget), the pageblock
  arrays and the free path's pageblock -> zone table, per page;
* the free lists (Python dicts of pfn -> None plus one int object per key) on a
  freshly booted machine and in the worst case for their size: every other page
  free, so that half the pages are order-0 blocks;
* peak RSS after boot, after building that worst case, and after running the
  checker over it, next to the RSS of the interpreter with NumPy and pagemig
  imported and nothing built.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

GiB = 1 << 30


def _measure(size_gib: int) -> dict[str, Any]:
    """Runs in the child process."""
    import gc
    import resource
    import time

    def peak_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    def rss_mib() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    import numpy as np

    from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE
    from pagemig.mm.invariants import check
    from pagemig.mm.machine import Machine, MachineConfig
    from pagemig.mm.owner import Owner
    from pagemig.mm.pages import PageKind

    out: dict[str, Any] = {"imports_peak_mib": peak_mib()}
    started = time.perf_counter()
    m = Machine(MachineConfig.x86_64_guest(size_gib * GiB))
    out["boot_seconds"] = time.perf_counter() - started
    gc.collect()
    nr = m.nr_pages
    out["nr_pages"] = nr
    out["boot_peak_mib"] = peak_mib()
    out["boot_rss_mib"] = rss_mib()
    out["columns_bytes"] = m.pages.nbytes
    out["pageblock_bytes"] = m.buddy.pageblock_mt.nbytes + m.buddy.pageblock_skip.nbytes
    out["block_zone_bytes"] = sys.getsizeof(m.buddy._block_zone)

    def free_list_bytes() -> tuple[int, int]:
        dicts = [d for z in m.zones for per_order in z.free_area for d in per_order]
        keys = sum(len(d) for d in dicts)
        # each key is an int object of its own (28 bytes, a 32-byte pymalloc block) above 256
        return sum(sys.getsizeof(d) for d in dicts) + 32 * keys, keys

    out["free_lists_fresh_bytes"], out["free_blocks_fresh"] = free_list_bytes()

    class Holder(Owner):
        name = "holder"

    holder = Holder()
    m.register_owner(holder)
    # Worst case for the free lists: take everything, then give back every even pfn, a slice
    # at a time, so that the benchmark's own temporaries stay small next to what it measures.
    while len(got := m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, 1 << 20, holder.owner_id, PageKind.ANON)):
        del got
    step = 1 << 20
    for start in range(0, nr, step):
        kind = m.pages.kind[start:start + step]
        even = np.flatnonzero(kind[::2] == PageKind.ANON) * 2 + start
        m.free_pages_bulk(even)
        del kind, even
    gc.collect()
    out["worst_peak_mib"] = peak_mib()
    out["worst_rss_mib"] = rss_mib()
    out["free_lists_worst_bytes"], out["free_blocks_worst"] = free_list_bytes()
    report = check(m)
    out["checker_ok"] = report.ok
    out["checker_peak_mib"] = peak_mib()
    out["free_pages_worst"] = int(report.pages_free)
    assert np.count_nonzero(m.pages.kind == PageKind.FREE) == report.pages_free
    return out


def measure(size_gib: int) -> dict[str, Any]:
    code = f"import json, sys; sys.path.insert(0, {__file__!r}.rsplit('/', 1)[0]); " \
           f"import bench_memory as b; print(json.dumps(b._measure({size_gib})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for size in (1, 4) if quick else (1, 16, 64):
        r = measure(size)
        machine = f"{size} GiB"
        nr = r["nr_pages"]
        rows += [
            {"case": "page columns per page", "machine": machine, "value": r["columns_bytes"] / nr,
             "unit": "B/page", "target": 16, "lower_is_better": True},
            {"case": "pageblock arrays + zone table per page", "machine": machine,
             "value": (r["pageblock_bytes"] + r["block_zone_bytes"]) / nr, "unit": "B/page"},
            {"case": "free lists, fresh boot, per page", "machine": machine,
             "value": r["free_lists_fresh_bytes"] / nr, "unit": "B/page",
             "note": f"{r['free_blocks_fresh']} free blocks"},
            {"case": "free lists, every other page free, per page", "machine": machine,
             "value": r["free_lists_worst_bytes"] / nr, "unit": "B/page",
             "note": f"{r['free_blocks_worst']} order-0 blocks, "
                     f"{r['free_lists_worst_bytes'] / max(1, r['free_blocks_worst']):.0f} B per listed block"},
            {"case": "boot (Machine construction)", "machine": machine, "value": r["boot_seconds"], "unit": "s"},
            {"case": "RSS of python + numpy + pagemig, nothing built", "machine": machine,
             "value": r["imports_peak_mib"], "unit": "MiB"},
            {"case": "peak RSS after boot", "machine": machine, "value": r["boot_peak_mib"], "unit": "MiB",
             "target": 2048 if size == 64 else None, "lower_is_better": True},
            {"case": "peak RSS, every other page free", "machine": machine, "value": r["worst_peak_mib"],
             "unit": "MiB", "target": 2048 if size == 64 else None, "lower_is_better": True},
            {"case": "peak RSS after the checker on that", "machine": machine, "value": r["checker_peak_mib"],
             "unit": "MiB", "target": 2048 if size == 64 else None, "lower_is_better": True,
             "note": "checker ok" if r["checker_ok"] else "CHECKER FAILED"},
        ]
    for row in rows:
        if row.get("target") is None:
            row.pop("target", None)
            row.pop("lower_is_better", None)
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 2:
        print(json.dumps(_measure(int(sys.argv[1])), indent=1))
    else:
        for row in run(quick=False):
            print(row)
