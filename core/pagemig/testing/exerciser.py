"""The exerciser: the few methods a driver adds so that the kit can make it work.

The kit cannot know how a balloon inflates, how zram stores an object or how a GPU
allocates a buffer; it only needs the driver to take pages and to give some back.
So a driver under test implements two methods, and may implement three more that
unlock more of the suite:

required
    ``populate(n) -> int``
        take about ``n`` more pages the way the driver normally does (inflate,
        store objects, allocate a buffer), mark them movable when the driver is
        movable, and write their content; return how many pages it added.
    ``release(n) -> int``
        give back up to ``n`` pages the way the driver normally does (deflate, free
        objects, free a buffer); return how many pages it freed.

optional
    ``release_pfn(pfn) -> bool``
        free that page now, even if compaction holds it isolated (what zsmalloc
        does when the last object of an isolated zspage is freed); return False if
        the driver cannot.  Without it the "freed while isolated" test relies on
        ``release(n)``, and is skipped if that never frees an isolated page.
    ``contended()``
        a context manager: while inside, the driver is busy (its lock is held, a
        fence is in flight) and ``migrate_page`` must answer ``-EAGAIN``.
    ``conformance_state()``
        any value that compares equal when the driver's structures are equal (its
        lists, their order, its counters of held pages); isolate then putback must
        leave it unchanged.  Without it the kit compares what
        ``expected_contents()`` reports and which pages are marked movable.

What the driver references is what :meth:`~pagemig.mm.owner.Owner.expected_contents`
returns (the pfns it believes it holds and the content it last wrote to each), the
same answer the checker uses; there is no separate ``referenced_pfns``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pagemig.testing.rules import ConformanceError

REQUIRED_METHODS = ("populate", "release")
OPTIONAL_METHODS = ("release_pfn", "contended", "conformance_state")


@runtime_checkable
class Exerciser(Protocol):
    """The required half of the interface (see the module's docstring for the optional one)."""

    def populate(self, n: int) -> int: ...

    def release(self, n: int) -> int: ...


def check_exerciser(driver: Any) -> None:
    """Refuse, naming what is missing, a driver the kit cannot drive."""
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(driver, m, None))]
    if missing:
        raise ConformanceError(
            "exerciser",
            f"{type(driver).__name__} has no {' and no '.join(f'{m}(n)' for m in missing)}",
            driver=getattr(driver, "name", ""), plugin=getattr(driver, "plugin", ""))


def call_count(driver: Any, method: str, n: int) -> int:
    """Call ``populate``/``release`` and check that the answer is a page count.

    A driver that allocates in units (a zspage of 1-4 pages, a GPU buffer) may add or
    free somewhat more than ``n``, so only the type and sign are checked.
    """
    got = getattr(driver, method)(n)
    if isinstance(got, bool) or not isinstance(got, int) or got < 0:
        raise ConformanceError("exerciser", f"{method}({n}) returned {got!r}; expected a whole number "
                               "of pages >= 0",
                               driver=getattr(driver, "name", ""), plugin=getattr(driver, "plugin", ""))
    return got
