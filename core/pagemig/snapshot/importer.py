"""Turn a :class:`~pagemig.snapshot.model.Snapshot` into per-pfn simulator state.

Three inferences are made here, each checked against a file that states the answer in
aggregate, and each reported with numbers rather than hidden:

1. **Page kinds** from the kpageflags bits (see :func:`classify_pages`).
2. **Free blocks** from the BUDDY bit and alignment, checked per zone and order against
   /proc/buddyinfo (see :func:`reconstruct_free_blocks`).  Kernels since the 4.x series
   (measured here: 6.1 and 6.18) set BUDDY on *every* page of a free block, not only
   on its head (fs/proc/page.c: a count-0 page for which ``is_free_buddy_page()``);
   a free block is then a maximal naturally aligned run of BUDDY pages whose buddy is
   not wholly free (a wholly free pair would have merged).  Older kernels flag
   only the head: the order then comes from alignment and the run of flagless pages
   after the head.  Which of the two applies is decided from the data and reported.
3. **Pageblock migratetypes**, which no file gives per block, inferred from the pages in
   each block and fitted to pagetypeinfo's per-type block counts (see
   :func:`infer_pageblock_types`; the heuristic is documented in docs/fidelity.md).

User-Mode Linux's /proc/kpageflags stops short of the zone end (it covers exactly as
many pfns as the zone has managed pages: 28 MiB short in a 1 GiB guest, 15 MiB in
256 MiB), while buddyinfo covers the whole zone.  Measured here, that tail is ordinary
memory (in a fragmented guest about half of it is free).  The free blocks buddyinfo has
and kpageflags cannot show are placed in the unseen tail, lowest aligned address first,
never beside a free buddy, and reported as inferred; the rest of the tail is imported as RESERVED,
since nothing says what it holds.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import attrs
import numpy as np
import structlog

from pagemig.mm.gfp import MIGRATETYPE_NAMES, MigrateType
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.snapshot.model import Snapshot
from pagemig.snapshot.parse import KPF, PageTypeInfo, ZoneInfo, kpf_mask

log = structlog.get_logger(__name__)

#: The pageblock order to assume when no pagetypeinfo was captured (x86-64 with hugetlb).
DEFAULT_PAGEBLOCK_ORDER = 9
NR_MT = len(MIGRATETYPE_NAMES)


@attrs.frozen
class ZoneLayout:
    """A zone as the simulator needs it: where it lies and how much of it is managed."""

    node: int
    name: str
    start_pfn: int
    spanned: int
    present: int
    managed: int

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.spanned


@attrs.frozen
class FreeCheck:
    """Free blocks of one zone: buddyinfo's counts against what kpageflags shows.

    ``reconstructed`` counts blocks found in the visible pfns, ``inferred`` the blocks
    placed in the unseen tail (buddyinfo minus reconstructed, where non-negative);
    ``difference`` is buddyinfo minus (reconstructed + inferred) per order, the part
    this import could not account for.
    """

    zone: str
    buddyinfo: tuple[int, ...]
    reconstructed: tuple[int, ...]
    inferred: tuple[int, ...]
    visible_end: int
    zone_end: int

    @property
    def difference(self) -> tuple[int, ...]:
        return tuple(b - r - i for b, r, i in
                     zip(self.buddyinfo, self.reconstructed, self.inferred, strict=True))

    @staticmethod
    def pages(counts: Sequence[int]) -> int:
        return sum(n << o for o, n in enumerate(counts))

    @property
    def unseen_pages(self) -> int:
        return max(0, self.zone_end - self.visible_end)

    @property
    def exact(self) -> bool:
        return self.buddyinfo == self.reconstructed


@attrs.frozen
class TypeFit:
    """Migratetype inference of one zone: target block counts and what was assigned."""

    zone: str
    target: Mapping[str, int]
    assigned: Mapping[str, int]
    argmax_agree: int  # blocks whose fitted type is also the one their own pages favour
    nr_blocks: int
    free_predicted: Mapping[str, tuple[int, ...]]  # free blocks per order inside blocks of each type
    free_pagetypeinfo: Mapping[str, tuple[int, ...]]

    @property
    def free_list_agreement(self) -> float:
        """Share of free blocks whose pageblock's fitted type is the free list pagetypeinfo
        put them on, counted per (type, order) as min(predicted, actual) / total."""
        hit = tot = 0
        for t, counts in self.free_pagetypeinfo.items():
            pred = self.free_predicted.get(t, ())
            for o, n in enumerate(counts):
                hit += min(n, pred[o] if o < len(pred) else 0)
                tot += n
        return hit / tot if tot else 1.0


@attrs.frozen
class ImportReport:
    """What the import read, inferred and could not account for; printed by ``show``."""

    kernel: str | None
    mode: str  # "all-pages" or "heads": how BUDDY appears in this kernel's kpageflags
    nr_pfns: int
    visible_pfns: int
    kind_counts: Mapping[str, int]
    free: tuple[FreeCheck, ...]
    fits: tuple[TypeFit, ...]
    notes: tuple[str, ...]


@attrs.frozen(eq=False)
class ImportedState:
    """Per-pfn state ready for ``Machine.load_state``.

    ``kind`` holds :class:`pagemig.mm.pages.PageKind` values, ``flags`` the
    :class:`pagemig.mm.pages.PageFlag` bits that kpageflags can tell (HEAD, TAIL,
    LOCKED, DIRTY; MOVABLE on DRIVER pages taken for zsmalloc's; PINNED is never set:
    no /proc file shows a pin), ``free_pfns`` and
    ``free_orders`` the free blocks (their pages have kind FREE), ``pageblock_mt`` one
    :class:`pagemig.mm.gfp.MigrateType` per pageblock from pfn 0.
    """

    zones: tuple[ZoneLayout, ...]
    pageblock_order: int
    max_order: int
    kind: np.ndarray
    flags: np.ndarray
    free_pfns: np.ndarray
    free_orders: np.ndarray
    pageblock_mt: np.ndarray
    report: ImportReport

    @property
    def nr_pfns(self) -> int:
        return len(self.kind)

    @property
    def pinned(self) -> np.ndarray:
        return (self.flags & PageFlag.PINNED) != 0

    def free_counts(self, zone: ZoneLayout) -> list[int]:
        inz = (self.free_pfns >= zone.start_pfn) & (self.free_pfns < zone.end_pfn)
        return np.bincount(self.free_orders[inz], minlength=self.max_order + 1).tolist()


# --- page kinds -------------------------------------------------------------------


def classify_pages(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PageKind and PageFlag per pfn from kpageflags words, before free-block work.

    Precedence, first match wins: NOPAGE or RESERVED -> RESERVED (holes and memblock);
    BUDDY -> FREE; SLAB -> SLAB_UNRECLAIMABLE (kpageflags has no reclaimable-slab bit;
    the pageblock fit may turn some into SLAB_RECLAIMABLE); PGTABLE -> PAGETABLE;
    ANON -> ANON; LRU or SWAPBACKED -> FILE (page cache and shmem: both movable,
    both file pages to vmstat); OFFLINE (a balloon page) or MMAP without LRU (zsmalloc's
    pages in 6.1, a driver's pages mapped to user space) -> DRIVER; anything else ->
    KERNEL (vmalloc, stacks, per-cpu free lists and unmapped driver pages all look
    alike: no bit marks driver pages as such).  A compound tail takes its head's kind, since only
    heads carry SLAB and LRU.
    """
    n = len(flags)
    kind = np.full(n, PageKind.KERNEL, dtype=np.uint8)
    has = lambda *b: (flags & kpf_mask(*b)) != 0  # noqa: E731
    # assign lowest precedence first so later assignments win
    # Mapped but on no LRU: in 6.1 zsmalloc keeps the first object's offset in the word
    # that holds _mapcount, so its pages read as MMAP (the zspage's first page also as
    # PRIVATE); other drivers' pages mapped into user space look the same.
    kind[has(KPF.OFFLINE, KPF.MMAP)] = PageKind.DRIVER
    kind[has(KPF.LRU, KPF.SWAPBACKED)] = PageKind.FILE
    kind[has(KPF.ANON)] = PageKind.ANON
    kind[has(KPF.PGTABLE)] = PageKind.PAGETABLE
    kind[has(KPF.SLAB)] = PageKind.SLAB_UNRECLAIMABLE
    kind[has(KPF.BUDDY)] = PageKind.FREE
    kind[has(KPF.RESERVED, KPF.NOPAGE)] = PageKind.RESERVED

    head = has(KPF.COMPOUND_HEAD)
    tail = has(KPF.COMPOUND_TAIL)
    if tail.any():
        # index of the nearest head at or before each pfn
        idx = np.where(head, np.arange(n), -1)
        np.maximum.accumulate(idx, out=idx)
        t = np.nonzero(tail & (idx >= 0))[0]
        kind[t] = kind[idx[t]]

    pf = np.zeros(n, dtype=np.uint8)
    pf[head] |= np.uint8(PageFlag.HEAD)
    pf[tail] |= np.uint8(PageFlag.TAIL)
    pf[has(KPF.LOCKED)] |= np.uint8(PageFlag.LOCKED)
    pf[has(KPF.DIRTY)] |= np.uint8(PageFlag.DIRTY)
    return kind, pf


