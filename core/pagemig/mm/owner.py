"""Owners: whoever holds pages (a workload, the kernel, a driver), and the page sets they keep.

The checker asks every owner which pages it believes it holds and what it last wrote
to them, and compares that with memory.  So an owner that loses track of a page,
or a migration that forgets to carry a page's content, shows up as a failure.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from pagemig.mm.pages import PageArrays


class OwnerHost(Protocol):
    """What owners and page sets need of their machine (whose module sits above this
    one): the page columns, and a way to register."""

    @property
    def pages(self) -> PageArrays: ...

    def register_owner(self, owner: Owner) -> int: ...


class Owner:
    """Base class of everything that holds pages.

    ``owner_id`` is given by the machine's ``register_owner``;
    it is what the page's ``owner`` column holds.
    """

    name: str = "owner"
    owner_id: int = 0

    def pages_migrated(self, src: np.ndarray, dst: np.ndarray) -> None:
        """LRU pages moved by the core: update your references, src[i] now lives at dst[i].

        Called once per migrated batch (never per page), after the core copied each
        page's content, kind, dirty bit and ``private`` to dst.
        """
        raise NotImplementedError(f"{self.name} holds LRU pages but cannot follow their migration")

    def expected_contents(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The pfns this owner believes it holds, and the token it last wrote to each.

        None means "do not check me" (only for owners that keep no record, such as an
        imported snapshot's anonymous owner).
        """
        return None


class PageSet:
    """The pages an owner holds, each in a slot recorded in the page's ``private`` column.

    Slots make migration O(1) per page and vectorisable: the core copies ``private``
    along with the page, so ``self.pfn[private[dst]] = dst`` is the whole update, the
    way the kernel's rmap walk rewrites one page-table entry.

    ``pfn`` and ``token`` are NumPy arrays for the vectorised paths; the per-page
    methods go through memoryviews of the same memory (a third of the cost of a
    NumPy scalar access), renewed whenever the arrays grow.
    """

    __slots__ = ("_free_slots", "_pfn_mv", "_token_mv", "_top", "count", "machine", "pfn", "token")

    def __init__(self, machine: OwnerHost, capacity: int = 1024) -> None:
        self.machine = machine
        self.pfn = np.full(max(1, capacity), -1, dtype=np.int64)
        self.token = np.zeros(max(1, capacity), dtype=np.uint64)
        self._pfn_mv = self.pfn.data  # ndarray.data: a memoryview of the array's buffer
        self._token_mv = self.token.data
        self.count = 0
        self._free_slots: list[int] = []
        self._top = 0

    def __len__(self) -> int:
        return self.count

    def _grow(self, need: int) -> None:
        cap = max(1, len(self.pfn))
        while cap < need:
            cap *= 2
        pfn = np.full(cap, -1, dtype=np.int64)
        pfn[: len(self.pfn)] = self.pfn
        token = np.zeros(cap, dtype=np.uint64)
        token[: len(self.token)] = self.token
        self.pfn, self.token = pfn, token
        self._pfn_mv = pfn.data
        self._token_mv = token.data

    def add(self, pfn: int, token: int) -> None:
        """Take a freshly allocated page and write ``token`` into it."""
        if self._free_slots:
            slot = self._free_slots.pop()
        else:
            slot = self._top
            self._top += 1
            if slot >= len(self._pfn_mv):
                self._grow(slot + 1)
        self._pfn_mv[slot] = pfn
        self._token_mv[slot] = token
        pages = self.machine.pages
        pages._private[pfn] = slot
        pages._token[pfn] = token
        self.count += 1

    def add_many(self, pfns: np.ndarray, tokens: np.ndarray) -> None:
        """The bulk form of :meth:`add`, for pages from ``alloc_pages_bulk``."""
        n = len(pfns)
        if not n:
            return
        reuse = min(n, len(self._free_slots))
        slots = np.empty(n, dtype=np.int64)
        if reuse:
            slots[:reuse] = self._free_slots[-reuse:]
            del self._free_slots[-reuse:]
        fresh = n - reuse
        if fresh:
            slots[reuse:] = np.arange(self._top, self._top + fresh)
            self._top += fresh
            if self._top > len(self.pfn):
                self._grow(self._top)
        self.pfn[slots] = pfns
        self.token[slots] = tokens
        pages = self.machine.pages
        pages.private[pfns] = slots
        pages.token[pfns] = tokens
        self.count += n

    def write(self, pfn: int, token: int) -> None:
        """The owner writes new content into a page it holds."""
        pages = self.machine.pages
        self._token_mv[pages._private[pfn]] = token
        pages._token[pfn] = token

    def write_many(self, pfns: np.ndarray, tokens: np.ndarray) -> None:
        """The bulk form of :meth:`write`: new content into pages the owner holds."""
        pages = self.machine.pages
        self.token[pages.private[pfns].astype(np.int64)] = tokens
        pages.token[pfns] = tokens

    def remove(self, pfn: int) -> None:
        """Forget a page (before freeing it)."""
        slot = self.machine.pages._private[pfn]
        if slot >= self._top or self._pfn_mv[slot] != pfn:
            raise KeyError(f"pfn {pfn:#x} is not in this page set")
        self._pfn_mv[slot] = -1
        self._free_slots.append(slot)
        self.count -= 1

    def remove_many(self, pfns: np.ndarray) -> None:
        """The bulk form of :meth:`remove`: all or nothing, KeyError if any pfn is not held
        (or is listed twice, which would free its slot twice)."""
        pfns = np.asarray(pfns, dtype=np.int64)
        slots = self.machine.pages.private[pfns].astype(np.int64)
        if (slots >= self._top).any() or not np.array_equal(self.pfn[np.minimum(slots, len(self.pfn) - 1)], pfns):
            raise KeyError("some pfns are not in this page set")
        if len(slots) > 1 and len(np.unique(slots)) != len(slots):
            raise KeyError("a pfn is listed twice")
        self.pfn[slots] = -1
        self._free_slots.extend(slots.tolist())
        self.count -= len(pfns)

    def __contains__(self, pfn: int) -> bool:
        slot = self.machine.pages._private[pfn]
        return slot < self._top and self._pfn_mv[slot] == pfn

    def migrated(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Follow pages the core moved (their ``private`` slot came along)."""
        self.pfn[self.machine.pages.private[dst].astype(np.int64)] = dst

    def pfns(self) -> np.ndarray:
        live = self.pfn[: self._top]
        return live[live >= 0]

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        live = self.pfn[: self._top]
        mask = live >= 0
        return live[mask], self.token[: self._top][mask]


class SimpleOwner(Owner):
    """An owner that keeps its pages in one :class:`PageSet`: enough for most workloads and tests."""

    def __init__(self, machine: OwnerHost, name: str) -> None:
        self.name = name
        self.pages = PageSet(machine)
        machine.register_owner(self)

    def pages_migrated(self, src: np.ndarray, dst: np.ndarray) -> None:
        self.pages.migrated(src, dst)

    def expected_contents(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pages.contents()
