"""pagemig.api: the one module a driver or a workload imports.

Everything a plugin needs is here, and nothing else: what a plugin registers and
the classes it builds on, the machine it allocates from, the movable-page protocol
and its return codes, GFP flags and page kinds, the calls reclaim and the OOM path
make into a driver, option checking with units, and scenario and command
registration.  The rest of the core (``pagemig.mm``, ``pagemig.sim``, ...) may change
under a plugin at any release; what this module exports changes only by additions
within a major :data:`API_VERSION`, and a plugin declares the version it was
written for (``PAGEMIG_API_VERSION = "1.0"`` in its entry-point module), which the
host checks before loading it.

A driver's tests may also use the conformance kit, :mod:`pagemig.testing`
(``DriverConformance``, a small machine, the VM side of isolate/migrate/putback).

The machine (:class:`Machine`) is reached through its methods; the calls a plugin
makes are:

* ``alloc_pages(gfp, order, owner_id, kind)`` / ``alloc_pages_bulk(gfp, nr, owner_id, kind)``
  (-1 / fewer pages on failure) and ``free_pages(pfn, order)`` / ``free_pages_bulk(pfns)``;
* ``alloc_page_in_reclaim(gfp, owner_id, kind)``: an allocation made from inside reclaim
  (``PF_MEMALLOC``), as a swap device storing a page does (zsmalloc under zram);
* ``adjust_managed_page_count(pfn, count)``: a balloon's pages leave the guest's memory;
* ``register_owner(owner)`` (the :class:`Driver` base does it), ``now`` (simulated
  seconds), ``nr_pages``, ``managed_pages``, ``nr_free_pages``, ``vmstat`` (the
  ``/proc/vmstat`` event counters a driver's events add to), ``stall_seconds`` (the
  simulated time charged to the allocation or compaction in progress).

Pages are read through ``machine.pages`` (NumPy columns ``kind``, ``flags``, ``owner``,
``private``, ``token`` indexed by pfn) or a :class:`Page`.  A plugin writes only the
``private`` slot and the content (``token``) of pages it holds, through :class:`Page`
or its :class:`PageSet`; kind, owner and flags change only through the calls here.
"""

from __future__ import annotations

from pagemig import API_VERSION
from pagemig import hookspecs as _hookspecs
from pagemig.driver import Driver, DriverInfo
from pagemig.mm import costs as _costs
from pagemig.mm import gfp as _gfp
from pagemig.mm import movable as _movable
from pagemig.mm import oom_kill as _oom_kill
from pagemig.mm import pages as _pages
from pagemig.mm.gfp import Gfp
from pagemig.mm.lru import LruOwner
from pagemig.mm.machine import Machine
from pagemig.mm.movable import (
    MigrateMode,
    MovableOperations,
    clear_movable,
    clear_movable_many,
    set_movable,
    set_movable_many,
)
from pagemig.mm.oom_kill import register_oom_notifier, unregister_oom_notifier
from pagemig.mm.owner import Owner, PageSet
from pagemig.mm.pages import Page, PageFlag, PageKind, copy_page, pin_pages, unpin_pages
from pagemig.mm.shrinker import Shrinker, register_shrinker
from pagemig.mm.slowpath import stall_seconds
from pagemig.mm.swap import SwapDevice, register_swap_device
from pagemig.sim import schema as _schema
from pagemig.sim.commands import CommandInfo
from pagemig.sim.scenario import ScenarioInfo, package_scenarios
from pagemig.sim.schema import Field, TableError, check_table
from pagemig.sim.units import (
    UnitError,
    format_duration,
    format_size,
    parse_duration,
    parse_pages,
    parse_percent,
    parse_rate,
    parse_size,
)
from pagemig.workload import ProbeStats, Workload, WorkloadInfo

# ------------------------------------------------------------------ the version
# API_VERSION is declared in the package root, where discovery (pagemig.plugins) reads it
# without importing this module (which imports everything a driver may use).

# ------------------------------------------------------------------ registering
hookimpl = _hookspecs.hookimpl
"""The marker of a hook implementation: ``@hookimpl def pagemig_register_drivers(register): ...``.
The hooks, when each is called and what it is given, are documented in :mod:`pagemig.hookspecs`."""

# ------------------------------------------------------------------ pages
PAGE_SHIFT = _pages.PAGE_SHIFT
"""log2 of the page size (12: 4 KiB pages)."""

PAGE_SIZE = _pages.PAGE_SIZE
"""Bytes per page, 4096."""

MAX_ORDER = _pages.MAX_ORDER
"""The largest allocation order (10: 4 MiB blocks), as v6.1's ``MAX_ORDER - 1``."""

PAGE_ALLOC_COSTLY_ORDER = _pages.PAGE_ALLOC_COSTLY_ORDER
"""Orders above 3 are "costly": the allocator tries less hard and never reaches the OOM step."""

# ------------------------------------------------------------------ GFP masks (include/linux/gfp.h)
GFP_KERNEL = _gfp.GFP_KERNEL
"""Kernel memory that may sleep, reclaim and do I/O and filesystem work."""

GFP_KERNEL_ACCOUNT = _gfp.GFP_KERNEL_ACCOUNT
"""``GFP_KERNEL`` charged to the task's memory cgroup (``__GFP_ACCOUNT``)."""

GFP_NOIO = _gfp.GFP_NOIO
"""May reclaim but start no I/O: a block device's own allocations (zram)."""

GFP_NOFS = _gfp.GFP_NOFS
"""May reclaim and do I/O but not re-enter a filesystem."""

