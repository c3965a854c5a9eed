"""The run's summary on stdout, for a kernel engineer reading at a glance.

Figures are printed the way the kernel prints them: buddyinfo lines in
``/proc/buddyinfo``'s format, fragmentation and unusable indexes as debugfs
``extfrag/`` shows them (``%d.%03d``), counters under their /proc/vmstat names.
Everything is computed from the result document (``RunResult.as_dict()``), so a
saved JSON file can be summarised again without running anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from pagemig.mm.pages import NR_ORDERS, PAGE_SIZE
from pagemig.mm.vmstat import format_buddyinfo
from pagemig.sim.units import format_duration

MIB_PAGES = (1 << 20) // PAGE_SIZE


def mib(pages: float) -> str:
    return f"{pages / MIB_PAGES:,.1f}"


def index_text(value: int) -> str:
    """An index x1000 as debugfs prints it: ``%d.%03d`` with C's truncating division."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    return f"{sign}{v // 1000}.{v % 1000:03d}"


def buddyinfo_lines(zones: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``/proc/buddyinfo`` lines of a recorded state's zones."""
    return format_buddyinfo((name, z["free_blocks"]) for name, z in zones.items()).splitlines()


INDEX_LEGEND = ("extfrag index, as debugfs prints it: -1.000 means a free block of that order exists, "
                "so an allocation of that order would succeed now (the kernel's fragmentation_index answer); "
                "otherwise towards 0.000 a failure would be for lack of memory, towards 1.000 for fragmentation. "
                "unusable index: the share of free memory in blocks smaller than the order.")


def _header(doc: Mapping[str, Any]) -> Text:
    sc = doc["scenario"]
    m = doc["machine"]
    zones = ", ".join(f"{z['name']} {mib(z['spanned_pages'])} MiB" for z in m["zones"])
    t = doc["timings"]
    head = Text()
    head.append(f"pagemig {doc['pagemig_version']}", style="bold")
    head.append(f"  scenario {sc['name']}  seed {doc['seed']}\n")
    head.append(f"machine: {mib(m['nr_pages'])} MiB ({zones}), pageblock order {m['pageblock_order']}, "
                f"min_free_kbytes {m['sysctl']['min_free_kbytes']}, "
                f"compaction_proactiveness {m['sysctl']['compaction_proactiveness']}\n")
    ran = ", ".join(f"{w['name']} ({w['type']})" for w in sc["workloads"]) or "none"
    drv = ", ".join(f"{n} (movable={str(d['movable']).lower()})" for n, d in sc["drivers"].items()) or "none"
    head.append(f"workloads: {ran}; drivers: {drv}\n")
    head.append(f"simulated {format_duration(sc['duration_s'])} in {t.get('total_s', 0):.2f} s wall")
    return head


def _compaction_table(c: Mapping[str, Any], pageblock_order: int) -> Table:
    b, a = c["before"], c["after"]
    title = f"compaction #{c['index']}: {c['trigger']} at {format_duration(c['time_s'])}"
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False,
              caption=INDEX_LEGEND, caption_justify="left")
    t.add_column("order", justify="left")
    for o in range(NR_ORDERS):
        t.add_column(str(o), justify="right")
    t.add_row("free blocks before", *[str(n) for n in b["free_blocks"]])
    t.add_row("free blocks after", *[str(n) for n in a["free_blocks"]], style="bold")
    t.add_row("extfrag index before", *[index_text(v) for v in b["fragmentation_index"]])
    t.add_row("extfrag index after", *[index_text(v) for v in a["fragmentation_index"]])
    t.add_row("unusable index before", *[index_text(v) for v in b["unusable_index"]])
    t.add_row("unusable index after", *[index_text(v) for v in a["unusable_index"]], style="bold")
    return t


