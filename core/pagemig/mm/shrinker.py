"""Slab shrinkers (``struct shrinker``, ``shrink_slab``/``do_shrink_slab`` of mm/vmscan.c, v6.1).

A slab cache that can give memory back registers a :class:`Shrinker`; reclaim calls
:func:`shrink_slab` once per scan round, at the round's priority.

Simplified, and why: counts are in pages, not objects (the simulator has pages, not
slab objects); there is no deferred work (``nr_deferred``), no memcg or NUMA
awareness, no ``SHRINKER_NONSLAB``.  The machine keeps the list (the kernel's
``shrinker_list`` is global), so this module sits below the machine and types it by
what it uses.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol, runtime_checkable

DEFAULT_SEEKS = 2  # a shrinker's cost to recreate an object
SHRINK_BATCH = 128


@runtime_checkable
class Shrinker(Protocol):
    """A slab cache's shrinker (``struct shrinker``), counting in pages.

    ``count_objects()`` says how many pages could be freed; ``scan_objects(n)``
    frees up to n of them and returns how many it freed.  Optional ``seeks``
    (default ``DEFAULT_SEEKS``).
    """

    name: str

    def count_objects(self) -> int: ...

    def scan_objects(self, nr_to_scan: int) -> int: ...


def register_shrinker(machine: ShrinkerHost, shrinker: Shrinker) -> None:
    """``register_shrinker()``: reclaim scans it from now on."""
    if not isinstance(shrinker, Shrinker):
        raise TypeError(f"{shrinker!r} is not a Shrinker: it needs name, count_objects() and scan_objects(n)")
    machine.shrinkers.append(shrinker)


def shrink_slab(machine: ShrinkerHost, priority: int) -> int:
    """``shrink_slab``/``do_shrink_slab``: scan ``freeable >> priority`` * 4 / seeks objects
    per shrinker in batches of 128, capped at twice the freeable count; ``slabs_scanned``."""
    freed = 0
    for shrinker in machine.shrinkers:
        freeable = int(shrinker.count_objects())
        if freeable <= 0:
            continue
        seeks = int(getattr(shrinker, "seeks", DEFAULT_SEEKS))
        total_scan = ((freeable >> priority) * 4 // seeks) if seeks else freeable // 2
        total_scan = min(total_scan, 2 * freeable)
        while total_scan >= SHRINK_BATCH or total_scan >= freeable:
            nr = min(SHRINK_BATCH, total_scan)
            if nr <= 0:
                break
            got = int(shrinker.scan_objects(nr))
            if got < 0:
                raise ValueError(f"shrinker {shrinker.name!r} returned {got} freed")
            freed += got
            machine.vmstat["slabs_scanned"] += nr
            total_scan -= nr
    return freed



class ShrinkerHost(Protocol):
    """What the shrinker calls need of a machine: its shrinker list and event counters."""

    @property
    def shrinkers(self) -> list[Shrinker]: ...

    @property
    def vmstat(self) -> Counter[str]: ...


__all__ = ["DEFAULT_SEEKS", "SHRINK_BATCH", "Shrinker", "ShrinkerHost", "register_shrinker", "shrink_slab"]
