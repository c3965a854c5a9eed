"""Counters and fragmentation indexes, and the /proc files a kernel engineer reads them from.

Everything here follows mm/vmstat.c (v5.x-v6.1) to the integer: the fragmentation
index and the unusable free space index are kept x1000 with the kernel's integer
divisions, the proactive-compaction score is ``extfrag_for_order`` (0-100), and the
renderings of ``/proc/buddyinfo``, ``/proc/pagetypeinfo``, ``/proc/vmstat`` and the
debugfs ``extfrag/{unusable_index,extfrag_index}`` files are byte-for-byte the
kernel's ``seq_printf`` formats, so that a tool that parses the real files parses ours.

The formulas are pure functions of a zone's free-block counts per order
(``nr_free[o]``), so they are written once over a sequence of counts and wrapped for
zones; tests feed them hand-worked counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from pagemig.mm.gfp import MIGRATE_PCPTYPES, MIGRATETYPE_NAMES, NR_MIGRATETYPES
from pagemig.mm.pages import MAX_ORDER, NR_ORDERS, PAGE_ALLOC_COSTLY_ORDER
from pagemig.mm.zone import Zone

if TYPE_CHECKING:
    from pagemig.mm.machine import Machine

NODE_ID = 0  # the simulator models one node

# COMPACTION_HPAGE_ORDER (mm/compaction.c): HPAGE_PMD_ORDER with THP, else
# PMD_SHIFT - PAGE_SHIFT.  A PMD maps 2 MiB on every configuration the simulator
# builds (x86-64, and 32-bit ARM whose Linux PMD pairs two 1 MiB sections), so 9.
COMPACTION_HPAGE_ORDER = 9

# /proc/pagetypeinfo caps each free-list walk (pagetypeinfo_showfree_print).
PAGETYPEINFO_FREECOUNT_CAP = 100000

# Event counters the simulator maintains, in the order of enum vm_event_item
# (include/linux/vm_event_item.h, v6.1), so that /proc/vmstat lists them where the
# kernel does.  Per-zone names (pgalloc_*, allocstall_*, pgskip_*) are expanded per zone.
VM_EVENT_ORDER: tuple[str, ...] = (
    "pgpgin", "pgpgout", "pswpin", "pswpout",
    "pgalloc_*", "allocstall_*", "pgskip_*",
    "pgfree", "pgactivate", "pgdeactivate", "pglazyfree", "pgfault", "pgmajfault", "pglazyfreed",
    "pgrefill", "pgreuse", "pgsteal_kswapd", "pgsteal_direct", "pgdemote_kswapd", "pgdemote_direct",
    "pgscan_kswapd", "pgscan_direct", "pgscan_direct_throttle", "pgscan_anon", "pgscan_file",
    "pgsteal_anon", "pgsteal_file", "zone_reclaim_failed", "pginodesteal", "slabs_scanned",
    "kswapd_inodesteal", "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly",
    "pageoutrun", "pgrotated", "drop_pagecache", "drop_slab", "oom_kill",
    "pgmigrate_success", "pgmigrate_fail", "thp_migration_success", "thp_migration_fail",
    "thp_migration_split",
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated", "compact_stall",
    "compact_fail", "compact_success", "compact_daemon_wake", "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned",
    "balloon_inflate", "balloon_deflate", "balloon_migrate",
    "swap_ra", "swap_ra_hit",
)
# Events always printed (as the kernel prints every counter, zero or not); the rest
# of VM_EVENT_ORDER only fixes the position of a counter some module maintains.
ALWAYS_PRINTED: frozenset[str] = frozenset({
    "pswpin", "pswpout", "pgfree",
    "pgmigrate_success", "pgmigrate_fail",
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated", "compact_stall",
    "compact_fail", "compact_success", "compact_daemon_wake", "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned",
})


# ------------------------------------------------------------------ contig_page_info
@attrs.frozen
class ContigPageInfo:
    """``struct contig_page_info``: what ``fill_contig_page_info()`` gathers for one order."""

    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


def fill_contig_page_info(nr_free: Sequence[int], suitable_order: int) -> ContigPageInfo:
    """``fill_contig_page_info()`` over free-block counts per order (orders 0..MAX_ORDER)."""
    _check_order(suitable_order)
    free_pages = 0
    blocks_total = 0
    suitable = 0
    for order, blocks in enumerate(nr_free):
        blocks = int(blocks)
        if blocks < 0:
            raise ValueError(f"nr_free[{order}] = {blocks}: a free-block count cannot be negative")
        blocks_total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return ContigPageInfo(free_pages, blocks_total, suitable)


def _check_order(order: int) -> None:
    if not 0 <= order <= MAX_ORDER:
        raise ValueError(f"order {order} is outside 0..{MAX_ORDER}")


def _counts(source: Zone | Sequence[int]) -> Sequence[int]:
    if isinstance(source, Zone):
        return source.nr_free_by_order()
    return source


def fragmentation_index(source: Zone | Sequence[int], order: int) -> int:
    """``fragmentation_index()`` x1000: towards 0 an allocation of this order would fail
    for lack of memory, towards 1000 for fragmentation; -1000 when it would not fail
    (a suitable block exists); 0 when nothing is free.

    ``1000 - (1000 + free_pages * 1000 / 2^order) / free_blocks_total``, integer divisions.
    """
    info = fill_contig_page_info(_counts(source), order)
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    return 1000 - (1000 + info.free_pages * 1000 // (1 << order)) // info.free_blocks_total


def unusable_free_index(source: Zone | Sequence[int], order: int) -> int:
    """``unusable_free_index()`` x1000: the share of free memory in blocks too small for
    this order.  1000 when nothing is free ("all free memory is unusable")."""
    info = fill_contig_page_info(_counts(source), order)
    if info.free_pages == 0:
        return 1000
    return (info.free_pages - (info.free_blocks_suitable << order)) * 1000 // info.free_pages


def extfrag_for_order(source: Zone | Sequence[int], order: int) -> int:
    """``extfrag_for_order()``: the same share in percent (0-100), 0 when nothing is free.
    This is what proactive compaction calls a zone's fragmentation score."""
    info = fill_contig_page_info(_counts(source), order)
    if info.free_pages == 0:
        return 0
    return (info.free_pages - (info.free_blocks_suitable << order)) * 100 // info.free_pages