GFP_NOWAIT = _gfp.GFP_NOWAIT
"""Never sleeps: wakes kswapd, takes what is free above the min watermark, or fails."""

GFP_ATOMIC = _gfp.GFP_ATOMIC
"""Never sleeps, may dip into the atomic reserves below the min watermark."""

GFP_USER = _gfp.GFP_USER
"""Memory a user process or a device on its behalf uses, from the low zones up to NORMAL."""

GFP_HIGHUSER = _gfp.GFP_HIGHUSER
"""``GFP_USER`` that may come from HIGHMEM (a 32-bit machine's upper memory)."""

GFP_HIGHUSER_MOVABLE = _gfp.GFP_HIGHUSER_MOVABLE
"""User pages compaction may move: from MOVABLE pageblocks (what a movable driver's pages use,
plus its own flags; :meth:`Driver.page_gfp` adds ``__GFP_MOVABLE`` when the driver is movable)."""

GFP_TRANSHUGE_LIGHT = _gfp.GFP_TRANSHUGE_LIGHT
"""A transparent huge page that must not reclaim or compact (a page fault's first try)."""

GFP_TRANSHUGE = _gfp.GFP_TRANSHUGE
"""A transparent huge page that may compact directly (``defrag`` allowing it)."""

# ------------------------------------------------------------------ the movable-page protocol's answers
MIGRATEPAGE_SUCCESS = _movable.MIGRATEPAGE_SUCCESS
"""``migrate_page`` moved the page (0): the driver took dst, the VM frees src."""

EAGAIN = _movable.EAGAIN
"""Return ``-EAGAIN`` from ``migrate_page`` when busy now: the VM puts the page back or retries
in a later pass."""

EBUSY = _movable.EBUSY
"""Return ``-EBUSY`` from ``migrate_page`` when the page is in use and will stay so for a while."""

ENOMEM = _movable.ENOMEM
"""Return ``-ENOMEM`` from ``migrate_page`` when the driver could not get memory it needs to move."""

EINVAL = _movable.EINVAL
"""Return ``-EINVAL`` from ``migrate_page`` for a page the driver does not know as isolated."""

# ------------------------------------------------------------------ reclaim and OOM
OomNotifier = _oom_kill.OomNotifier
"""What :func:`register_oom_notifier` takes: a callable of no arguments, called when an
allocation is about to fail for want of memory, returning the pages it freed (the
allocation retries when any notifier freed some)."""

COST_ALLOC_FAST = _costs.COST_ALLOC_FAST
"""Simulated seconds of one allocation from the free lists (what a probe adds to the slow
path's stall, :func:`stall_seconds`, for each attempt)."""

# ------------------------------------------------------------------ option checking (scenario tables)
REQUIRED = _schema.REQUIRED
"""The default of a field that has none: the key must be given."""

size_field = _schema.size
pages_field = _schema.pages
duration_field = _schema.duration
percent_field = _schema.percent
rate_field = _schema.rate
integer_field = _schema.integer
number_field = _schema.number
boolean_field = _schema.boolean
string_field = _schema.string
choice_field = _schema.choice
order_field = _schema.order
gfp_field = _schema.gfp
table_validator = _schema.validator
# (each field constructor's docstring says what it accepts; ``field(default, doc, ...)``
# returns a :class:`Field`, and ``table_validator({key: field})`` the ``validate`` of a
# DriverInfo or WorkloadInfo, raising :class:`TableError` that names the key)

__all__ = [
    "API_VERSION",
    "COST_ALLOC_FAST",
    "EAGAIN",
    "EBUSY",
    "EINVAL",
    "ENOMEM",
    "GFP_ATOMIC",
    "GFP_HIGHUSER",
    "GFP_HIGHUSER_MOVABLE",
    "GFP_KERNEL",
    "GFP_KERNEL_ACCOUNT",
    "GFP_NOFS",
    "GFP_NOIO",
    "GFP_NOWAIT",
    "GFP_TRANSHUGE",
    "GFP_TRANSHUGE_LIGHT",
    "GFP_USER",
    "MAX_ORDER",
    "MIGRATEPAGE_SUCCESS",
    "PAGE_ALLOC_COSTLY_ORDER",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "REQUIRED",
    "CommandInfo",
    "Driver",
    "DriverInfo",
    "Field",
    "Gfp",
    "LruOwner",
    "Machine",
    "MigrateMode",
    "MovableOperations",
    "OomNotifier",
    "Owner",
    "Page",
    "PageFlag",
    "PageKind",
    "PageSet",
    "ProbeStats",
    "ScenarioInfo",
    "Shrinker",
    "SwapDevice",
    "TableError",
    "UnitError",
    "Workload",
    "WorkloadInfo",
    "boolean_field",
    "check_table",
    "choice_field",
    "clear_movable",
    "clear_movable_many",
    "copy_page",
    "duration_field",
    "format_duration",
    "format_size",
    "gfp_field",
    "hookimpl",
    "integer_field",
    "number_field",
    "order_field",
    "package_scenarios",
    "pages_field",
    "parse_duration",
    "parse_pages",
    "parse_percent",
    "parse_rate",
    "parse_size",
    "percent_field",
    "pin_pages",
    "rate_field",
    "register_oom_notifier",
    "register_shrinker",
    "register_swap_device",
    "set_movable",
    "set_movable_many",
    "size_field",
    "stall_seconds",
    "string_field",
    "table_validator",
    "unpin_pages",
    "unregister_oom_notifier",
]
