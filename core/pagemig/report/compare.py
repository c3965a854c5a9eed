"""``pagemig compare``: two runs of one scenario and seed, side by side.

The headline figures of a run are read from its result document only, so a compare
table can also be made from two saved JSON files.  Free memory is taken at the end
of the run (after the final ``compact``, when the scenario has one) and, when the
run compacted, also right after its last compaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

from pagemig.mm.pages import NR_ORDERS, PAGE_ALLOC_COSTLY_ORDER, PAGE_SIZE
from pagemig.mm.vmstat import free_pages_at_or_above, unusable_free_index

MIB_PAGES = (1 << 20) // PAGE_SIZE
VMSTAT_HEADLINES = (
    "pgmigrate_success", "pgmigrate_fail", "compact_stall", "compact_success", "compact_fail",
    "compact_daemon_wake", "compact_migrate_scanned", "compact_free_scanned", "compact_isolated",
    "pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct", "pswpout", "pgalloc_fail",
    "balloon_inflate", "balloon_deflate", "balloon_migrate",
)


Value = float | list[float]


def _free_rows(prefix: str, blocks: list[int], pageblock_order: int) -> dict[str, Value]:
    free = free_pages_at_or_above(blocks, 0)
    return {
        f"{prefix}free MiB": free / MIB_PAGES,
        f"{prefix}free MiB in blocks of order >= {PAGE_ALLOC_COSTLY_ORDER}":
            free_pages_at_or_above(blocks, PAGE_ALLOC_COSTLY_ORDER) / MIB_PAGES,
        f"{prefix}free MiB in blocks of order >= {pageblock_order} (pageblock)":
            free_pages_at_or_above(blocks, pageblock_order) / MIB_PAGES,
        f"{prefix}unusable index, order {PAGE_ALLOC_COSTLY_ORDER}":
            unusable_free_index(blocks, PAGE_ALLOC_COSTLY_ORDER) / 1000,
        f"{prefix}unusable index, order {pageblock_order}": unusable_free_index(blocks, pageblock_order) / 1000,
        f"{prefix}free blocks, orders 0-{NR_ORDERS - 1}": [float(n) for n in blocks],
    }


def headline(doc: Mapping[str, Any]) -> dict[str, Value]:
    """The figures a compare shows, by label, in a fixed order.  Free memory at the end
    of the run; also right after the last compaction when the state moved on since."""
    pbo = doc["machine"]["pageblock_order"]
    rows: dict[str, Value] = {}
    end_blocks = doc["samples"][-1]["free_blocks"] if doc["samples"] else None
    if end_blocks is not None:
        rows.update(_free_rows("end: ", end_blocks, pbo))
    if doc["compactions"] and doc["compactions"][-1]["after"]["free_blocks"] != end_blocks:
        rows.update(_free_rows("after last compaction: ", doc["compactions"][-1]["after"]["free_blocks"], pbo))
    mig = doc.get("migration")
    if mig is not None:
        rows["migrated MiB over the run"] = mig["mib"]
        for name, d in mig["driver_pages"].items():
            rows[f"migrated MiB: {name} pages"] = d["mib"]
        rows["migrated MiB: other pages"] = mig["other_mib"]
    vm = doc["vmstat"]
    for k in VMSTAT_HEADLINES:
        rows[f"vmstat {k}"] = vm.get(k, 0)
    rows["vmstat allocstall (all zones)"] = sum(v for k, v in vm.items() if k.startswith("allocstall_"))
    for p in doc["probes"]:
        rows[f"probe {p['name']} (order {p['order']}) failures"] = p["failures"]
        if p.get("success_rate") is not None:
            rows[f"probe {p['name']} (order {p['order']}) success %"] = 100 * p["success_rate"]
    for name, figs in doc["drivers"].items():
        for k, v in figs.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                rows[f"driver {name}: {k}"] = v
    rows["checker ok"] = 1 if doc["checker"].get("ok") else 0
    return rows


def _num(v: Value | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return " ".join(_num(x) for x in v)
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.3f}"


def difference(a: Value | None, b: Value | None) -> Value | None:
    if a is None or b is None:
        return None
    if isinstance(a, list) and isinstance(b, list):
        return [x - y for x, y in zip(a, b, strict=True)]
    if isinstance(a, list) or isinstance(b, list):
        return None
    return a - b


def _signed(v: Value | None) -> str:
    if isinstance(v, list):
        return " ".join(_signed(x) for x in v)
    return ("+" if v is not None and v > 0 else "") + _num(v)


def compare_rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Value | None, Value | None]]:
    ha, hb = headline(a), headline(b)
    labels = list(ha) + [k for k in hb if k not in ha]
    return [(k, ha.get(k), hb.get(k)) for k in labels]


def compare_table(a: Mapping[str, Any], b: Mapping[str, Any], label_a: str, label_b: str) -> Table:
    t = Table(title=f"{a['scenario']['name']}, seed {a['seed']}: A = {label_a}, B = {label_b}",
              title_justify="left", show_edge=False, pad_edge=False)
    t.add_column("figure")
    t.add_column("A", justify="right")
    t.add_column("B", justify="right")
    t.add_column("A - B", justify="right")
    for label, va, vb in compare_rows(a, b):
        style = "bold" if "order >=" in label else None
        t.add_row(label, _num(va), _num(vb), _signed(difference(va, vb)), style=style)
    return t