# --- free blocks ------------------------------------------------------------------


def blocks_from_free_mask(mask: np.ndarray, base_pfn: int, max_order: int) -> tuple[np.ndarray, np.ndarray]:
    """Free blocks of a fully merged buddy allocator whose free pages are ``mask``.

    ``mask[i]`` says whether pfn ``base_pfn + i`` is free; ``base_pfn`` must be aligned
    to ``2**max_order``.  A block of order o at an o-aligned pfn exists iff all its pages
    are free and (o == max_order or its parent of order o+1 is not wholly free): two free
    buddies always merge (mm/page_alloc.c ``__free_one_page``).
    """
    assert base_pfn % (1 << max_order) == 0
    top = 1 << max_order
    n = -(-len(mask) // top) * top
    m = np.zeros(n, dtype=bool)
    m[: len(mask)] = mask
    full = [m]
    for _ in range(max_order):
        prev = full[-1]
        full.append(prev[0::2] & prev[1::2])
    pfns, orders = [], []
    for o in range(max_order + 1):
        here = full[o]
        if o < max_order:
            here = here & ~np.repeat(full[o + 1], 2)
        idx = np.nonzero(here)[0]
        pfns.append(base_pfn + (idx.astype(np.int64) << o))
        orders.append(np.full(len(idx), o, dtype=np.uint8))
    p = np.concatenate(pfns)
    od = np.concatenate(orders)
    s = np.argsort(p, kind="stable")
    return p[s], od[s]


def blocks_from_heads(flags: np.ndarray, count: np.ndarray | None, start: int, end: int,
                      max_order: int) -> tuple[np.ndarray, np.ndarray]:
    """Free blocks when only heads carry BUDDY (older kernels).

    The order of a head is the largest order its alignment allows whose remaining pages
    carry no flag (and, with kpagecount, no mapping), stopping before the next head.
    """
    seg = flags[start:end]
    quiet = (seg == 0)
    if count is not None:
        quiet &= count[start:end] == 0
    noisy = np.concatenate([[0], np.cumsum(~quiet)])
    heads = np.nonzero((seg & kpf_mask(KPF.BUDDY)) != 0)[0]
    orders = np.zeros(len(heads), dtype=np.uint8)
    done = np.zeros(len(heads), dtype=bool)
    for o in range(max_order, 0, -1):
        size = 1 << o
        ok = ~done & ((heads + start) % size == 0) & (heads + size <= len(seg))
        cand = np.nonzero(ok)[0]
        h = heads[cand]
        clean = noisy[h + size] - noisy[h + 1] == 0
        orders[cand[clean]] = o
        done[cand[clean]] = True
    return heads.astype(np.int64) + start, orders


def place_in_tail(diff: Sequence[int], lo: int, hi: int,
                  below_free: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Place ``diff[o]`` blocks of each order in [lo, hi): largest first, each at the
    lowest aligned address where it fits and its buddy is not wholly free.

    A real buddy allocator never holds two free buddies (they merge; blocks of the top
    order ``len(diff) - 1`` have no buddy), so for every block placed one page of its
    buddy is set aside as in use (a "sentinel"); the smaller blocks placed later fill
    the rest of the buddy.  A dense pattern such as "one page used in every four" is
    then reproduced with no waste.  ``below_free`` says which of the pages in
    [lo - len(below_free), lo), the visible part under the tail, are free, so that no
    block is placed beside a wholly free visible buddy.  Returns the blocks placed and
    the counts that did not fit.
    """
    FREE_, USED_, VISFREE_ = 1, 2, 3
    top = len(diff) - 1
    below = np.zeros(0, dtype=bool) if below_free is None else np.asarray(below_free, dtype=bool)
    base = lo - len(below)
    state = np.zeros(max(0, hi - base), dtype=np.uint8)
    state[: len(below)] = np.where(below, VISFREE_, USED_)
    pfns, orders, left = [], [], list(diff)
    for o in range(top, -1, -1):
        size = 1 << o
        p = -(-lo // size) * size
        for _ in range(max(0, diff[o])):
            placed = False
            while p + size <= hi:
                i = p - base
                if state[i:i + size].any():
                    p += size
                    continue
                b = p ^ size
                if o < top and b + size <= hi:
                    if b < base:
                        p += size  # buddy below what we know of
                        continue
                    j = b - base
                    bud = state[j:j + size]
                    if not (bud == USED_).any():
                        spare = np.nonzero(bud == 0)[0]
                        if not len(spare):  # buddy wholly free: would have merged
                            p += size
                            continue
                        # the buddy page nearest to this block stays in use
                        k = spare[-1] if b < p else spare[0]
                        state[j + k] = USED_
                state[i:i + size] = FREE_
                pfns.append(p)
                orders.append(o)
                left[o] -= 1
                p += size
                placed = True
                break
            if not placed:
                break
    return np.array(pfns, dtype=np.int64), np.array(orders, dtype=np.uint8), left


def reconstruct_free_blocks(
    snap: Snapshot, max_order: int,
) -> tuple[np.ndarray, np.ndarray, list[FreeCheck], str, list[str]]:
    """Free blocks of every populated zone, visible and inferred, with the check per zone."""
    flags = snap.kpageflags
    nvis = len(flags)
    buddy_bit = (flags & kpf_mask(KPF.BUDDY)) != 0
    notes: list[str] = []
    # Which of the two BUDDY conventions is this?  Pages under BUDDY vs free pages that
    # buddyinfo says lie in the visible part (scaled by the share of each zone we see).
    expected = 0.0
    for z in snap.populated_zones:
        b = snap.buddy(z.node, z.name)
        seen = max(0, min(z.end_pfn, nvis) - (z.start_pfn or 0))
        expected += (b.free_pages if b else 0) * seen / max(1, z.spanned)
    mode = "all-pages" if buddy_bit.sum() >= 0.5 * expected else "heads"
    all_p, all_o, checks = [], [], []
    for z in snap.populated_zones:
        zs, ze = z.start_pfn or 0, z.end_pfn
        ve = min(ze, nvis)
        if mode == "all-pages":
            base = zs & ~((1 << max_order) - 1)
            mask = np.zeros(max(0, ve - base), dtype=bool)
            if ve > zs:
                mask[zs - base:] = buddy_bit[zs:ve]
            p, o = blocks_from_free_mask(mask, base, max_order)
        else:
            p, o = blocks_from_heads(flags, snap.kpagecount, zs, max(zs, ve), max_order)
        b = snap.buddy(z.node, z.name)
        bcounts = tuple(b.counts) if b else (0,) * (max_order + 1)
        rec = tuple(np.bincount(o, minlength=len(bcounts)).tolist())
        diff = [x - y for x, y in zip(bcounts, rec, strict=False)]
        ip = np.zeros(0, dtype=np.int64)
        io = np.zeros(0, dtype=np.uint8)
        if ve < ze:
            lo_known = max(zs, ve - (1 << max_order))
            ip, io, _ = place_in_tail([max(0, d) for d in diff], ve, ze, buddy_bit[lo_known:ve])
            notes.append(
                f"zone {z.name}: /proc/kpageflags ends at pfn {ve:#x} ({ve}), "
                f"{ze - ve} pages ({(ze - ve) * snap.page_size / 2**20:.1f} MiB) short of the zone end "
                f"{ze:#x}; buddyinfo counts {sum(max(0, d) << k for k, d in enumerate(diff))} free pages "
                f"kpageflags does not show: {len(ip)} blocks ({int((1 << io.astype(np.int64)).sum())} pages) "
                "were placed there, lowest aligned address first, none beside a free buddy"
            )
        inf = tuple(np.bincount(io, minlength=len(bcounts)).tolist())
        check = FreeCheck(z.name, bcounts, rec, inf, ve, ze)
        checks.append(check)
        all_p += [p, ip]
        all_o += [o, io]
        log.debug("free blocks", zone=z.name, buddyinfo=check.pages(bcounts),
                  reconstructed=check.pages(rec), inferred=check.pages(inf))
    pfns = np.concatenate(all_p) if all_p else np.zeros(0, np.int64)
    orders = np.concatenate(all_o) if all_o else np.zeros(0, np.uint8)
    s = np.argsort(pfns, kind="stable")
    return pfns[s], orders[s], checks, mode, notes


# --- pageblock migratetypes -------------------------------------------------------


def _kind_evidence(slab_reclaimable_share: float) -> np.ndarray:
    """How much one page of each kind says about its pageblock's type (rows: PageKind).

    LRU pages come from MOVABLE blocks; slab from UNMOVABLE or RECLAIMABLE blocks in the
    machine's ratio of reclaimable slab; page tables and other kernel memory from
    UNMOVABLE.  RESERVED pages say nothing: memblock memory sits in blocks that boot
    left MOVABLE.  zsmalloc allocates __GFP_MOVABLE since v4.8, so DRIVER counts as MOVABLE.
    """
    w = np.zeros((max(PageKind) + 1, NR_MT))
    w[PageKind.ANON, MigrateType.MOVABLE] = 1
    w[PageKind.FILE, MigrateType.MOVABLE] = 1
    w[PageKind.DRIVER, MigrateType.MOVABLE] = 1
    for k in (PageKind.SLAB_UNRECLAIMABLE, PageKind.SLAB_RECLAIMABLE):
        w[k, MigrateType.UNMOVABLE] = 1 - slab_reclaimable_share
        w[k, MigrateType.RECLAIMABLE] = slab_reclaimable_share
    w[PageKind.PAGETABLE, MigrateType.UNMOVABLE] = 1
    w[PageKind.KERNEL, MigrateType.UNMOVABLE] = 1
    return w


def _free_list_share(pti: PageTypeInfo | None, z: ZoneInfo, norders: int) -> np.ndarray:
    """P(free list type | order) in this zone from pagetypeinfo (rows: order)."""
    share = np.zeros((norders, NR_MT))
    if pti is not None:
        for t, counts in pti.zone_free(z.node, z.name).items():
            if t in MIGRATETYPE_NAMES:
                share[: len(counts), MIGRATETYPE_NAMES.index(t)] = counts[:norders]
    tot = share.sum(1, keepdims=True)
    share = np.divide(share, tot, out=np.zeros_like(share), where=tot > 0)
    share[tot[:, 0] == 0, MigrateType.MOVABLE] = 1.0
    return share


def fit_to_counts(score: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Assign each row (block) a column (type) so that column totals equal ``target`` and
    the summed score is the largest possible.

    A transportation problem, solved exactly in two steps.  First a feasible start:
    every block takes its best type; then, while some type has too many blocks and
    another too few, the blocks that lose least by the move go.  Then cycle cancelling:
    with few types the residual graph condenses to one arc per ordered pair of types
    (the block that gains most by moving), and the assignment is optimal once no simple
    cycle of those arcs gains anything; each positive cycle found is applied (it keeps
    every type's count).
    """
    nb, nt = score.shape
    assign = np.argmax(score, axis=1)
    target = target.astype(np.int64).copy()
    if target.sum() != nb:  # pagetypeinfo counted a different number of blocks
        target[np.argmax(target)] += nb - target.sum()
    for _ in range(nb * nt):
        have = np.bincount(assign, minlength=nt)
        over = np.nonzero(have > target)[0]
        under = np.nonzero(have < target)[0]
        if not len(over) or not len(under):
            break
        best = None
        for s in over:
            rows = np.nonzero(assign == s)[0]
            for u in under:
                loss = score[rows, s] - score[rows, u]
                k = min(have[s] - target[s], target[u] - have[u])
                pick = rows[np.argsort(loss, kind="stable")[:k]]
                cost = float(loss.min())
                if best is None or cost < best[0]:
                    best = (cost, u, pick)
        assert best is not None
        assign[best[2]] = best[1]
    _cancel_cycles(score, assign)
    return assign


def _cancel_cycles(score: np.ndarray, assign: np.ndarray, eps: float = 1e-9) -> None:
    """Apply gain-positive cycles of block moves between types until there are none."""
    nb, nt = score.shape
    cycles = [c for k in range(2, nt + 1) for c in itertools.permutations(range(nt), k) if c[0] == min(c)]
    rows = np.arange(nb)
    for _ in range(4 * nb):
        own = score[rows, assign]
        gain = np.full((nt, nt), -np.inf)
        who = np.zeros((nt, nt), dtype=np.int64)
        for s in range(nt):
            members = np.nonzero(assign == s)[0]
            if not len(members):
                continue
            g = score[members] - own[members, None]
            best = np.argmax(g, axis=0)
            gain[s] = g[best, np.arange(nt)]
            who[s] = members[best]
        top, top_cycle = eps, None
        for c in cycles:
            total = sum(gain[c[i], c[(i + 1) % len(c)]] for i in range(len(c)))
            if total > top:
                top, top_cycle = total, c
        if top_cycle is None:
            return
        moves = [(who[top_cycle[i], top_cycle[(i + 1) % len(top_cycle)]], top_cycle[(i + 1) % len(top_cycle)])
                 for i in range(len(top_cycle))]
        for b, t in moves:
            assign[b] = t


def infer_pageblock_types(
    snap: Snapshot, kind: np.ndarray, free_pfns: np.ndarray, free_orders: np.ndarray,
    pageblock_order: int, max_order: int,
) -> tuple[np.ndarray, list[TypeFit]]:
    """Per-pageblock migratetype, fitted per zone to pagetypeinfo's block counts.

    Evidence for a block's type is summed over its pages: used pages by kind
    (:func:`_kind_evidence`), free pages by how pagetypeinfo spreads free blocks of their
    order over the free lists, and a small bias to MOVABLE, which every block has at boot.
    """
    npfn = len(kind)
    nblocks = -(-npfn // (1 << pageblock_order))
    pb_mt = np.full(nblocks, MigrateType.MOVABLE, dtype=np.uint8)
    vm = snap.vmstat
    recl = vm.get("nr_slab_reclaimable", vm.get("nr_slab_reclaimable_B", 0))
    unrecl = vm.get("nr_slab_unreclaimable", vm.get("nr_slab_unreclaimable_B", 0))
    share_r = recl / (recl + unrecl) if recl + unrecl else 0.0
    w = _kind_evidence(share_r)
    # per-page evidence of used pages, summed per block
    blk = np.arange(npfn) >> pageblock_order
    ev = np.zeros((nblocks, NR_MT))
    for k in np.unique(kind):
        if k == PageKind.FREE or not w[k].any():
            continue
        cnt = np.bincount(blk[kind == k], minlength=nblocks)
        ev += cnt[:, None] * w[k][None, :]
    fits: list[TypeFit] = []
    pti = snap.pagetypeinfo
    for z in snap.populated_zones:
        zs, ze = z.start_pfn or 0, z.end_pfn
        share = _free_list_share(pti, z, max_order + 1)
        inz = (free_pfns >= zs) & (free_pfns < ze)
        fp, fo = free_pfns[inz], free_orders[inz].astype(np.int64)
        zev = ev.copy()
        # a free block of order >= pageblock order covers several blocks
        for o in np.unique(fo):
            sel = fp[fo == o]
            size = 1 << int(o)
            per_block = min(size, 1 << pageblock_order)
            nb_cov = max(1, size >> pageblock_order)
            b0 = (sel >> pageblock_order)
            for j in range(nb_cov):
                np.add.at(zev, b0 + j, per_block * share[o][None, :])
        b_lo, b_hi = zs >> pageblock_order, -(-ze // (1 << pageblock_order))
        score = zev[b_lo:b_hi]
        score[:, MigrateType.MOVABLE] += 0.5
        argmax = np.argmax(score, axis=1)
        if pti is not None and (z.node, z.name) in pti.blocks:
            tgt_map = pti.blocks[(z.node, z.name)]
            target = np.array([tgt_map.get(t, 0) for t in MIGRATETYPE_NAMES])
            # pagetypeinfo counts only blocks with online pages: when it counts fewer
            # than the span holds, wholly RESERVED blocks (offline memory) stay out of
            # the fit and keep the boot default, MOVABLE
            fit_rows = np.arange(len(score))
            if target.sum() < len(score):
                blk_kind = kind[b_lo << pageblock_order:b_hi << pageblock_order]
                per = np.zeros(len(score), dtype=np.int64)
                np.add.at(per, (np.arange(len(blk_kind)) >> pageblock_order), blk_kind != PageKind.RESERVED)
                empty = np.nonzero(per == 0)[0][: len(score) - int(target.sum())]
                fit_rows = np.setdiff1d(fit_rows, empty)
            assign = np.full(len(score), MigrateType.MOVABLE, dtype=np.int64)
            assign[fit_rows] = fit_to_counts(score[fit_rows], target)
        else:
            tgt_map = {}
            assign = argmax
        pb_mt[b_lo:b_hi] = assign
        pred: dict[str, tuple[int, ...]] = {}
        mt_of_free = pb_mt[fp >> pageblock_order] if len(fp) else np.zeros(0, np.uint8)
        for t in range(NR_MT):
            pred[MIGRATETYPE_NAMES[t]] = tuple(
                np.bincount(fo[mt_of_free == t], minlength=max_order + 1).tolist())
        assigned = {MIGRATETYPE_NAMES[t]: int((assign == t).sum()) for t in range(NR_MT)}
        fits.append(TypeFit(
            zone=z.name, target=dict(tgt_map), assigned=assigned,
            argmax_agree=int((assign == argmax).sum()), nr_blocks=len(assign),
            free_predicted=pred,
            free_pagetypeinfo=pti.zone_free(z.node, z.name) if pti else {},
        ))
    return pb_mt, fits


# --- the whole import -------------------------------------------------------------


def import_snapshot(snap: Snapshot) -> ImportedState:
    """Build the simulator's per-pfn state from a snapshot, with the report of how."""
    pti = snap.pagetypeinfo
    pageblock_order = pti.pageblock_order if pti else DEFAULT_PAGEBLOCK_ORDER
    max_order = len(snap.buddyinfo[0].counts) - 1
    npfn = snap.nr_pfns
    nvis = len(snap.kpageflags)
    notes: list[str] = []
    if pti is None:
        notes.append(f"no pagetypeinfo: pageblock order assumed {pageblock_order}, "
                     "pageblock types not fitted to block counts")

    vis = min(npfn, nvis)
    kind = np.full(npfn, PageKind.RESERVED, dtype=np.uint8)
    flags = np.zeros(npfn, dtype=np.uint8)
    k, f = classify_pages(snap.kpageflags[:vis])
    kind[:vis], flags[:vis] = k, f
    # pages outside every zone are holes
    inzone = np.zeros(npfn, dtype=bool)
    for z in snap.populated_zones:
        inzone[z.start_pfn:z.end_pfn] = True
    kind[~inzone] = PageKind.RESERVED

    fp, fo, checks, mode, fnotes = reconstruct_free_blocks(snap, max_order)
    notes += fnotes
    # kinds agree with the blocks: free exactly where a block lies
    kind[kind == PageKind.FREE] = PageKind.KERNEL if mode == "heads" else PageKind.RESERVED
    covered = _expand(fp, fo, npfn)
    stray = covered & (kind != PageKind.RESERVED) & (kind != PageKind.KERNEL)
    if stray.any():
        notes.append(f"{int(stray.sum())} pages inside reconstructed free blocks carried other flags")
    kind[covered] = PageKind.FREE
    flags[covered] = 0

    notes += _fill_unseen(snap, kind, flags, vis)
    notes += _unmanaged_blocks(snap, kind, pageblock_order)

    pb_mt, fits = infer_pageblock_types(snap, kind, fp, fo, pageblock_order, max_order)
    # slab in reclaimable blocks is reclaimable slab (kpageflags cannot say)
    recl_pfn = pb_mt[np.arange(npfn) >> pageblock_order] == MigrateType.RECLAIMABLE
    kind[(kind == PageKind.SLAB_UNRECLAIMABLE) & recl_pfn] = PageKind.SLAB_RECLAIMABLE

    # zsmalloc's pages are movable (since 4.8 it registers movable ops); a snapshot with
    # zspages has them among its DRIVER pages, which then get PageFlag.MOVABLE
    if snap.vmstat.get("nr_zspages", 0) > 0:
        drv = kind == PageKind.DRIVER
        flags[drv] |= np.uint8(PageFlag.MOVABLE)
        notes.append(f"{int(drv.sum())} DRIVER pages (vmstat nr_zspages {snap.vmstat['nr_zspages']}) are "
                     "taken for zsmalloc's and marked movable, as 6.1's zsmalloc registers them")
    pcp = sum(z.pcp_count for z in snap.populated_zones)
    if pcp:
        notes.append(f"{pcp} pages sat on per-cpu free lists (zoneinfo pagesets): free to the "
                     "kernel but in no buddy list and without flags, so imported as KERNEL")
    for c in checks:
        if not c.exact and c.unseen_pages == 0:
            notes.append(f"zone {c.zone}: kpageflags and buddyinfo disagree by "
                         f"{c.pages(c.buddyinfo) - c.pages(c.reconstructed)} free pages; "
                         "the files were read at different moments of a live system")
    zones = tuple(ZoneLayout(z.node, z.name, z.start_pfn or 0, z.spanned, z.present, z.managed)
                  for z in snap.populated_zones)
    counts = np.bincount(kind, minlength=len(PageKind))
    report = ImportReport(
        kernel=snap.kernel, mode=mode, nr_pfns=npfn, visible_pfns=nvis,
        kind_counts={PageKind(i).name: int(counts[i]) for i in range(len(PageKind))},
        free=tuple(checks), fits=tuple(fits), notes=tuple(notes),
    )
    log.info("snapshot imported", source=str(snap.source), pfns=npfn, free_blocks=len(fp), mode=mode)
    return ImportedState(zones, pageblock_order, max_order, kind, flags, fp, fo, pb_mt, report)


def _unmanaged_blocks(snap: Snapshot, kind: np.ndarray, pageblock_order: int) -> list[str]:
    """Whole pageblocks of flagless pages that the kernel does not count as blocks of
    the zone (holes, offline memory, memory not yet accepted or initialised) are
    RESERVED, not KERNEL.

    How many there may be: pagetypeinfo counts only blocks with online pages, so the
    zone's span in blocks minus pagetypeinfo's total; without pagetypeinfo, the pages
    the zone spans but does not have present.  A block of flagless kernel pages (a
    vmalloc area, say) in a zone without either shortfall stays KERNEL.
    """
    flags = snap.kpageflags
    nvis = len(flags)
    quiet = flags == 0
    if snap.kpagecount is not None:
        quiet &= snap.kpagecount == 0
    size = 1 << pageblock_order
    pti = snap.pagetypeinfo
    notes = []
    for z in snap.populated_zones:
        zs = z.start_pfn or 0
        span_blocks = -(-z.end_pfn // size) - zs // size
        if pti is not None and (z.node, z.name) in pti.blocks:
            room = span_blocks - sum(pti.blocks[(z.node, z.name)].values())
        else:
            room = (z.spanned - z.present) // size
        if room <= 0:
            continue
        lo = -(-zs // size) * size
        hi = min(z.end_pfn, nvis) // size * size
        if hi <= lo:
            continue
        whole = quiet[lo:hi].reshape(-1, size).all(axis=1)
        whole &= (kind[lo:hi].reshape(-1, size) == PageKind.KERNEL).all(axis=1)
        idx = np.nonzero(whole)[0][:room]
        if not len(idx):
            continue
        for b in idx.tolist():
            kind[lo + b * size: lo + (b + 1) * size] = PageKind.RESERVED
        notes.append(f"zone {z.name}: spans {span_blocks} pageblocks, pagetypeinfo counts {span_blocks - room}; "
                     f"{len(idx)} pageblocks ({len(idx) * size} pages) with no flag on any page are imported as "
                     "RESERVED (memory the kernel does not manage: holes, offline, unaccepted or not initialised)")
    return notes


#: vmstat's slab counters, in pages (6.1 prints NR_SLAB_*_B divided by PAGE_SIZE).
_SLAB_COUNTERS = ("nr_slab_unreclaimable", "nr_slab_reclaimable")

#: vmstat counters that say how many pages of a kind the whole machine has, in the order
#: the unseen tail is filled from them.  Slab is one kind here: which slab is
#: reclaimable is decided later, by the pageblock it sits in.
_TAIL_KINDS = (
    (PageKind.ANON, ("nr_anon_pages",)),
    (PageKind.FILE, ("nr_file_pages",)),
    (PageKind.DRIVER, ("nr_zspages",)),
    (PageKind.SLAB_UNRECLAIMABLE, _SLAB_COUNTERS),
    (PageKind.PAGETABLE, ("nr_page_table_pages",)),
)


def _fill_unseen(snap: Snapshot, kind: np.ndarray, flags: np.ndarray, vis: int) -> list[str]:
    """Give the in-use pages of the unseen tail the kinds vmstat says are missing.

    vmstat counts every page of a kind, kpageflags only those it shows; the difference
    lies in the tail.  Those pages are given that kind, lowest pfn first, in the order of
    ``_TAIL_KINDS`` (anon first: under a workload like frag the tail continues the
    workload's pattern, and the pages left between the inferred free blocks are where
    its kept pages sat).  Pages no counter accounts for stay RESERVED.  Positions are a
    guess, counts are the kernel's; the report says how many of each.

    kmalloc_large (6.1 mm/slab_common.c ``kmalloc_large_node``) takes a compound page
    from the buddy allocator without PG_slab, yet adds all its pages to
    NR_SLAB_UNRECLAIMABLE_B: kpageflags shows it as a compound page with no other kind
    bit (imported as KERNEL), vmstat counts it as slab.  Those visible pages are slab that
    is already seen; counting them again in the tail would import each twice.  Other
    flagless compound pages (__GFP_COMP driver or page_frag allocations) read the same and
    cannot be told apart, so the credit is capped at vmstat's slab count.
    """
    if vis >= len(kind) or not snap.vmstat:
        return []
    unseen = np.nonzero(kind[vis:] == PageKind.RESERVED)[0] + vis
    inzone = np.zeros(len(kind), dtype=bool)
    for z in snap.populated_zones:
        inzone[z.start_pfn:z.end_pfn] = True
    unseen = unseen[inzone[unseen]]
    seen = np.bincount(kind[:vis], minlength=len(PageKind))
    seen[PageKind.SLAB_UNRECLAIMABLE] += seen[PageKind.SLAB_RECLAIMABLE]
    compound = (flags[:vis] & np.uint8(PageFlag.HEAD | PageFlag.TAIL)) != 0
    large = int((compound & (kind[:vis] == PageKind.KERNEL)).sum())
    slab_total = sum(snap.vmstat.get(n, 0) for n in _SLAB_COUNTERS)
    large = min(large, max(0, slab_total - int(seen[PageKind.SLAB_UNRECLAIMABLE])))
    seen[PageKind.SLAB_UNRECLAIMABLE] += large
    given: list[str] = []
    at = 0
    for k, names in _TAIL_KINDS:
        if not all(n in snap.vmstat for n in names):
            continue
        total = sum(snap.vmstat[n] for n in names)
        missing = int(min(max(0, total - int(seen[k])), len(unseen) - at))
        if missing:
            kind[unseen[at:at + missing]] = k
            at += missing
            given.append(f"{missing} {'SLAB' if k == PageKind.SLAB_UNRECLAIMABLE else PageKind(k).name}")
    notes: list[str] = []
    if large:
        notes.append(f"{large} pages of flagless compound pages (kmalloc_large's, which vmstat counts as "
                     "slab) are taken as the slab vmstat counts, not given again to the unseen tail")
    if not given:
        return notes
    return [*notes, f"unseen tail: vmstat counts pages kpageflags does not show; given to the tail's in-use pages, "
            f"lowest pfn first: {', '.join(given)}; {len(unseen) - at} pages no counter accounts for stay RESERVED"]


def _expand(pfns: np.ndarray, orders: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of the pages covered by the given blocks."""
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, pfns, 1)
    np.add.at(delta, np.minimum(pfns + (1 << orders.astype(np.int64)), n), -1)
    return np.cumsum(delta[:-1]) > 0