def populated_zones(machine: Machine) -> list[Zone]:
    """``populated_zone()``: zones with present pages (the walk every /proc file does)."""
    return [z for z in machine.zones if z.present_pages > 0]


def node_present_pages(machine: Machine) -> int:
    return sum(z.present_pages for z in machine.zones)


def fragmentation_score_zone(zone: Zone) -> int:
    """``fragmentation_score_zone()``: extfrag at COMPACTION_HPAGE_ORDER."""
    return extfrag_for_order(zone, COMPACTION_HPAGE_ORDER)


def fragmentation_score_zone_weighted(machine: Machine, zone: Zone) -> int:
    """``fragmentation_score_zone_weighted()``: the zone's score scaled by its share of
    the node, ``present * score / (node_present + 1)``, so that small zones (DMA) never
    drive proactive compaction on their own."""
    return zone.present_pages * fragmentation_score_zone(zone) // (node_present_pages(machine) + 1)


def fragmentation_score_node(machine: Machine) -> int:
    """``fragmentation_score_node()``: the sum of the weighted zone scores (0-100)."""
    return sum(fragmentation_score_zone_weighted(machine, z) for z in populated_zones(machine))


@attrs.frozen
class ExtfragInfo:
    """One zone's fragmentation figures at one order, for reports."""

    zone: str
    order: int
    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int
    fragmentation_index: int
    unusable_index: int

    def as_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


def extfrag_info(machine: Machine, order: int) -> list[ExtfragInfo]:
    """Every populated zone's contig info and both indexes at ``order``."""
    out = []
    for zone in populated_zones(machine):
        counts = zone.nr_free_by_order()
        info = fill_contig_page_info(counts, order)
        out.append(ExtfragInfo(zone.name, order, info.free_pages, info.free_blocks_total,
                               info.free_blocks_suitable, fragmentation_index(counts, order),
                               unusable_free_index(counts, order)))
    return out


