"""Per-page state: 16 bytes a page, one buffer seen as NumPy and as memoryview.

The truth here is the layout the design fixes (design.md rule 1, issue 2 item 3):
five columns of 1+1+2+4+8 bytes, and the two views of a column must be the same
memory, or the allocator's scalar hot path and the vectorised scanners would
disagree about a page.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.owner import PageSet
from pagemig.mm.pages import BYTES_PER_PAGE, Page, PageArrays, PageFlag, PageKind, copy_page


def test_sixteen_bytes_per_page() -> None:
    pages = PageArrays(1000)
    assert BYTES_PER_PAGE == 16
    assert pages.nbytes == 1000 * (1 + 1 + 2 + 4 + 8)
    assert pages.nbytes == 1000 * BYTES_PER_PAGE
    assert [pages.kind.dtype, pages.flags.dtype, pages.owner.dtype, pages.private.dtype, pages.token.dtype] == [
        np.uint8, np.uint8, np.uint16, np.uint32, np.uint64]
    assert all(len(a) == 1000 for a in (pages.kind, pages.flags, pages.owner, pages.private, pages.token))


@given(pfn=st.integers(0, 999), kind=st.integers(0, 255), flags=st.integers(0, 255),
       owner=st.integers(0, 0xFFFF), private=st.integers(0, 0xFFFFFFFF), token=st.integers(0, 2**64 - 1))
def test_numpy_and_memoryview_are_the_same_memory(pfn: int, kind: int, flags: int, owner: int,
                                                   private: int, token: int) -> None:
    pages = PageArrays(1000)
    pages._kind[pfn] = kind
    pages._flags[pfn] = flags
    pages._owner[pfn] = owner
    pages._private[pfn] = private
    pages._token[pfn] = token
    assert (int(pages.kind[pfn]), int(pages.flags[pfn]), int(pages.owner[pfn]),
            int(pages.private[pfn]), int(pages.token[pfn])) == (kind, flags, owner, private, token)
    # and back: a NumPy write shows through the memoryview
    pages.token[pfn] = np.uint64(token ^ 0xFFFF)
    assert pages._token[pfn] == token ^ 0xFFFF
    # no neighbour was touched
    others = np.ones(1000, dtype=bool)
    others[pfn] = False
    assert not pages.owner[others].any() and not pages.private[others].any()


def test_columns_reject_values_that_do_not_fit() -> None:
    pages = PageArrays(4)
    with pytest.raises((ValueError, OverflowError)):
        pages._owner[0] = 0x10000
    with pytest.raises((ValueError, OverflowError)):
        pages._kind[0] = 256


def test_page_view_reads_and_writes_the_columns() -> None:
    m = Machine(MachineConfig.arm32_device(64 * MiB))
    pfn = m.alloc_pages(0, 0, 1, PageKind.DRIVER)
    assert pfn >= 0
    page = Page(m, pfn)
    assert page.kind is PageKind.DRIVER
    assert page.owner_id == 1
    page.token = 0xDEADBEEF
    page.private = 7
    assert m.pages.token[pfn] == 0xDEADBEEF and m.pages.private[pfn] == 7
    assert not page.movable and not page.isolated and not page.locked
    m.pages._flags[pfn] |= PageFlag.LOCKED
    assert page.locked and page.test(PageFlag.LOCKED)
    assert page == Page(m, pfn) and hash(page) == hash(Page(m, pfn)) and page != Page(m, pfn + 1)
    assert "DRIVER" in repr(page)


def test_copy_page_carries_the_content_and_nothing_else() -> None:
    m = Machine(MachineConfig.arm32_device(64 * MiB))
    src, dst = m.alloc_pages(0, 0, 1, PageKind.DRIVER), m.alloc_pages(0, 0, 1, PageKind.DRIVER)
    m.pages._token[src] = 0x1234_5678_9ABC_DEF0
    m.pages._private[src] = 42
    copy_page(Page(m, dst), Page(m, src))
    assert m.pages._token[dst] == 0x1234_5678_9ABC_DEF0
    assert m.pages._private[dst] == 0  # the driver's own slot is the driver's business


def test_page_flag_and_kind_values_fit_their_columns() -> None:
    assert all(0 <= int(k) < 256 for k in PageKind)
    assert all(int(f).bit_count() == 1 and int(f) < 256 for f in PageFlag)
    assert int(PageKind.FREE) == 0  # a zeroed page array is "all free": the checker relies on it


# ------------------------------------------------------------------------------ PageSet
def test_page_set_tracks_slots_through_growth() -> None:
    """An owner's page set: every page's slot is in its ``private``; the arrays grow from any
    starting capacity (0 included) and the NumPy views see what the per-page methods wrote."""
    m = Machine(MachineConfig.arm32_device(64 * MiB))
    ps = PageSet(m, capacity=0)
    pfns = [m.alloc_pages(0, 0, 1, PageKind.ANON) for _ in range(100)]
    for i, pfn in enumerate(pfns):
        ps.add(pfn, 1000 + i)
    assert len(ps) == 100 and all(p in ps for p in pfns)
    assert sorted(ps.pfns().tolist()) == sorted(pfns)
    got_pfns, got_tokens = ps.contents()
    assert dict(zip(got_pfns.tolist(), got_tokens.tolist(), strict=True)) == {p: 1000 + i for i, p in enumerate(pfns)}
    assert [int(m.pages.token[p]) for p in pfns] == [1000 + i for i in range(100)]
    ps.write(pfns[5], 7)
    assert m.pages.token[pfns[5]] == 7 and ps.token[m.pages.private[pfns[5]]] == 7
    ps.remove(pfns[0])
    assert pfns[0] not in ps and len(ps) == 99
    ps.add(pfns[0], 5)  # the freed slot is reused
    assert len(ps) == 100 and ps.pfn[m.pages.private[pfns[0]]] == pfns[0]


def test_page_set_refuses_pages_it_does_not_hold() -> None:
    m = Machine(MachineConfig.arm32_device(64 * MiB))
    ps = PageSet(m)
    a, b, stranger = (m.alloc_pages(0, 0, 1, PageKind.ANON) for _ in range(3))
    ps.add(a, 1)
    ps.add(b, 2)
    m.pages._private[stranger] = 10**6  # a slot far beyond the set's arrays
    with pytest.raises(KeyError):
        ps.remove(stranger)
    assert stranger not in ps
    with pytest.raises(KeyError):
        ps.remove_many(np.array([a, stranger]))
    with pytest.raises(KeyError, match="twice"):
        ps.remove_many(np.array([a, a]))
    assert len(ps) == 2 and a in ps and b in ps  # all or nothing
    ps.remove_many(np.array([a, b]))
    assert len(ps) == 0 and not ps.pfns().size


def test_page_set_follows_migration_through_private() -> None:
    """The core copies ``private`` with the page; ``migrated`` rewrites the slots' pfns."""
    m = Machine(MachineConfig.arm32_device(64 * MiB))
    ps = PageSet(m)
    src = [m.alloc_pages(0, 0, 1, PageKind.ANON) for _ in range(4)]
    dst = [m.alloc_pages(0, 0, 1, PageKind.ANON) for _ in range(4)]
    for i, p in enumerate(src):
        ps.add(p, i)
    m.pages.private[dst] = m.pages.private[src]
    m.pages.token[dst] = m.pages.token[src]
    ps.migrated(np.array(src), np.array(dst))
    assert sorted(ps.pfns().tolist()) == sorted(dst)
    assert all(p in ps for p in dst)
