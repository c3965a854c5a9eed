"""zsmalloc as Linux v4.8 has it (mm/zsmalloc.c): size classes, zspages, handles, migration.

zsmalloc stores compressed objects of 32 bytes to 4 KiB densely.  Objects live in
*size classes* 16 bytes apart; each class packs its objects into *zspages*, chains of
1 to 4 order-0 pages chosen so that the class wastes least, and an object may straddle
two pages of its chain.  A *handle* is an indirection the user keeps: it names an
*obj*, the pfn of the page where the object starts and the object's index in its
zspage, so migration only rewrites handles and the user never notices.

What is kept and how (pages are arrays, not objects):

* a zspage is a row in a struct-of-arrays table (its class, objects in use, fullness
  group, chain of pfns, how many of its pages compaction holds isolated); each class
  has a table of object slots per zspage (the handle stored in the object's header
  in the kernel: ``OBJ_ALLOCATED_TAG | handle``) and a free-object stack per zspage
  (``zspage->freeobj``);
* handles are rows of a handle table: the encoded obj, the object's length, its
  content (a 64-bit token: what zram stored) and a pin bit (``HANDLE_PIN_BIT``, held
  while the object is mapped);
* each page of a zspage carries, as its content token, a mix of its zspage identity and
  the objects that overlap it, updated as objects come and go; the driver keeps the
  same token in its :class:`~pagemig.api.PageSet`, so the checker catches a
  migration that forgets to copy a page, and :meth:`ZsPool.verify` recomputes every
  page's token from the objects to catch bookkeeping that drifted;
* fullness lists keep the kernel's order exactly: ``insert_zspage`` puts a zspage at
  a list's head unless it has fewer objects in use than the head, in which case it
  goes right after the head.

The movable-page callbacks are ``zs_page_isolate``, ``zs_page_migrate`` and
``zs_page_putback`` of v4.8, and :meth:`ZsPool.compact` is ``zs_compact``.  Simplified:
no per-cpu mapping areas, no class locks (the simulator is single-threaded: the one
interleaving that matters, the VM isolating a page of a zspage that ``zs_compact`` holds,
is reproduced by running the compactor step by step, see :meth:`ZsPool.compact_steps`),
handles are 64-bit (a 32-bit ARM kernel packs them into 32 bits; the arithmetic is the
same), and empty zspages whose pages were isolated are freed by the next pool
operation instead of a workqueue (``async_free_zspage``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal

import attrs
import numpy as np

from pagemig.api import (
    EAGAIN,
    EBUSY,
    MIGRATEPAGE_SUCCESS,
    PAGE_SHIFT,
    PAGE_SIZE,
    MigrateMode,
    Page,
    PageSet,
    clear_movable,
    copy_page,
    set_movable,
)

if TYPE_CHECKING:
    from pagemig.api import Machine, MovableOperations

# ------------------------------------------------------------------ v4.8 constants (64-bit)
ZS_MAX_ZSPAGE_ORDER = 2
ZS_MAX_PAGES_PER_ZSPAGE = 1 << ZS_MAX_ZSPAGE_ORDER  # 4
MAX_PHYSMEM_BITS = 46  # x86-64
OBJ_TAG_BITS = 1
OBJ_INDEX_BITS = 64 - (MAX_PHYSMEM_BITS - PAGE_SHIFT) - OBJ_TAG_BITS  # 29
OBJ_INDEX_MASK = (1 << OBJ_INDEX_BITS) - 1
ZS_MIN_ALLOC_SIZE = max(32, (ZS_MAX_PAGES_PER_ZSPAGE << PAGE_SHIFT) >> OBJ_INDEX_BITS)  # 32
ZS_MAX_ALLOC_SIZE = PAGE_SIZE
CLASS_BITS = 8
ZS_SIZE_CLASS_DELTA = PAGE_SIZE >> CLASS_BITS  # 16
ZS_SIZE_CLASSES = -(-(ZS_MAX_ALLOC_SIZE - ZS_MIN_ALLOC_SIZE) // ZS_SIZE_CLASS_DELTA) + 1  # 255
ZS_HANDLE_SIZE = 8  # the handle kept in each object's header (not for the huge class)

ZS_EMPTY, ZS_ALMOST_EMPTY, ZS_ALMOST_FULL, ZS_FULL = 0, 1, 2, 3
NR_ZS_FULLNESS = 4
FULLNESS_NAMES = ("empty", "almost_empty", "almost_full", "full")
FULLNESS_THRESHOLD_FRAC = 4

_MASK64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64's finaliser: a fixed, well-spread 64-bit hash (content tokens, compressibility)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _view(arr: np.ndarray, fmt: Literal["b", "B", "i", "q", "Q"]) -> memoryview[int]:
    """A flat memoryview of a contiguous array: scalar access at a third of NumPy's cost."""
    return arr.data.cast("B").cast(fmt)