# ------------------------------------------------------------------ report helpers
def free_blocks_by_order(machine: Machine) -> dict[str, list[int]]:
    """``/proc/buddyinfo`` as data: zone name -> free blocks per order 0..MAX_ORDER."""
    return {z.name: z.nr_free_by_order() for z in populated_zones(machine)}


def free_pages_at_or_above(counts: Sequence[int], order: int) -> int:
    """Free pages that sit in blocks of ``order`` or larger."""
    return sum(int(n) << o for o, n in enumerate(counts) if o >= order)


def free_fraction_at_or_above(per_zone_counts: Iterable[Sequence[int]], order: int) -> float:
    """The share of free memory (summed over the zones given) that sits in blocks of
    ``order`` or larger; 1.0 when nothing is free (no free memory is stranded)."""
    rows = [list(r) for r in per_zone_counts]
    total = sum(free_pages_at_or_above(r, 0) for r in rows)
    if total == 0:
        return 1.0
    return sum(free_pages_at_or_above(r, order) for r in rows) / total


def machine_free_fraction_at_or_above(machine: Machine, order: int) -> float:
    """:func:`free_fraction_at_or_above` over every zone of the machine."""
    return free_fraction_at_or_above(free_blocks_by_order(machine).values(), order)


# ------------------------------------------------------------------ /proc renderings
def _c_div(a: int, b: int) -> int:
    """C's integer division (truncates towards zero), for the "%d.%03d" of negative indexes."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _c_mod(a: int, b: int) -> int:
    return a - b * _c_div(a, b)


# The /proc texts.  Each file has a formatter over plain figures (what a result document
# keeps, so that a saved run prints the same bytes as a live machine) and a ``render_*``
# wrapper that reads them off a machine.  A zone row is (zone name, its figures).

ZoneCounts = tuple[str, Sequence[int]]


def format_buddyinfo(zones: Iterable[ZoneCounts]) -> str:
    """``/proc/buddyinfo`` (``frag_show_print``): ``Node %d, zone %8s `` then ``%6lu `` per order."""
    return "".join(f"Node {NODE_ID}, zone {name:>8s} " + "".join(f"{n:6d} " for n in counts) + "\n"
                   for name, counts in zones)


def render_buddyinfo(machine: Machine) -> str:
    return format_buddyinfo((z.name, z.nr_free_by_order()) for z in populated_zones(machine))


def _freecount(n: int) -> str:
    # pagetypeinfo_showfree_print: the walk stops at 100000 entries and prints ">100000"
    if n >= PAGETYPEINFO_FREECOUNT_CAP:
        return f">{PAGETYPEINFO_FREECOUNT_CAP:6d} "
    return f"{n:6d} "


def pageblock_counts(machine: Machine, zone: Zone) -> list[int]:
    """``pagetypeinfo_showblockcount_print``: pageblocks per migratetype, walking the zone
    from its start pfn in pageblock steps (so a zone that starts mid-pageblock counts
    the pageblock it starts in)."""
    counts = [0] * NR_MIGRATETYPES
    mt = machine.buddy.pageblock_mt
    pbo = machine.pageblock_order
    for pfn in range(zone.start_pfn, zone.end_pfn, 1 << pbo):
        t = int(mt[pfn >> pbo])
        if t < NR_MIGRATETYPES:
            counts[t] += 1
    return counts


def node_free_blocks(machine: Machine) -> list[int]:
    """Free blocks per order summed over the zones."""
    total = [0] * NR_ORDERS
    for zone in machine.zones:
        for o, n in enumerate(zone.nr_free_by_order()):
            total[o] += n
    return total


def indexes(blocks: list[int]) -> dict[str, list[int]]:
    """Both of mm/vmstat.c's indexes (x1000) at every order, from free-block counts."""
    return {
        "fragmentation_index": [fragmentation_index(blocks, o) for o in range(NR_ORDERS)],
        "unusable_index": [unusable_free_index(blocks, o) for o in range(NR_ORDERS)],
    }


def zone_free_by_type(zone: Zone) -> dict[str, list[int]]:
    """``/proc/pagetypeinfo``'s free counts: per migratetype, free blocks per order."""
    return {MIGRATETYPE_NAMES[mt]: zone.nr_free_by_type(mt) for mt in range(NR_MIGRATETYPES)
            if mt < MIGRATE_PCPTYPES or any(zone.nr_free_by_type(mt))}


