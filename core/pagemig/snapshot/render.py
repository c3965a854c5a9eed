"""Plain-text views of a snapshot and its import, for ``pagemig snapshot show``.

Every inference is printed beside the file figure it was checked against, so that a
reader sees at once how far the import can be trusted.
"""

from __future__ import annotations

from typing import Any

from pagemig.snapshot.importer import FreeCheck, ImportedState
from pagemig.snapshot.model import Snapshot, zone_coverage
from pagemig.snapshot.validate import partial_report


def render_show(snap: Snapshot, state: ImportedState) -> str:
    r = state.report
    mb = snap.page_size / 2**20
    lines = [f"snapshot {snap.source}",
             f"  kernel {snap.kernel or 'unknown'}, page size {snap.page_size}, "
             f"pageblock order {state.pageblock_order}, max order {state.max_order}"
             + (f", captured {snap.manifest.get('captured_at')}" if snap.manifest else ", no manifest"),
             f"  kpageflags: {r.visible_pfns} pfns ({r.visible_pfns * mb:.1f} MiB); zones span {r.nr_pfns} pfns; "
             f"BUDDY convention: {r.mode}",
             *coverage_lines(snap),
             "", "zones (zoneinfo)",
             f"  {'zone':<8} {'start_pfn':>10} {'spanned':>9} {'present':>9} {'managed':>9} {'free':>9} "
             f"{'min':>6} {'low':>6} {'high':>6} {'pcp':>5}"]
    for z in snap.zoneinfo:
        if not z.populated:
            continue
        lines.append(f"  {z.name:<8} {z.start_pfn:>10} {z.spanned:>9} {z.present:>9} {z.managed:>9} {z.free:>9} "
                     f"{z.min:>6} {z.low:>6} {z.high:>6} {z.pcp_count:>5}")
    lines += ["", "page kinds (kpageflags, imported)"]
    for name, n in r.kind_counts.items():
        lines.append(f"  {name:<20} {n:>9} pages {n * mb:>9.1f} MiB")
    for c in r.free:
        lines += ["", *render_free_check(c)]
    for f in r.fits:
        lines += ["", f"pageblock migratetypes, zone {f.zone} ({f.nr_blocks} blocks)",
                  f"  {'type':<12} {'pagetypeinfo':>12} {'fitted':>7}"]
        for t in f.assigned:
            if f.assigned[t] or f.target.get(t):
                tgt = f.target.get(t, "-")
                lines.append(f"  {t:<12} {tgt!s:>12} {f.assigned[t]:>7}")
        lines.append(f"  blocks whose own pages favour the fitted type: {f.argmax_agree} of {f.nr_blocks}")
        if f.free_pagetypeinfo:
            lines.append(f"  free blocks on the free list of their block's fitted type: "
                         f"{f.free_list_agreement:.1%} (pagetypeinfo free counts per type and order)")
    if r.notes:
        lines += ["", "notes"] + [f"  - {n}" for n in r.notes]
    return "\n".join(lines)


def coverage_lines(snap: Snapshot) -> list[str]:
    """What kpageflags does not show and the import infers, a line per such zone."""
    lines = []
    for c in zone_coverage(snap):
        if c.unseen:
            how = ("PARTIAL (--allow-partial): fewer pfns than the zone manages" if c.short
                   else "no more than the zone's unmanaged pages, as User-Mode Linux leaves out")
            lines.append(f"  zone {c.zone}: kpageflags shows {c.seen} of {c.spanned} pfns; {c.unseen} "
                         f"({c.unseen / max(1, c.spanned):.1%}) inferred from buddyinfo and vmstat - {how}")
    return lines


def coverage_json(snap: Snapshot) -> dict[str, Any]:
    cov = zone_coverage(snap)
    return {"partial": any(c.short for c in cov), "zones": partial_report(cov)}


def render_free_check(c: FreeCheck) -> list[str]:
    lines = [f"free blocks, zone {c.zone}: buddyinfo vs kpageflags",
             f"  {'order':>5} {'buddyinfo':>10} {'kpageflags':>10} {'inferred':>9} {'difference':>10}"]
    for o, (b, r, i, d) in enumerate(zip(c.buddyinfo, c.reconstructed, c.inferred, c.difference, strict=True)):
        lines.append(f"  {o:>5} {b:>10} {r:>10} {i:>9} {d:>10}")
    pb, pr, pi = c.pages(c.buddyinfo), c.pages(c.reconstructed), c.pages(c.inferred)
    lines.append(f"  pages {pb:>10} {pr:>10} {pi:>9} {pb - pr - pi:>10}")
    if c.unseen_pages:
        lines.append(f"  kpageflags stops at pfn {c.visible_end:#x}, {c.unseen_pages} pages short of the zone end "
                     f"{c.zone_end:#x}: 'inferred' blocks are buddyinfo's surplus placed in that unseen tail")
    return lines


def report_json(snap: Snapshot, state: ImportedState) -> dict[str, Any]:
    r = state.report
    return {
        "source": str(snap.source),
        "kernel": snap.kernel,
        "pageblock_order": state.pageblock_order,
        "mode": r.mode,
        "nr_pfns": r.nr_pfns,
        "visible_pfns": r.visible_pfns,
        "coverage": coverage_json(snap),
        "zones": [{"name": z.name, "node": z.node, "start_pfn": z.start_pfn, "spanned": z.spanned,
                   "present": z.present, "managed": z.managed} for z in state.zones],
        "kinds": dict(r.kind_counts),
        "free": [{"zone": c.zone, "buddyinfo": list(c.buddyinfo), "reconstructed": list(c.reconstructed),
                  "inferred": list(c.inferred), "difference": list(c.difference),
                  "visible_end": c.visible_end, "zone_end": c.zone_end} for c in r.free],
        "pageblock_types": [{"zone": f.zone, "pagetypeinfo": dict(f.target), "fitted": dict(f.assigned),
                             "argmax_agree": f.argmax_agree, "nr_blocks": f.nr_blocks,
                             "free_list_agreement": f.free_list_agreement} for f in r.fits],
        "notes": list(r.notes),
    }
