"""Per-page state as arrays indexed by pfn: the simulator's ``struct page``.

A Python object per page would cost gigabytes for a 16 GiB machine, so every
per-page fact is a column here.  Each column is one buffer seen two ways: a
NumPy array for vectorised work (scanners, the checker, reports) and a
``memoryview`` for the allocator's scalar hot path, where a memoryview item
access costs a third of a NumPy scalar access.

Layout, 16 bytes per page (the kernel's ``struct page`` is 64):

========  =======  ==============================================================
column    dtype    meaning
========  =======  ==============================================================
kind      uint8    :class:`PageKind`
flags     uint8    :class:`PageFlag`
owner     uint16   owner id (see :mod:`pagemig.mm.owner`); on the head page of a
                   free block, the migratetype of the free list it is on
private   uint32   the owner's own slot for the page (``page->private``); on the
                   head of a free block, its buddy order; on the first tail page
                   of a compound page, the compound order (as the kernel keeps
                   it in ``page[1]``)
token     uint64   the page's content: whatever its owner last wrote; migration
                   must carry it to the new page
========  =======  ==============================================================
"""

from __future__ import annotations

import enum
from typing import Protocol

import numpy as np

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_ORDER = 10  # the largest order (MAX_PAGE_ORDER in v6.8+); orders are 0..MAX_ORDER
NR_ORDERS = MAX_ORDER + 1
PAGE_ALLOC_COSTLY_ORDER = 3
BYTES_PER_PAGE = 16  # the core state above; asserted by the tests and the benchmark


class PageKind(enum.IntEnum):
    """What a page is used for, as /proc/kpageflags and the vmstat counters tell them apart."""

    FREE = 0
    ANON = 1  # LRU, swap-backed
    FILE = 2  # LRU, page cache
    SLAB_UNRECLAIMABLE = 3
    SLAB_RECLAIMABLE = 4
    PAGETABLE = 5
    KERNEL = 6  # other kernel memory: vmalloc, stacks, buffers
    DRIVER = 7  # a driver's page; movable only when the driver marked it so
    RESERVED = 8  # memblock-reserved or a hole: never managed by the buddy allocator


LRU_KINDS = (PageKind.ANON, PageKind.FILE)


class PageFlag(enum.IntFlag):
    """Page flags kept in one byte.  Names follow include/linux/page-flags.h."""

    BUDDY = 0x01  # head of a free block (PageBuddy)
    MOVABLE = 0x02  # a driver page marked with __SetPageMovable
    ISOLATED = 0x04  # taken by a compaction in progress (PageIsolated / off the LRU)
    LOCKED = 0x08  # PG_locked: only ever try-locked by the VM
    PINNED = 0x10  # refcount > mapcount: pinned for DMA, compaction skips it
    DIRTY = 0x20  # PG_dirty: reclaim must write it first
    HEAD = 0x40  # PG_head of a compound page
    TAIL = 0x80  # a compound tail page


# The members as plain ints, defined once here: the allocator's and the scanners' paths
# compare and mask column bytes with them, and an enum member costs a lookup and a
# conversion more each time.
FREE = int(PageKind.FREE)
ANON = int(PageKind.ANON)
FILE = int(PageKind.FILE)
SLAB_UNRECLAIMABLE = int(PageKind.SLAB_UNRECLAIMABLE)
SLAB_RECLAIMABLE = int(PageKind.SLAB_RECLAIMABLE)
PAGETABLE = int(PageKind.PAGETABLE)
KERNEL = int(PageKind.KERNEL)
DRIVER = int(PageKind.DRIVER)
RESERVED = int(PageKind.RESERVED)

BUDDY = int(PageFlag.BUDDY)
MOVABLE = int(PageFlag.MOVABLE)
ISOLATED = int(PageFlag.ISOLATED)
LOCKED = int(PageFlag.LOCKED)
PINNED = int(PageFlag.PINNED)
DIRTY = int(PageFlag.DIRTY)
HEAD = int(PageFlag.HEAD)
TAIL = int(PageFlag.TAIL)
NOT_ISOLATED_MASK = ~ISOLATED & 0xFF


