"""What a snapshot's files must say before it may be imported: words a kernel writes,
enough of them, and files that describe one machine at one moment.

The importer infers what the files leave out (the free blocks of an unseen tail, page
kinds from vmstat, pageblock types); inference is only honest when what it starts from
is real.  So three things are refused here, each with the file(s) and figures:

* **Flag words no 6.1 kernel writes** (fs/proc/page.c ``stable_page_flags``): a bit
  above ``KPF_ARCH_2`` (41), or BUDDY together with LRU or SLAB (a page in the buddy
  allocator is on no LRU list and belongs to no slab; the kernel clears both before it
  frees a page).  Random bytes fail this at once.
* **A kpageflags that covers too little.**  Every kernel dumps at least the pfns it
  manages: User-Mode Linux's dump stops exactly ``spanned - managed`` pfns short of its
  zone's end (docs/fidelity.md, "The unseen tail"), a native kernel dumps the whole span.
  So a zone of which kpageflags shows fewer pfns than the zone has managed pages is
  refused unless the caller allows a partial import, and then the share inferred is
  reported (:func:`coverage`).
* **Files that disagree** beyond what reading a live machine one file after another
  explains (:func:`check_consistency`).

Free pages are compared in total, never order by order: on a busy machine blocks merge
and split between two reads (a live 128 MiB guest running zram: 6,268 pages apart
order by order, 68 pages in total).  The tolerance for live drift is ``max(one
pageblock, 5 % of the zone's free pages)``: measured, totals of one capture move less
(at most 183 of 17,861 pages over 12 live UML captures; 63 of 816,000 on a live 6.18
machine read 150 times; 155 of 88,395 between zoneinfo and vmstat on the committed
fixtures; 27,742 of 1,358,615, 2.0 %, between zoneinfo and vmstat of a capture of that
6.18 machine while it ran other test suites, the worst seen), while two captures of
one guest size under different workloads differ by 1,843 pages (9 %) or more at
128 MiB.  Two captures of one guest under one workload can agree as closely as a live
capture does with itself; no total tells them apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from pagemig.snapshot.parse import KPF, PageTypeInfo, SnapshotFormatError, kpf_mask, kpf_names

#: The highest bit fs/proc/page.c of Linux 6.1 sets (KPF_ARCH_2).
KPF_HIGHEST_61 = int(KPF.ARCH_2)
#: Pfns in one memory section on x86-64 (SECTION_SIZE_BITS 27): kpageflags runs to
#: max_pfn rounded up to a section (fs/proc/page.c ``get_max_dump_pfn``), not past it.
PAGES_PER_SECTION = 1 << 15
#: Live drift allowed between two files of one capture, as a share of the free pages.
LIVE_DRIFT_SHARE = 0.05


def live_tolerance(free_pages: int, pageblock_order: int) -> int:
    """Pages two files of one live capture may disagree by (see the module docstring)."""
    return max(1 << pageblock_order, int(LIVE_DRIFT_SHARE * free_pages))


def check_flag_words(flags: np.ndarray, file: str) -> None:
    """Refuse kpageflags words no 6.1 kernel writes, naming the first pfn and how many."""
    high = flags >> np.uint64(KPF_HIGHEST_61 + 1)
    buddy = (flags & kpf_mask(KPF.BUDDY)) != 0
    both = buddy & ((flags & kpf_mask(KPF.LRU, KPF.SLAB)) != 0)
    for bad, what in ((high != 0, f"no bit above {KPF_HIGHEST_61} (KPF_ARCH_2, the highest Linux 6.1 writes)"),
                      (both, "BUDDY never together with LRU or SLAB (a free page is on no LRU list and in no slab)")):
        idx = np.flatnonzero(bad)
        if len(idx):
            pfn = int(idx[0])
            word = int(flags[pfn])
            raise SnapshotFormatError(
                file, f"flag words as a kernel writes them: {what}",
                got=f"pfn {pfn:#x} = {word:#018x} ({'|'.join(kpf_names(word))})"
                    + (f" and {len(idx) - 1} more such words" if len(idx) > 1 else ""))


@attrs.frozen
class ZoneCoverage:
    """How much of one zone kpageflags shows; ``unseen`` pfns are inferred by the importer."""

    zone: str
    spanned: int
    managed: int
    seen: int

    @property
    def unseen(self) -> int:
        return self.spanned - self.seen

    @property
    def short(self) -> bool:
        """Fewer pfns shown than the zone manages: more missing than any kernel leaves out."""
        return self.seen < self.managed


def coverage(zones: Sequence[tuple[str, int, int, int]], nr_words: int) -> tuple[ZoneCoverage, ...]:
    """Per zone (name, start_pfn, spanned, managed): how many of its pfns ``nr_words`` words show."""
    return tuple(ZoneCoverage(name, spanned, managed, max(0, min(start + spanned, nr_words) - start))
                 for name, start, spanned, managed in zones)


def check_coverage(cov: Sequence[ZoneCoverage], nr_pfns: int, nr_words: int, file: str,
                   allow_partial: bool) -> None:
    """Refuse a kpageflags shorter than the zones manage (unless allowed) or longer than
    any kernel of that machine would write."""
    limit = -(-nr_pfns // PAGES_PER_SECTION) * PAGES_PER_SECTION
    if nr_words > limit:
        raise SnapshotFormatError(
            file, f"at most {limit} words (the zones end at pfn {nr_pfns:#x}; a kernel dumps up to max_pfn "
                  "rounded up to a memory section): a kpageflags from a larger machine?",
            got=f"{nr_words} words")
    short = [c for c in cov if c.short]
    if short and not allow_partial:
        c = short[0]
        raise SnapshotFormatError(
            file, f"words for at least the {c.managed} pages zone {c.zone} manages (of {c.spanned} it spans), "
                  "or --allow-partial (in a scenario, machine.allow_partial = true) to infer the rest "
                  "from buddyinfo and vmstat",
            got=f"{c.seen} of them ({c.unseen} pfns, {c.unseen / max(1, c.spanned):.1%} of the zone, unseen)")


def partial_report(cov: Sequence[ZoneCoverage]) -> list[dict[str, object]]:
    """The JSON form of the coverage: what an import of this snapshot infers rather than reads."""
    return [{"zone": c.zone, "spanned": c.spanned, "managed": c.managed, "seen": c.seen, "unseen": c.unseen,
             "unseen_share": round(c.unseen / max(1, c.spanned), 6),
             "beyond_unmanaged": max(0, c.managed - c.seen)} for c in cov]


# --- cross-file consistency --------------------------------------------------------------


def _pages(counts: Sequence[int]) -> int:
    return sum(n << o for o, n in enumerate(counts))


def check_pagetypeinfo_buddyinfo(pti: PageTypeInfo, buddy: Mapping[tuple[int, str], Sequence[int]],
                                 pti_file: str, buddy_file: str) -> None:
    """Per zone, the free pages of pagetypeinfo's blocks (all migratetypes and orders) are
    buddyinfo's, within the live tolerance.

    Pages, not blocks per order: between two reads of a busy machine free blocks merge
    and split, which moves counts between orders but conserves pages (a live 128 MiB
    guest running zram: 6,268 pages apart order by order, 68 in total).  A count
    pagetypeinfo printed as ``>100000`` is a floor: the zone's total is then one too.
    """
    for (node, zone), b in buddy.items():
        per_type = pti.zone_free(node, zone)
        if not per_type:
            continue
        total = [0] * len(b)
        capped = False
        for t, counts in per_type.items():
            for o, n in enumerate(counts[:len(b)]):
                total[o] += n
                capped |= (node, zone, t, o) in pti.capped
        have, want = _pages(total), _pages(b)
        moved = max(0, have - want) if capped else abs(have - want)
        tol = live_tolerance(want, pti.pageblock_order)
        if moved > tol:
            raise SnapshotFormatError(
                pti_file, f"free blocks holding, over all migratetypes and orders, the free pages {buddy_file} "
                          f"counts for node {node} zone {zone} within {tol} pages (what a live machine moves "
                          "between the reads)",
                got=f"{have}{' or more' if capped else ''} pages against {want} ({moved} pages apart; per order "
                    f"{' '.join(map(str, total))} against {' '.join(map(str, b))}): files from different captures?")


def check_free_pages(figure: int, reference: int, pageblock_order: int, file: str, what: str,
                     reference_what: str) -> None:
    """One file's count of free pages against another's (``what`` names the figure checked)."""
    tol = live_tolerance(reference, pageblock_order)
    if abs(figure - reference) > tol:
        raise SnapshotFormatError(
            file, f"{what} within {tol} pages of the {reference} free pages {reference_what} "
                  "(what a live machine moves between the reads)",
            got=f"{figure} ({abs(figure - reference)} pages apart; files from different captures?)")