def _compaction_text(c: Mapping[str, Any], pageblock_order: int) -> Text:
    b, a = c["before"], c["after"]
    ctr = c["counters"]
    out = Text()
    out.append("buddyinfo before:\n", style="dim")
    out.append("\n".join(buddyinfo_lines(b["zones"])) + "\n")
    out.append("buddyinfo after:\n", style="dim")
    out.append("\n".join(buddyinfo_lines(a["zones"])) + "\n")
    moved = ctr.get("pgmigrate_success", 0)
    out.append(f"free in blocks of order >= 3: {mib(b['free_pages_order_ge_3'])} -> "
               f"{mib(a['free_pages_order_ge_3'])} MiB; order >= {pageblock_order} (pageblock): "
               f"{mib(b['free_pages_order_ge_pageblock'])} -> {mib(a['free_pages_order_ge_pageblock'])} MiB "
               f"of {mib(a['free_pages'])} MiB free\n")
    shown = ", ".join(f"{k} {v:,}" for k, v in ctr.items() if k.startswith(("compact_", "pgmigrate_", "balloon_")))
    out.append(f"migrated {moved:,} pages ({mib(moved)} MiB); {shown or 'no compaction counters moved'}")
    return out


BACKGROUND_TRIGGERS = ("kcompactd", "proactive")
BACKGROUND_SHOWN = 12  # background compactions listed one per line: the first and the last half of these


def _background_table(records: Sequence[Mapping[str, Any]], pageblock_order: int) -> Table:
    """kcompactd's and proactive compaction's runs, a line each (the middle elided when many)."""
    t = Table(title=f"background compaction ({len(records)} runs; kcompactd and proactive)", title_justify="left",
              show_edge=False, pad_edge=False)
    for col in ("#", "time", "trigger", "migrated", "MiB free >= order 3", f"MiB free >= order {pageblock_order}",
                f"unusable index order {pageblock_order}"):
        t.add_column(col, justify="left" if col == "trigger" else "right")
    half = BACKGROUND_SHOWN // 2
    shown = list(records) if len(records) <= BACKGROUND_SHOWN else [*records[:half], None, *records[-half:]]
    for c in shown:
        if c is None:
            t.add_row("...", "", f"{len(records) - 2 * half} more", "", "", "", "")
            continue
        b, a = c["before"], c["after"]
        t.add_row(str(c["index"]), format_duration(c["time_s"]), c["trigger"],
                  f"{c['counters'].get('pgmigrate_success', 0):,}",
                  f"{mib(b['free_pages_order_ge_3'])} -> {mib(a['free_pages_order_ge_3'])}",
                  f"{mib(b['free_pages_order_ge_pageblock'])} -> {mib(a['free_pages_order_ge_pageblock'])}",
                  f"{index_text(b['unusable_index'][pageblock_order])} -> "
                  f"{index_text(a['unusable_index'][pageblock_order])}")
    return t


def _vmstat_table(vmstat: Mapping[str, int]) -> Table:
    """Counters that moved (and the page-state gauges), three name/value pairs a row."""
    items = [(k, v) for k, v in vmstat.items() if v]
    t = Table(title="vmstat (non-zero)", title_justify="left", show_header=False, show_edge=False, pad_edge=False)
    for _ in range(3):
        t.add_column(style="cyan")
        t.add_column(justify="right")
    for i in range(0, len(items), 3):
        row: list[str] = []
        for k, v in items[i:i + 3]:
            row += [k, f"{v:,}"]
        row += [""] * (6 - len(row))
        t.add_row(*row)
    return t


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if v != int(v) else f"{int(v):,}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _kv_table(title: str, rows: Mapping[str, Mapping[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    t.add_column("name")
    t.add_column("figures")
    for name, figs in rows.items():
        t.add_row(name, ", ".join(f"{k} {_fmt(v)}" for k, v in figs.items() if not isinstance(v, dict | list)))
    return t