class PageArrays:
    """The columns.  ``x`` is the NumPy view, ``_x`` the memoryview of the same bytes.

    Three more views serve the allocator's multi-page paths, where a memoryview
    slice assignment from a bytes pattern (a memcpy) is three times cheaper than a
    NumPy slice assignment for the small blocks that dominate: ``_kind_buf`` is the
    kind column's bytearray (``find`` checks a range in C), ``_owner_b`` and
    ``_private_b`` the owner and private columns as raw bytes in native order.
    """

    __slots__ = (
        "_flags",
        "_kind",
        "_kind_buf",
        "_owner",
        "_owner_b",
        "_private",
        "_private_b",
        "_token",
        "flags",
        "kind",
        "nr_pages",
        "owner",
        "private",
        "token",
    )

    def __init__(self, nr_pages: int) -> None:
        self.nr_pages = nr_pages
        kb = bytearray(nr_pages)
        fb = bytearray(nr_pages)
        ob = bytearray(2 * nr_pages)
        pb = bytearray(4 * nr_pages)
        tb = bytearray(8 * nr_pages)
        self.kind = np.frombuffer(kb, dtype=np.uint8)
        self.flags = np.frombuffer(fb, dtype=np.uint8)
        self.owner = np.frombuffer(ob, dtype=np.uint16)
        self.private = np.frombuffer(pb, dtype=np.uint32)
        self.token = np.frombuffer(tb, dtype=np.uint64)
        self._kind = memoryview(kb)
        self._flags = memoryview(fb)
        self._owner = memoryview(ob).cast("H")
        self._private = memoryview(pb).cast("I")
        self._token = memoryview(tb).cast("Q")
        self._kind_buf = kb
        self._owner_b = memoryview(ob)
        self._private_b = memoryview(pb)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.kind, self.flags, self.owner, self.private, self.token))


class PageHost(Protocol):
    """What a :class:`Page` needs of its machine: the page columns.  (The machine module
    sits above this one, so a page types its machine by what it uses.)"""

    @property
    def pages(self) -> PageArrays: ...


class Page:
    """A light view of one page, made on demand for driver callbacks.

    Drivers get these instead of pfns so that the protocol reads like the kernel's
    (``migrate_page(dst, src, mode)``); they cost one small object per call and
    hold no state of their own.
    """

    __slots__ = ("machine", "pfn")

    def __init__(self, machine: PageHost, pfn: int) -> None:
        self.pfn = pfn
        self.machine = machine

    def __repr__(self) -> str:
        return f"Page(pfn={self.pfn:#x}, kind={self.kind.name}, flags={PageFlag(self.flags)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Page) and other.pfn == self.pfn and other.machine is self.machine

    def __hash__(self) -> int:
        return hash(self.pfn)

    @property
    def kind(self) -> PageKind:
        return PageKind(self.machine.pages._kind[self.pfn])

    @property
    def flags(self) -> int:
        return self.machine.pages._flags[self.pfn]

    @property
    def owner_id(self) -> int:
        return self.machine.pages._owner[self.pfn]

    @property
    def private(self) -> int:
        return self.machine.pages._private[self.pfn]

    @private.setter
    def private(self, value: int) -> None:
        self.machine.pages._private[self.pfn] = value

    @property
    def token(self) -> int:
        """The page's content.  Writing it is what "the driver stores data in the page" means."""
        return self.machine.pages._token[self.pfn]

    @token.setter
    def token(self, value: int) -> None:
        self.machine.pages._token[self.pfn] = value

    def test(self, flag: PageFlag) -> bool:
        return bool(self.machine.pages._flags[self.pfn] & flag)

    @property
    def movable(self) -> bool:
        """``__PageMovable``: a driver page its driver marked movable."""
        return self.test(PageFlag.MOVABLE)

    @property
    def isolated(self) -> bool:
        return self.test(PageFlag.ISOLATED)

    @property
    def locked(self) -> bool:
        return self.test(PageFlag.LOCKED)


def copy_page(dst: Page, src: Page) -> None:
    """Copy a page's content (``migrate_page_copy``): what every ``migrate_page`` must do."""
    pages = src.machine.pages
    pages._token[dst.pfn] = pages._token[src.pfn]


def pin_pages(machine: PageHost, pfns: np.ndarray) -> None:
    """Pin pages for DMA (``pin_user_pages``, mm/gup.c): the extra reference a device holds,
    kept as the ``PINNED`` flag; compaction will not isolate a pinned page."""
    machine.pages.flags[np.asarray(pfns, dtype=np.int64)] |= np.uint8(PINNED)


def unpin_pages(machine: PageHost, pfns: np.ndarray) -> None:
    """Drop the DMA pin (``unpin_user_pages``): the pages may be isolated again."""
    machine.pages.flags[np.asarray(pfns, dtype=np.int64)] &= np.uint8(~PINNED & 0xFF)