def zone_pageblocks(machine: Machine, zone: Zone) -> dict[str, int]:
    """``/proc/pagetypeinfo``'s second table: pageblocks of each migratetype in a zone."""
    counts = pageblock_counts(machine, zone)
    return {MIGRATETYPE_NAMES[mt]: n for mt, n in enumerate(counts) if mt < MIGRATE_PCPTYPES or n}


def free_state(machine: Machine, *, pagetypes: bool = False) -> dict[str, Any]:
    """Free memory as the simulator's samples and compaction records hold it: node-wide free blocks per
    order, both indexes per order, the free pages in blocks of order >= 3 and >=
    pageblock order, and the same per zone; with ``pagetypes``, each zone's
    /proc/pagetypeinfo counts too (free blocks per migratetype, pageblocks per type)."""
    blocks = node_free_blocks(machine)
    zones = {}
    for zone in machine.zones:
        zb = zone.nr_free_by_order()
        zones[zone.name] = {"free_blocks": zb, "free_pages": zone.free_pages, **indexes(zb)}
        if pagetypes:
            zones[zone.name]["free_by_type"] = zone_free_by_type(zone)
            zones[zone.name]["pageblocks"] = zone_pageblocks(machine, zone)
    return {
        "free_pages": machine.nr_free_pages,
        "free_blocks": blocks,
        **indexes(blocks),
        "free_pages_order_ge_3": free_pages_at_or_above(blocks, PAGE_ALLOC_COSTLY_ORDER),
        "free_pages_order_ge_pageblock": free_pages_at_or_above(blocks, machine.pageblock_order),
        "zones": zones,
    }


@attrs.frozen
class ZonePagetypes:
    """One zone's part of /proc/pagetypeinfo: free blocks per migratetype and order, and
    pageblocks per migratetype (both indexed by the migratetype's number)."""

    name: str
    free_by_type: Sequence[Sequence[int]]
    pageblocks: Sequence[int]


def format_pagetypeinfo(pageblock_order: int, zones: Sequence[ZonePagetypes],
                        migratetypes: int = NR_MIGRATETYPES) -> str:
    """``/proc/pagetypeinfo``: pageblock order, free counts per zone x migratetype x order,
    then pageblocks per migratetype per zone.  (The mixed-count section exists only
    with CONFIG_PAGE_OWNER, which the simulated kernel does not have.)

    ``migratetypes`` is the kernel's MIGRATE_TYPES: 6 with CONFIG_CMA and
    CONFIG_MEMORY_ISOLATION (a distribution's x86-64 kernel), 4 without them (User-Mode
    Linux), which prints only Unmovable, Movable, Reclaimable and HighAtomic."""
    if not 1 <= migratetypes <= NR_MIGRATETYPES:
        raise ValueError(f"migratetypes must be 1..{NR_MIGRATETYPES}, not {migratetypes}")
    out = [f"Page block order: {pageblock_order}\n", f"Pages per block:  {1 << pageblock_order}\n", "\n"]
    out.append(f"{'Free pages count per migrate type at order':<43s} "
               + "".join(f"{o:6d} " for o in range(NR_ORDERS)) + "\n")
    for zone in zones:
        for mt in range(migratetypes):
            row = "".join(_freecount(n) for n in zone.free_by_type[mt])
            out.append(f"Node {NODE_ID:4d}, zone {zone.name:>8s}, type {MIGRATETYPE_NAMES[mt]:>12s} {row}\n")
    out.append(f"\n{'Number of blocks type ':<23s}"
               + "".join(f"{n:>12s} " for n in MIGRATETYPE_NAMES[:migratetypes]) + "\n")
    for zone in zones:
        row = "".join(f"{n:12d} " for n in zone.pageblocks[:migratetypes])
        out.append(f"Node {NODE_ID}, zone {zone.name:>8s} {row}\n")
    return "".join(out)


def render_pagetypeinfo(machine: Machine, migratetypes: int = NR_MIGRATETYPES) -> str:
    zones = [ZonePagetypes(z.name, [z.nr_free_by_type(mt) for mt in range(NR_MIGRATETYPES)],
                           pageblock_counts(machine, z)) for z in populated_zones(machine)]
    return format_pagetypeinfo(machine.pageblock_order, zones, migratetypes)