def _probe_table(probes: Sequence[Mapping[str, Any]]) -> Table:
    t = Table(title="allocation probes", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("probe", "order", "gfp", "attempts", "failures", "success", "p50 us", "p99 us", "max us"):
        t.add_column(col, justify="left" if col in ("probe", "gfp") else "right")
    for p in probes:
        lat = p.get("latency_us") or {}
        rate = p.get("success_rate")
        t.add_row(p["name"], str(p["order"]), p["gfp"], f"{p['attempts']:,}", f"{p['failures']:,}",
                  "-" if rate is None else f"{100 * rate:.1f}%", _fmt(lat.get("p50", "-")),
                  _fmt(lat.get("p99", "-")), _fmt(lat.get("max", "-")))
    return t


def checker_text(checker: Mapping[str, Any], error: str | None = None) -> Text:
    out = Text()
    if error:
        out.append(f"run stopped: {error}\n", style="bold red")
    if checker.get("ok"):
        out.append("checker: OK", style="bold green")
        out.append(f" - every page accounted for: {checker['pages_free']:,} free, {checker['pages_owned']:,} owned, "
                   f"{checker['pages_reserved']:,} reserved, {checker['pages_isolated']} isolated, "
                   f"{checker['pages_quarantined']} quarantined")
    else:
        out.append("checker: FAILED", style="bold red")
        for p in checker.get("problems", []):
            out.append(f"\n  - {p}")
    return out


def summary(doc: Mapping[str, Any]) -> RenderableType:
    """Everything the run printed, as one rich renderable."""
    parts: list[RenderableType] = [_header(doc)]
    pbo = doc["machine"]["pageblock_order"]
    if doc["timeline"]:
        tl = Table(title="timeline", title_justify="left", show_edge=False, pad_edge=False)
        tl.add_column("time", justify="right")
        tl.add_column("command")
        tl.add_column("result")
        for e in doc["timeline"]:
            tl.add_row(format_duration(e["time_s"]), e["command"], ", ".join(f"{k} {_fmt(v)}"
                                                                            for k, v in e["result"].items()))
        parts += [Text(""), tl]
    explicit = [c for c in doc["compactions"] if c["trigger"] not in BACKGROUND_TRIGGERS]
    background = [c for c in doc["compactions"] if c["trigger"] in BACKGROUND_TRIGGERS]
    if background:
        parts += [Text(""), _background_table(background, pbo)]
    for c in explicit:
        parts += [Text(""), _compaction_table(c, pbo), _compaction_text(c, pbo)]
    if not doc["compactions"] and doc["samples"]:
        last = doc["samples"][-1]
        parts += [Text(""), Text("buddyinfo at the end:\n", style="dim")
                  + Text("\n".join(buddyinfo_lines(last["zones"])))]
    mig = doc.get("migration")
    if mig and mig["pages"]:
        drivers = "".join(f"{name} pages {d['mib']:,.1f} MiB, " for name, d in mig["driver_pages"].items())
        parts += [Text(""), Text.assemble(("migrated over the run: ", "bold"),
                                          f"{mig['mib']:,.1f} MiB ({mig['pages']:,} pages): {drivers}"
                                          f"other pages {mig['other_mib']:,.1f} MiB")]
    parts += [Text(""), _vmstat_table(doc["vmstat"])]
    if doc["drivers"]:
        parts += [Text(""), _kv_table("drivers", doc["drivers"])]
    if doc["workloads"]:
        parts += [Text(""), _kv_table("workloads", doc["workloads"])]
    if doc["probes"]:
        parts += [Text(""), _probe_table(doc["probes"])]
    if doc.get("driver_faults"):
        parts += [Text(""), Text("driver faults: " + ", ".join(f"{k} {v}" for k, v in doc["driver_faults"].items()),
                                 style="yellow")]
    parts += [Text(""), checker_text(doc["checker"], doc.get("error"))]
    return Group(*parts)


def print_summary(doc: Mapping[str, Any], console: Console | None = None) -> None:
    (console or Console(width=140)).print(summary(doc))