def get_pages_per_zspage(class_size: int) -> int:
    """``get_pages_per_zspage()``: the chain length (1-4 pages) that wastes least.

    usedpc = (zspage_size - zspage_size % class_size) * 100 / zspage_size, integer
    arithmetic, first maximum wins.
    """
    max_usedpc = 0
    best = 1
    for i in range(1, ZS_MAX_PAGES_PER_ZSPAGE + 1):
        zspage_size = i * PAGE_SIZE
        waste = zspage_size % class_size
        usedpc = (zspage_size - waste) * 100 // zspage_size
        if usedpc > max_usedpc:
            max_usedpc = usedpc
            best = i
    return best


def get_size_class_index(size: int) -> int:
    """``get_size_class_index()``: the class for an object of ``size`` bytes (handle included)."""
    idx = 0
    if size > ZS_MIN_ALLOC_SIZE:
        idx = -(-(size - ZS_MIN_ALLOC_SIZE) // ZS_SIZE_CLASS_DELTA)
    return min(ZS_SIZE_CLASSES - 1, idx)


def get_fullness_group(inuse: int, objs_per_zspage: int) -> int:
    """``get_fullness_group()``: empty, full, or almost empty up to 3/4 in use, else almost full."""
    if inuse == 0:
        return ZS_EMPTY
    if inuse == objs_per_zspage:
        return ZS_FULL
    if inuse <= objs_per_zspage * (FULLNESS_THRESHOLD_FRAC - 1) // FULLNESS_THRESHOLD_FRAC:
        return ZS_ALMOST_EMPTY
    return ZS_ALMOST_FULL


class FullnessList:
    """One ``class->fullness_list[fg]``: a head, then the rest most recently added first.

    ``list_add(z, list)`` makes z the head (the old head becomes second);
    ``list_add(z, &head->list)`` puts z right after the head.  Both are O(1) here.
    """

    __slots__ = ("head", "rest")

    def __init__(self) -> None:
        self.head = -1
        self.rest: dict[int, None] = {}  # insertion order; the last item is right after the head

    def __len__(self) -> int:
        return len(self.rest) + (self.head >= 0)

    def __contains__(self, z: int) -> bool:
        return z == self.head or z in self.rest

    def __iter__(self) -> Iterator[int]:
        if self.head >= 0:
            yield self.head
        yield from reversed(self.rest)

    def first(self) -> int:
        return self.head

    def add_head(self, z: int) -> None:
        if self.head >= 0:
            self.rest[self.head] = None
        self.head = z

    def add_after_head(self, z: int) -> None:
        self.rest[z] = None

    def remove(self, z: int) -> None:
        if z == self.head:
            self.head = self.rest.popitem()[0] if self.rest else -1
        else:
            del self.rest[z]


@attrs.define(eq=False)
class SizeClass:
    """``struct size_class``: geometry, fullness lists, object statistics, object slots."""

    index: int  # the highest class index that shares this geometry (what class->index holds)
    size: int
    pages_per_zspage: int
    objs_per_zspage: int
    huge: bool
    lists: list[FullnessList] = attrs.field(factory=lambda: [FullnessList() for _ in range(NR_ZS_FULLNESS)])
    obj_allocated: int = 0  # OBJ_ALLOCATED: object slots in this class's zspages
    obj_used: int = 0  # OBJ_USED
    slots: np.ndarray = attrs.field(init=False)  # (rows, objs_per_zspage) handles, 0 = free
    flat: memoryview = attrs.field(init=False)  # the same, flat, for scalar access (row * objs + idx)
    free_rows: list[int] = attrs.field(factory=list)
    first_obj: list[int] = attrs.field(init=False)  # per page of the chain: first object starting there
    span: list[tuple[int, int]] = attrs.field(init=False)  # per object: first and last page it touches

    def __attrs_post_init__(self) -> None:
        self.slots = np.zeros((16, self.objs_per_zspage), dtype=np.int64)
        self.flat = _view(self.slots, "q")
        self.free_rows = list(range(15, -1, -1))
        size = self.size
        self.first_obj = [-(-(k * PAGE_SIZE) // size) for k in range(self.pages_per_zspage + 1)]
        self.first_obj = [min(i, self.objs_per_zspage) for i in self.first_obj]
        self.span = [((i * size) >> PAGE_SHIFT, ((i + 1) * size - 1) >> PAGE_SHIFT)
                     for i in range(self.objs_per_zspage)]

    def take_row(self) -> int:
        if not self.free_rows:
            n = len(self.slots)
            grown = np.zeros((2 * n, self.objs_per_zspage), dtype=np.int64)
            grown[:n] = self.slots
            self.slots = grown
            self.flat = _view(grown, "q")
            self.free_rows = list(range(2 * n - 1, n - 1, -1))
        return self.free_rows.pop()

    def page_of(self, obj_idx: int) -> int:
        """Which page of the chain object ``obj_idx`` starts in."""
        return (obj_idx * self.size) >> PAGE_SHIFT


def build_size_classes() -> tuple[list[SizeClass], list[SizeClass]]:
    """``zs_create_pool()``'s class setup: walk from the largest size down, merging a class
    into the one above it when both have the same pages per zspage and objects per zspage.

    Returns (the table indexed by class index, possibly repeating a merged class; the
    distinct classes, largest first).
    """
    table: list[SizeClass | None] = [None] * ZS_SIZE_CLASSES
    distinct: list[SizeClass] = []
    prev: SizeClass | None = None
    for i in range(ZS_SIZE_CLASSES - 1, -1, -1):
        size = min(ZS_MIN_ALLOC_SIZE + i * ZS_SIZE_CLASS_DELTA, ZS_MAX_ALLOC_SIZE)
        ppz = get_pages_per_zspage(size)
        objs = ppz * PAGE_SIZE // size
        if prev is not None and prev.pages_per_zspage == ppz and prev.objs_per_zspage == objs:
            table[i] = prev  # can_merge()
            continue
        cls = SizeClass(index=i, size=size, pages_per_zspage=ppz, objs_per_zspage=objs, huge=ppz == 1 and objs == 1)
        table[i] = cls
        distinct.append(cls)
        prev = cls
    return [c for c in table if c is not None], distinct


def encode_obj(pfn: int, obj_idx: int) -> int:
    """``location_to_obj()``: the pfn where the object starts, and its index in the zspage."""
    return (pfn << OBJ_INDEX_BITS) | (obj_idx & OBJ_INDEX_MASK)


def decode_obj(obj: int) -> tuple[int, int]:
    """``obj_to_location()``."""
    return obj >> OBJ_INDEX_BITS, obj & OBJ_INDEX_MASK


class ZsPool:
    """``struct zs_pool`` over the machine's pages; ``owner`` is the driver that holds them.

    ``alloc_page(gfp) -> pfn | -1`` is how the pool gets a page (the zram device
    decides how: from reclaim it may dip below the watermarks); ``ops`` is the
    driver's movable-operations object, used when marking pages movable.
    """

    def __init__(self, machine: Machine, owner_id: int, alloc_page: Callable[[int], int],
                 ops: MovableOperations | None, *, movable: bool) -> None:
        self.machine = machine
        self.owner_id = owner_id
        self.alloc_page = alloc_page
        self.ops = ops
        self.movable = movable
        self.size_class, self.classes = build_size_classes()
        self.pages = PageSet(machine, capacity=4096)  # every page of every zspage
        # per PageSet slot: which zspage, and which page of its chain
        self._slot_zspage = np.full(4096, -1, dtype=np.int32)
        self._slot_index = np.zeros(4096, dtype=np.int8)
        self._szv = _view(self._slot_zspage, "i")
        self._siv = _view(self._slot_index, "b")
        # zspages (struct zspage), struct-of-arrays in Python lists for scalar speed
        self.zs_class: list[SizeClass | None] = []
        self.zs_inuse: list[int] = []
        self.zs_fg: list[int] = []
        self.zs_isolated: list[int] = []
        self.zs_chain: list[list[int]] = []
        self.zs_row: list[int] = []
        self.zs_freeobj: list[list[int]] = []
        self.zs_compacting: list[bool] = []
        self.zs_serial: list[int] = []  # identity mixed into its pages' tokens
        self._free_ids: list[int] = []
        self._serial = 0
        self.nr_zspages = 0
        # handles: a table indexed by handle (0 is "no handle", as zs_malloc's failure)
        cap = 1024
        self.h_obj = np.zeros(cap, dtype=np.int64)
        self.h_len = np.zeros(cap, dtype=np.int32)
        self.h_value = np.zeros(cap, dtype=np.uint64)
        self.h_pinned = np.zeros(cap, dtype=np.uint8)
        self._views()
        self._free_handles: list[int] = list(range(cap - 1, 0, -1))
        self.nr_handles = 0
        # statistics
        self.pages_allocated = 0
        self.pages_compacted = 0  # pool->stats.pages_compacted
        self.objs_compacted = 0
        self.pages_migrated = 0  # zspage pages moved by kernel compaction
        self.migrate_ebusy = 0
        self.migrate_eagain = 0
        self.isolate_refused = 0
        self.alloc_failures = 0
        self._deferred_free = 0

    # ------------------------------------------------------------------ tables
    def _grow_handles(self) -> None:
        n = len(self.h_obj)
        self.h_obj = np.concatenate((self.h_obj, np.zeros(n, dtype=np.int64)))
        self.h_len = np.concatenate((self.h_len, np.zeros(n, dtype=np.int32)))
        self.h_value = np.concatenate((self.h_value, np.zeros(n, dtype=np.uint64)))
        self.h_pinned = np.concatenate((self.h_pinned, np.zeros(n, dtype=np.uint8)))
        self._views()
        self._free_handles.extend(range(2 * n - 1, n - 1, -1))

    def _views(self) -> None:
        self._ho = _view(self.h_obj, "q")
        self._hl = _view(self.h_len, "i")
        self._hv = _view(self.h_value, "Q")
        self._hp = _view(self.h_pinned, "B")

    def _slot_of(self, pfn: int) -> int:
        return self.machine.pages._private[pfn]

    def zspage_of(self, pfn: int) -> int:
        """``get_zspage(page)``: the zspage a page of this pool belongs to."""
        return self._szv[self.machine.pages._private[pfn]]

    def _map_page(self, pfn: int, z: int, k: int, token: int) -> None:
        self.pages.add(pfn, token)
        slot = self._slot_of(pfn)
        if slot >= len(self._slot_zspage):
            n = len(self._slot_zspage)
            while n <= slot:
                n *= 2
            zs = np.full(n, -1, dtype=np.int32)
            zs[: len(self._slot_zspage)] = self._slot_zspage
            ix = np.zeros(n, dtype=np.int8)
            ix[: len(self._slot_index)] = self._slot_index
            self._slot_zspage, self._slot_index = zs, ix
            self._szv = _view(zs, "i")
            self._siv = _view(ix, "b")
        self._szv[slot] = z
        self._siv[slot] = k

    def _unmap_page(self, pfn: int) -> None:
        slot = self._slot_of(pfn)
        self._szv[slot] = -1
        self.pages.remove(pfn)

    def _page_base_token(self, z: int, k: int) -> int:
        return mix64((self.zs_serial[z] << 2) | k)

    def _obj_token(self, value: int, obj_idx: int, k: int) -> int:
        """An object's share of a page's content: a hash of its value and where it lies."""
        return mix64(value ^ ((((obj_idx << 2) | k) * 0xD6E8FEB86659FD93) & _MASK64))

    def _touch_pages(self, cls: SizeClass, z: int, obj_idx: int, value: int) -> None:
        """XOR an object's contribution into the tokens of the pages it overlaps."""
        first, last = cls.span[obj_idx]
        chain = self.zs_chain[z]
        ps = self.pages
        for k in range(first, last + 1):
            pfn = chain[k]
            ps.write(pfn, self.machine.pages._token[pfn] ^ self._obj_token(value, obj_idx, k))

    # ------------------------------------------------------------------ lists
    def _insert_zspage(self, cls: SizeClass, z: int, fg: int) -> None:
        """``insert_zspage()``: the head, unless the zspage has fewer objects in use than the head."""
        lst = cls.lists[fg]
        head = lst.first()
        if head >= 0 and self.zs_inuse[z] < self.zs_inuse[head]:
            lst.add_after_head(z)
        else:
            lst.add_head(z)
        self.zs_fg[z] = fg

    def _remove_zspage(self, cls: SizeClass, z: int) -> None:
        cls.lists[self.zs_fg[z]].remove(z)

    def _on_list(self, z: int) -> bool:
        cls = self.zs_class[z]
        return cls is not None and z in cls.lists[self.zs_fg[z]]

    def _fix_fullness_group(self, cls: SizeClass, z: int) -> int:
        """``fix_fullness_group()``: move the zspage to the list its use now calls for
        (an isolated zspage is off every list: only its recorded group changes)."""
        new = get_fullness_group(self.zs_inuse[z], cls.objs_per_zspage)
        if new != self.zs_fg[z]:
            if self.zs_isolated[z] == 0 and not self.zs_compacting[z]:
                self._remove_zspage(cls, z)
                self._insert_zspage(cls, z, new)
            else:
                self.zs_fg[z] = new
        return new

    # ------------------------------------------------------------------ zspages
    def _alloc_zspage(self, cls: SizeClass, gfp: int) -> int:
        """``alloc_zspage()``: the chain's pages one at a time; all or nothing."""
        got: list[int] = []
        for _ in range(cls.pages_per_zspage):
            pfn = self.alloc_page(gfp)
            if pfn < 0:
                for p in got:
                    self.machine.free_pages(p)
                return -1
            got.append(pfn)
        if self._free_ids:
            z = self._free_ids.pop()
        else:
            z = len(self.zs_class)
            for col, val in ((self.zs_class, None), (self.zs_inuse, 0), (self.zs_fg, ZS_EMPTY),
                             (self.zs_isolated, 0), (self.zs_chain, None), (self.zs_row, -1),
                             (self.zs_freeobj, None), (self.zs_compacting, False), (self.zs_serial, 0)):
                col.append(val)  # type: ignore[arg-type]
        self._serial += 1
        self.zs_class[z] = cls
        self.zs_inuse[z] = 0
        self.zs_fg[z] = ZS_EMPTY
        self.zs_isolated[z] = 0
        self.zs_chain[z] = got
        self.zs_row[z] = cls.take_row()
        self.zs_freeobj[z] = list(range(cls.objs_per_zspage - 1, -1, -1))
        self.zs_compacting[z] = False
        self.zs_serial[z] = self._serial
        for k, pfn in enumerate(got):
            self._map_page(pfn, z, k, self._page_base_token(z, k))
        cls.obj_allocated += cls.objs_per_zspage
        self.pages_allocated += cls.pages_per_zspage
        self.nr_zspages += 1
        return z

    def _set_zspage_movable(self, z: int) -> None:
        """``SetZsPageMovable()``: only once the zspage is fully set up and on its list."""
        if not self.movable or self.ops is None:
            return
        m = self.machine
        for pfn in self.zs_chain[z]:
            set_movable(Page(m, pfn), self.ops)

    def _free_zspage(self, cls: SizeClass, z: int) -> None:
        """``free_zspage()``: an empty zspage off its list, its pages back to the allocator."""
        if self._on_list(z):
            self._remove_zspage(cls, z)
        m = self.machine
        chain = self.zs_chain[z]
        for pfn in chain:
            clear_movable(Page(m, pfn))
            self._unmap_page(pfn)
            m.free_pages(pfn)  # 1-4 pages: single frees cost less than the bulk form's set-up
        cls.obj_allocated -= cls.objs_per_zspage
        cls.slots[self.zs_row[z]] = 0
        cls.free_rows.append(self.zs_row[z])
        self.pages_allocated -= cls.pages_per_zspage
        self.nr_zspages -= 1
        self.zs_class[z] = None
        self.zs_chain[z] = []
        self.zs_freeobj[z] = []
        self._free_ids.append(z)

    def _async_free_zspages(self) -> None:
        """``async_free_zspage()``: free the empty zspages that putback left on the empty lists."""
        if not self._deferred_free:
            return
        self._deferred_free = 0
        for cls in self.classes:
            lst = cls.lists[ZS_EMPTY]
            for z in list(lst):
                if self.zs_isolated[z] == 0 and self.zs_inuse[z] == 0:
                    self._free_zspage(cls, z)

    # ------------------------------------------------------------------ objects
    def _obj_malloc(self, cls: SizeClass, z: int, handle: int) -> int:
        """``obj_malloc()``: the zspage's first free object; returns the encoded obj."""
        idx = self.zs_freeobj[z].pop()
        cls.flat[self.zs_row[z] * cls.objs_per_zspage + idx] = handle
        self.zs_inuse[z] += 1
        cls.obj_used += 1
        return encode_obj(self.zs_chain[z][cls.page_of(idx)], idx)

    def _obj_free(self, cls: SizeClass, z: int, idx: int) -> None:
        cls.flat[self.zs_row[z] * cls.objs_per_zspage + idx] = 0
        self.zs_freeobj[z].append(idx)
        self.zs_inuse[z] -= 1
        cls.obj_used -= 1

    def _find_get_zspage(self, cls: SizeClass) -> int:
        """``find_get_zspage()``: almost full first, then almost empty, then an empty one
        waiting to be freed."""
        for fg in (ZS_ALMOST_FULL, ZS_ALMOST_EMPTY, ZS_EMPTY):
            z = cls.lists[fg].first()
            if z >= 0:
                return z
        return -1

    def malloc(self, size: int, gfp: int, value: int = 0) -> int:
        """``zs_malloc()``: store an object of ``size`` bytes holding ``value``; 0 on failure."""
        if size <= 0 or size > ZS_MAX_ALLOC_SIZE:
            raise ValueError(f"zs_malloc: size {size} outside 1..{ZS_MAX_ALLOC_SIZE}")
        self._async_free_zspages()
        if not self._free_handles:
            self._grow_handles()
        handle = self._free_handles.pop()
        cls = self.size_class[get_size_class_index(size + ZS_HANDLE_SIZE)]
        z = self._find_get_zspage(cls)
        new = z < 0
        if new:
            z = self._alloc_zspage(cls, gfp)
            if z < 0:
                self._free_handles.append(handle)
                self.alloc_failures += 1
                return 0
        obj = self._obj_malloc(cls, z, handle)
        if new:
            self._insert_zspage(cls, z, get_fullness_group(self.zs_inuse[z], cls.objs_per_zspage))
        else:
            self._fix_fullness_group(cls, z)
        self._ho[handle] = obj
        self._hl[handle] = size
        self._hv[handle] = value
        self._hp[handle] = 0
        self._touch_pages(cls, z, obj & OBJ_INDEX_MASK, value)
        self.nr_handles += 1
        if new:
            self._set_zspage_movable(z)
        return handle

    def _check_handle(self, handle: int) -> None:
        if not 0 < handle < len(self.h_obj) or self._hl[handle] == 0:
            raise KeyError(f"zsmalloc: {handle} is not a live handle")

    def locate(self, handle: int) -> tuple[int, int, int]:
        """(pfn, obj index, zspage) of a live handle, the way the kernel finds them."""
        self._check_handle(handle)
        obj = self._ho[handle]
        pfn = obj >> OBJ_INDEX_BITS
        return pfn, obj & OBJ_INDEX_MASK, self._szv[self.machine.pages._private[pfn]]

    def free(self, handle: int) -> None:
        """``zs_free()``; an emptied zspage is freed at once unless compaction holds some of
        its pages isolated (then putback leaves it for the deferred free)."""
        _, idx, z = self.locate(handle)
        if self._hp[handle]:
            raise RuntimeError(f"zs_free of handle {handle} while it is mapped")
        cls = self.zs_class[z]
        assert cls is not None
        self._touch_pages(cls, z, idx, self._hv[handle])
        self._obj_free(cls, z, idx)
        self._hl[handle] = 0
        self._ho[handle] = 0
        self._free_handles.append(handle)
        self.nr_handles -= 1
        fg = self._fix_fullness_group(cls, z)
        if fg == ZS_EMPTY and self.zs_isolated[z] == 0 and not self.zs_compacting[z]:
            self._free_zspage(cls, z)

    def map_object(self, handle: int) -> int:
        """``zs_map_object()``: pin the object (migration of its page answers -EAGAIN) and read it."""
        self._check_handle(handle)
        if self._hp[handle]:
            # pin_tag() is a bit spinlock: a second mapping would spin for ever
            raise RuntimeError(f"zs_map_object: handle {handle} is already mapped")
        self._hp[handle] = 1
        return self._hv[handle]

    def unmap_object(self, handle: int) -> None:
        self._check_handle(handle)
        self._hp[handle] = 0

    def read(self, handle: int) -> int:
        """Map, read and unmap an object: what zram's read path does."""
        value = self.map_object(handle)
        self.unmap_object(handle)
        return value

    def obj_size(self, handle: int) -> int:
        self._check_handle(handle)
        return self._hl[handle]

    # ------------------------------------------------------------------ the movable callbacks
    def isolate_page(self, page: Page, mode: MigrateMode) -> bool:
        """``zs_page_isolate()``: refuse an empty zspage or one zs_compact holds; on the first
        isolated page take the zspage off its class list so no new object goes in."""
        z = self.zspage_of(page.pfn)
        if z < 0 or self.zs_inuse[z] == 0:
            self.isolate_refused += 1
            return False
        cls = self.zs_class[z]
        assert cls is not None
        on_list = self._on_list(z)
        if not on_list and self.zs_isolated[z] == 0:
            self.isolate_refused += 1  # held by zs_compact
            return False
        if on_list and self.zs_isolated[z] == 0:
            self._remove_zspage(cls, z)
        self.zs_isolated[z] += 1
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> int:
        """``zs_page_migrate()``: -EBUSY for an empty zspage, -EAGAIN if an object starting in
        the page is mapped; else copy the page, rewrite the handles of the objects that
        start in it, and put dst in the chain."""
        spfn = src.pfn
        z = self.zspage_of(spfn)
        cls = self.zs_class[z]
        assert cls is not None
        if self.zs_inuse[z] == 0:
            self.migrate_ebusy += 1
            return -EBUSY
        k = int(self._slot_index[self._slot_of(spfn)])
        row = cls.slots[self.zs_row[z]]
        lo, hi = cls.first_obj[k], cls.first_obj[k + 1]
        handles = row[lo:hi]
        live = handles[handles != 0]
        if len(live) and self.h_pinned[live].any():
            self.migrate_eagain += 1
            return -EAGAIN
        copy_page(dst, src)
        token = self.machine.pages._token[spfn]
        if len(live):
            self.h_obj[live] = (np.int64(dst.pfn) << OBJ_INDEX_BITS) | (self.h_obj[live] & OBJ_INDEX_MASK)
        self.zs_chain[z][k] = dst.pfn
        self._unmap_page(spfn)
        self._map_page(dst.pfn, z, k, token)
        if self.movable and self.ops is not None:
            set_movable(dst, self.ops)
        self.zs_isolated[z] -= 1
        if self.zs_isolated[z] == 0:
            self._putback_zspage(cls, z)
        self.pages_migrated += 1
        return MIGRATEPAGE_SUCCESS

    def putback_page(self, page: Page) -> None:
        """``zs_page_putback()``: the last isolated page puts the zspage back on its list; an
        emptied one is left for the deferred free."""
        z = self.zspage_of(page.pfn)
        cls = self.zs_class[z]
        assert cls is not None
        self.zs_isolated[z] -= 1
        if self.zs_isolated[z] == 0:
            self._putback_zspage(cls, z)

    def _putback_zspage(self, cls: SizeClass, z: int) -> int:
        """``putback_zspage()``: onto the list its fullness calls for."""
        fg = get_fullness_group(self.zs_inuse[z], cls.objs_per_zspage)
        self._insert_zspage(cls, z, fg)
        if fg == ZS_EMPTY:
            self._deferred_free += 1
        return fg

    # ------------------------------------------------------------------ zs_compact
    def zs_can_compact(self, cls: SizeClass) -> int:
        """``zs_can_compact()``: pages a class could give back: its wasted object slots in
        whole zspages."""
        if cls.obj_allocated <= cls.obj_used:
            return 0
        wasted = (cls.obj_allocated - cls.obj_used) // cls.objs_per_zspage
        return wasted * cls.pages_per_zspage

    def _isolate_zspage(self, cls: SizeClass, source: bool) -> int:
        """``isolate_zspage()``: a source from almost empty first, a destination from almost full first."""
        order = (ZS_ALMOST_EMPTY, ZS_ALMOST_FULL) if source else (ZS_ALMOST_FULL, ZS_ALMOST_EMPTY)
        for fg in order:
            z = cls.lists[fg].first()
            if z >= 0:
                cls.lists[fg].remove(z)
                self.zs_compacting[z] = True
                return z
        return -1

    def _migrate_zspage(self, cls: SizeClass, src: int, dst: int) -> tuple[bool, int]:
        """``migrate_zspage()``: move src's unpinned objects into dst until dst is full.
        Returns (src has no movable object left, objects moved)."""
        row = cls.slots[self.zs_row[src]]
        moved = 0
        for idx in np.flatnonzero(row).tolist():
            handle = int(row[idx])
            if self._hp[handle]:
                continue  # find_alloced_obj skips objects it cannot pin
            if self.zs_inuse[dst] == cls.objs_per_zspage:
                return False, moved
            value = self._hv[handle]
            self._touch_pages(cls, src, idx, value)
            self._obj_free(cls, src, idx)
            obj = self._obj_malloc(cls, dst, handle)
            self._ho[handle] = obj
            self._touch_pages(cls, dst, obj & OBJ_INDEX_MASK, value)
            self.objs_compacted += 1
            moved += 1
        return True, moved

    def _release_compacting(self, cls: SizeClass, z: int) -> int:
        """``putback_zspage()`` of a zspage the compactor held."""
        self.zs_compacting[z] = False
        return self._putback_zspage(cls, z)

    def compact_class(self, cls: SizeClass) -> Iterator[tuple[int, int]]:
        """``__zs_compact()`` for one class, as a generator that yields ``(src, dst)`` while
        it holds both zspages off their lists (the moments the VM could race with it).

        One departure: a source that gives up no object (all its objects are mapped)
        ends the class.  The kernel would pick it again after ``cond_resched()`` and
        find the pins gone; here nothing runs in between, so it would spin for ever.
        """
        while True:
            src = self._isolate_zspage(cls, True)
            if src < 0:
                return
            if not self.zs_can_compact(cls):
                self._release_compacting(cls, src)
                return
            dst = -1
            moved = 0
            while True:
                dst = self._isolate_zspage(cls, False)
                if dst < 0:
                    break
                yield src, dst
                done, n = self._migrate_zspage(cls, src, dst)
                moved += n
                if done:
                    break
                self._release_compacting(cls, dst)  # dst is full: try the next one
            if dst < 0:
                self._release_compacting(cls, src)  # no room anywhere
                return
            self._release_compacting(cls, dst)
            if self._release_compacting(cls, src) == ZS_EMPTY:
                self._free_zspage(cls, src)
                self.pages_compacted += cls.pages_per_zspage
            elif not moved:
                return  # only mapped objects left in the source: try again another time

    def compact_steps(self) -> Iterator[tuple[int, int]]:
        """``zs_compact()`` step by step: every distinct class, largest first."""
        self._async_free_zspages()
        for cls in self.classes:  # largest first, as zs_compact walks the indexes down
            yield from self.compact_class(cls)

    def compact(self) -> int:
        """``zs_compact()``: returns the pages it freed in this call."""
        before = self.pages_compacted
        for _ in self.compact_steps():
            pass
        return self.pages_compacted - before

    # ------------------------------------------------------------------ checks
    def verify(self) -> list[str]:
        """Every handle, zspage, list and page token, recomputed from scratch."""
        problems: list[str] = []
        tok = self.machine.pages.token
        seen_pages: set[int] = set()
        live_handles = 0
        expected_tokens: dict[int, int] = {}
        for z, cls in enumerate(self.zs_class):
            if cls is None:
                continue
            chain = self.zs_chain[z]
            if len(chain) != cls.pages_per_zspage:
                problems.append(f"zspage {z}: chain of {len(chain)} pages, class wants {cls.pages_per_zspage}")
                continue
            for k, pfn in enumerate(chain):
                if self.zspage_of(pfn) != z or int(self._slot_index[self._slot_of(pfn)]) != k:
                    problems.append(f"zspage {z}: page {k} (pfn {pfn:#x}) does not point back to it")
                if self.machine.pages._owner[pfn] != self.owner_id:
                    problems.append(f"zspage {z}: pfn {pfn:#x} is not the pool's page")
                seen_pages.add(pfn)
                expected_tokens[pfn] = self._page_base_token(z, k)
            row = cls.slots[self.zs_row[z]]
            used = np.flatnonzero(row)
            if len(used) != self.zs_inuse[z]:
                problems.append(f"zspage {z}: {len(used)} objects in its slots, inuse says {self.zs_inuse[z]}")
            if sorted(self.zs_freeobj[z] + used.tolist()) != list(range(cls.objs_per_zspage)):
                problems.append(f"zspage {z}: free list and used objects do not partition its slots")
            for idx in used.tolist():
                h = int(row[idx])
                live_handles += 1
                pfn, hidx = decode_obj(int(self.h_obj[h]))
                if hidx != idx or pfn != chain[cls.page_of(idx)]:
                    problems.append(f"handle {h}: obj says (pfn {pfn:#x}, idx {hidx}), the object is at "
                                    f"(pfn {chain[cls.page_of(idx)]:#x}, idx {idx}) of zspage {z}")
                if self.size_class[get_size_class_index(int(self.h_len[h]) + ZS_HANDLE_SIZE)] is not cls:
                    problems.append(f"handle {h}: {self.h_len[h]} bytes do not belong in class size {cls.size}")
                first, last = cls.span[idx]
                for k in range(first, last + 1):
                    expected_tokens[chain[k]] ^= self._obj_token(int(self.h_value[h]), idx, k)
            on = [fg for fg in range(NR_ZS_FULLNESS) if z in cls.lists[fg]]
            want_fg = get_fullness_group(self.zs_inuse[z], cls.objs_per_zspage)
            if self.zs_isolated[z] or self.zs_compacting[z]:
                if on:
                    problems.append(f"zspage {z}: isolated or compacting but on a list")
            elif on != [want_fg]:
                problems.append(f"zspage {z}: on lists {on}, its fullness is {FULLNESS_NAMES[want_fg]}")
        if live_handles != self.nr_handles:
            problems.append(f"{self.nr_handles} handles given out, {live_handles} objects stored")
        for pfn, want in expected_tokens.items():
            if int(tok[pfn]) != want:
                problems.append(f"pfn {pfn:#x}: content {int(tok[pfn]):#x}, its objects make {want:#x}")
                break
        held = set(self.pages.pfns().tolist())
        if held != seen_pages:
            problems.append(f"the pool's page set ({len(held)}) differs from its zspages' pages ({len(seen_pages)})")
        if self.pages_allocated != len(held):
            problems.append(f"pages_allocated is {self.pages_allocated}, the zspages hold {len(held)}")
        for cls in self.classes:
            n = sum(1 for z, c in enumerate(self.zs_class) if c is cls)
            if cls.obj_allocated != n * cls.objs_per_zspage:
                problems.append(f"class {cls.size}: obj_allocated {cls.obj_allocated} for {n} zspages")
        return problems

    def stats(self) -> dict[str, int]:
        return {
            "pages_allocated": self.pages_allocated,
            "zspages": self.nr_zspages,
            "objects": self.nr_handles,
            "pages_compacted": self.pages_compacted,
            "objs_compacted": self.objs_compacted,
            "zs_pages_migrated": self.pages_migrated,
            "zs_migrate_ebusy": self.migrate_ebusy,
            "zs_migrate_eagain": self.migrate_eagain,
            "zs_isolate_refused": self.isolate_refused,
            "zs_alloc_failures": self.alloc_failures,
        }

    def class_stats(self) -> list[dict[str, int]]:
        """Per class, as /sys/kernel/debug/zsmalloc/<pool>/classes shows it."""
        out = []
        for cls in sorted(self.classes, key=lambda c: c.index):
            n = cls.obj_allocated // cls.objs_per_zspage
            if not n:
                continue
            out.append({"index": cls.index, "size": cls.size, "almost_full": len(cls.lists[ZS_ALMOST_FULL]),
                        "almost_empty": len(cls.lists[ZS_ALMOST_EMPTY]), "obj_allocated": cls.obj_allocated,
                        "obj_used": cls.obj_used, "pages_used": n * cls.pages_per_zspage,
                        "pages_per_zspage": cls.pages_per_zspage, "freeable": self.zs_can_compact(cls)})
        return out


__all__ = [
    "ZS_MAX_PAGES_PER_ZSPAGE",
    "ZS_MIN_ALLOC_SIZE",
    "ZS_SIZE_CLASSES",
    "ZS_SIZE_CLASS_DELTA",
    "SizeClass",
    "ZsPool",
    "build_size_classes",
    "decode_obj",
    "encode_obj",
    "get_fullness_group",
    "get_pages_per_zspage",
    "get_size_class_index",
]