def _format_index_file(zones: Iterable[ZoneCounts], index: Callable[[Sequence[int], int], int],
                       cell: Callable[[int], str]) -> str:
    """The debugfs ``extfrag`` files' common shape: a line per populated zone, a cell per
    order of ``index`` (x1000) of the zone's free-block counts."""
    return "".join(f"Node {NODE_ID}, zone {name:>8s} "
                   + "".join(cell(index(counts, order)) for order in range(NR_ORDERS)) + "\n"
                   for name, counts in zones)


def format_unusable_index(zones: Iterable[ZoneCounts]) -> str:
    """debugfs ``extfrag/unusable_index`` (``unusable_show_print``): ``%d.%03d `` per order."""
    return _format_index_file(zones, unusable_free_index, lambda i: f"{i // 1000}.{i % 1000:03d} ")


def format_extfrag_index(zones: Iterable[ZoneCounts]) -> str:
    """debugfs ``extfrag/extfrag_index`` (``extfrag_show_print``): ``%2d.%03d `` per order,
    with C's truncating division (so -1000 prints as ``-1.000``: the kernel's answer for
    an order at which a free block exists, so that an allocation would succeed now)."""
    return _format_index_file(zones, fragmentation_index,
                              lambda i: f"{_c_div(i, 1000):2d}.{abs(_c_mod(i, 1000)):03d} ")


def render_unusable_index(machine: Machine) -> str:
    return format_unusable_index((z.name, z.nr_free_by_order()) for z in populated_zones(machine))


def render_extfrag_index(machine: Machine) -> str:
    return format_extfrag_index((z.name, z.nr_free_by_order()) for z in populated_zones(machine))


def vmstat_items(machine: Machine) -> list[tuple[str, int]]:
    """``/proc/vmstat`` as (name, value) pairs in the kernel's order: the page-state gauges
    first, then the event counters in ``vm_event_item`` order (the compaction, migration
    and swap counters always, at zero if nothing happened), then any other counter a
    module keeps, by name."""
    values = machine.read_vmstat()
    gauges = [(k, int(v)) for k, v in values.items() if k.startswith("nr_")]
    events = {k: int(v) for k, v in values.items() if not k.startswith("nr_")}
    zone_suffixes = [z.name.lower() for z in machine.zones]
    ordered: list[tuple[str, int]] = []
    seen: set[str] = set()
    for name in VM_EVENT_ORDER:
        names = [name[:-1] + s for s in zone_suffixes] if name.endswith("*") else [name]
        for n in names:
            if n in events or n in ALWAYS_PRINTED or (name.endswith("*") and name.startswith("pgalloc")):
                ordered.append((n, events.get(n, 0)))
                seen.add(n)
    rest = sorted((k, v) for k, v in events.items() if k not in seen)
    return gauges + ordered + rest


def format_vmstat(items: Iterable[tuple[str, int]]) -> str:
    """``/proc/vmstat``: ``name value`` per line."""
    return "".join(f"{k} {v}\n" for k, v in items)


def render_vmstat(machine: Machine) -> str:
    return format_vmstat(vmstat_items(machine))


__all__ = [
    "COMPACTION_HPAGE_ORDER",
    "ContigPageInfo",
    "ExtfragInfo",
    "ZonePagetypes",
    "extfrag_for_order",
    "extfrag_info",
    "fill_contig_page_info",
    "format_buddyinfo",
    "format_extfrag_index",
    "format_pagetypeinfo",
    "format_unusable_index",
    "format_vmstat",
    "fragmentation_index",
    "fragmentation_score_node",
    "fragmentation_score_zone",
    "fragmentation_score_zone_weighted",
    "free_blocks_by_order",
    "free_fraction_at_or_above",
    "free_pages_at_or_above",
    "machine_free_fraction_at_or_above",
    "render_buddyinfo",
    "render_extfrag_index",
    "render_pagetypeinfo",
    "render_unusable_index",
    "render_vmstat",
    "unusable_free_index",
    "vmstat_items",
]
