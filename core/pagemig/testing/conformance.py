"""The conformance suite: what every movable-page driver must do, as pytest tests.

A driver's test module runs it with a couple of lines::

    from pagemig.testing import DriverConformance
    import pagemig_mydriver.plugin

    class TestConformance(DriverConformance):
        plugin = pagemig_mydriver.plugin    # or: entry_point = "mydriver"

Each test builds a small machine (a 128 MiB x86-64 guest by default), a plugin
host holding only the plugin under test, and the driver from its ``DriverInfo``,
then drives it through the kit's exerciser (:mod:`pagemig.testing.exerciser`) and
the VM side of the protocol (:mod:`pagemig.testing.vm`).  Every failure is a
:class:`~pagemig.testing.rules.ConformanceError` naming the rule that was broken.

Why a base class and not generated tests: pytest collects the inherited methods in
every subclass, a driver can override a class attribute (memory size, options,
page count) or skip a test by overriding it, and the tests read like a checklist.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np
import pytest

from pagemig.driver import Driver, DriverInfo
from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE, MigrateType
from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.mm_init import boot
from pagemig.mm.movable import EAGAIN, MigrateMode, MovableOperations, is_orphan, isolate_movable_page
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.plugins import ENTRY_POINT_GROUP, PluginHost, get_plugin_host
from pagemig.testing import vm
from pagemig.testing.checks import (
    assert_no_page_lost,
    expected,
    guard,
    listed,
    migrate_and_verify,
    verify_outcomes,
)
from pagemig.testing.exerciser import call_count, check_exerciser
from pagemig.testing.rules import ConformanceError

DEFAULT_MEMORY = 128 * MiB
MOVABLE = int(PageFlag.MOVABLE)
ISOLATED = int(PageFlag.ISOLATED)
MODES = (MigrateMode.ASYNC, MigrateMode.SYNC_LIGHT, MigrateMode.SYNC)


# ------------------------------------------------------------------ building what a test needs
def default_machine_config() -> MachineConfig:
    """A 128 MiB x86-64 guest: two zones, about 100 MiB to allocate, checks in a millisecond."""
    return MachineConfig.x86_64_guest(DEFAULT_MEMORY)


def host_for(plugin: object | None = None, *, entry_point: str | None = None,
             name: str | None = None) -> PluginHost:
    """A plugin host holding the core's built-ins and just one plugin: an object, or an
    installed entry point of the ``pagemig`` group loaded by name.

    Entry points are not autoloaded, so other installed plugins cannot interfere
    with the driver under test.
    """
    if (plugin is None) == (entry_point is None):
        raise ValueError("give exactly one of plugin= or entry_point=")
    if entry_point is not None:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == entry_point]
        if not found:
            known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
            raise ConformanceError(
                "registers",
                f"no entry point {entry_point!r} in the group {ENTRY_POINT_GROUP!r} (installed: "
                f"{', '.join(known) or 'none'}); is the distribution installed? Entry points live in "
                "installed metadata: after editing [project.entry-points], reinstall (pip install -e .)")
        plugin = found[0].load()
        name = name or entry_point
    assert plugin is not None
    label: str = name or str(getattr(plugin, "__name__", type(plugin).__name__))
    return get_plugin_host(autoload=False, extra_plugins=[(label, plugin)])


class DefaultState(tuple[tuple[int, int, bool], ...]):
    """(pfn, content, movable) for each page the driver lists: what the kit compares when
    the driver has no ``conformance_state()``."""


def scatter_among_filler(machine: Machine, driver: Any, nr_pages: int, seed: int = 0) -> SimpleOwner:
    """Make a state full compaction can act on, with about ``nr_pages`` of the driver's pages
    in it; returns the movable filler owner.

    Compaction moves pages towards the zone's end.  So that this holds whichever end the
    allocator hands out first (a fresh machine starts at the bottom, as the kernel's
    ``memblock_free_all`` order makes it), the driver's pages go among movable filler
    between two filler regions (a third of free memory, then two thirds of what is left),
    3 of every 4 pages of both regions are freed (a whole free pageblock is no migration
    target: ``suitable_migration_target``) and about 3 in 4 of the filler around the
    driver's pages: the region above has more room than everything below needs, so the
    scanners meet above the driver's pages.
    """
    filler = SimpleOwner(machine, "conformance-filler")
    rng = random.Random(seed)
    gfp = int(GFP_HIGHUSER_MOVABLE)

    def fill(n: int) -> np.ndarray:
        pfns = machine.alloc_pages_bulk(gfp, n, filler.owner_id, PageKind.ANON)
        filler.pages.add_many(pfns, np.arange(1, len(pfns) + 1, dtype=np.uint64))
        return pfns

    first = fill(machine.nr_free_pages // 3)
    interleaved = []
    for _ in range(8):
        interleaved.append(fill(max(8, nr_pages // 2)))
        call_count(driver, "populate", max(1, nr_pages // 8))
    mixed = np.concatenate(interleaved)
    last = fill(machine.nr_free_pages * 2 // 3)
    top = np.concatenate((first, last))
    drop = np.concatenate((top[np.arange(len(top)) % 4 != 0],
                           mixed[np.array([rng.random() < 0.75 for _ in range(len(mixed))], dtype=bool)]))
    filler.pages.remove_many(drop)
    machine.free_pages_bulk(drop)
    return filler


def default_state(machine: Machine, driver: Driver) -> DefaultState:
    """Each page the driver lists, the content it recorded, and whether it is marked movable."""
    pfns, tokens = expected(driver)
    order = np.argsort(pfns)
    pfns, tokens = pfns[order], tokens[order]
    mov = (machine.pages.flags[pfns] & MOVABLE) != 0
    return DefaultState(zip(pfns.tolist(), tokens.tolist(), mov.tolist(), strict=True))


def describe_state_change(before: Any, after: Any) -> str:
    if isinstance(before, DefaultState) and isinstance(after, DefaultState):
        b = {p: (t, m) for p, t, m in before}
        a = {p: (t, m) for p, t, m in after}
        parts = []
        gone = sorted(set(b) - set(a))
        if gone:
            parts.append(f"no longer lists {len(gone)} page(s) (first pfn {gone[0]:#x})")
        new = sorted(set(a) - set(b))
        if new:
            parts.append(f"lists {len(new)} new page(s) (first pfn {new[0]:#x})")
        unmarked = sorted(p for p in set(a) & set(b) if b[p][1] and not a[p][1])
        if unmarked:
            parts.append(f"{len(unmarked)} page(s) no longer marked movable (first pfn {unmarked[0]:#x})")
        changed = sorted(p for p in set(a) & set(b) if b[p][0] != a[p][0])
        if changed:
            parts.append(f"{len(changed)} page(s) changed content (first pfn {changed[0]:#x})")
        if parts:
            return "; ".join(parts)
    if isinstance(before, tuple) and isinstance(after, tuple) and len(before) == len(after):
        parts = [f"item {i}: {_diff_item(b, a)}" for i, (b, a) in enumerate(zip(before, after, strict=True))
                 if b != a]
        return "conformance_state() changed: " + "; ".join(parts)
    return f"conformance_state() changed: {_diff_item(before, after)}"


def _diff_item(before: Any, after: Any) -> str:
    """One changed value, said briefly: for sets, what left and what came."""
    def show(items: list[Any]) -> str:
        shown = ", ".join(hex(x) if isinstance(x, int) else repr(x) for x in items[:3])
        return shown + (", ..." if len(items) > 3 else "")

    if isinstance(before, set | frozenset) and isinstance(after, set | frozenset):
        gone = sorted(before - after, key=repr)
        new = sorted(after - before, key=repr)
        bits = []
        if gone:
            bits.append(f"{len(gone)} gone ({show(gone)})")
        if new:
            bits.append(f"{len(new)} new ({show(new)})")
        return ", ".join(bits)
    return f"was {before!r:.80}, became {after!r:.80}"


# ------------------------------------------------------------------ the suite
class DriverConformance:
    """Subclass this in a test module (name the subclass ``Test...``) and set ``plugin`` or ``entry_point``.

    Class attributes a driver may set:

    ``plugin``
        the object (usually the module) holding the driver's hook implementations;
    ``entry_point``
        or: the name of the driver's entry point in the ``pagemig`` group, to test the
        installed distribution as ``pagemig`` itself will load it;
    ``driver_name``
        which driver, when the plugin registers several;
    ``options``
        the driver's scenario table (``movable`` is set by each test);
    ``memory``
        the machine's size in bytes (a 128 MiB x86-64 guest by default), or set
        ``machine_config`` for any other layout;
    ``nr_pages``
        how many pages the tests ask ``populate`` for;
    ``max_examples`` / ``step_count``
        how many random operation sequences the hypothesis test tries, and how long each is;
    ``hypothesis_settings``
        any other ``hypothesis.settings`` for that test (``derandomize``, ``database``, ``phases``).
    """

    plugin: ClassVar[Any] = None
    entry_point: ClassVar[str | None] = None
    driver_name: ClassVar[str | None] = None
    options: ClassVar[Mapping[str, Any]] = {}
    memory: ClassVar[int] = DEFAULT_MEMORY
    machine_config: ClassVar[MachineConfig | None] = None
    nr_pages: ClassVar[int] = 256
    max_examples: ClassVar[int] = 25
    step_count: ClassVar[int] = 20
    hypothesis_settings: ClassVar[Mapping[str, Any]] = {}

    # ---------------------------------------------------------------- helpers a subclass may use
    @classmethod
    def plugin_host(cls) -> PluginHost:
        """The plugin host with only the plugin under test (built once per class)."""
        cached = cls.__dict__.get("_pagemig_host")
        if cached is None:
            if cls.plugin is None and cls.entry_point is None:
                raise TypeError(f"{cls.__name__}: set `plugin = <your plugin module>` or "
                                "`entry_point = \"<its name in the pagemig group>\"`")
            cached = host_for(cls.plugin, entry_point=cls.entry_point)
            cls._pagemig_host = cached  # type: ignore[attr-defined]
        return cached

    @classmethod
    def driver_info(cls) -> DriverInfo:
        """The ``DriverInfo`` the plugin registered."""
        host = cls.plugin_host()
        drivers = host.drivers()
        errors = [f"{r.name}: {r.error}" for r in host.records.values() if r.error and not r.builtin]
        mine = {n: d for n, d in drivers.items() if not _is_builtin(host, d)}
        if cls.driver_name is not None:
            if cls.driver_name not in drivers:
                raise ConformanceError("registers", f"no driver named {cls.driver_name!r} was registered "
                                       f"(registered: {', '.join(sorted(mine)) or 'none'})"
                                       + (f"; {'; '.join(errors)}" if errors else ""))
            return drivers[cls.driver_name]
        if len(mine) != 1:
            raise ConformanceError("registers", f"the plugin registered {len(mine)} drivers "
                                   f"({', '.join(sorted(mine)) or 'none'}); "
                                   + ("set driver_name to pick one" if mine else "call register(DriverInfo(...)) "
                                      "in pagemig_register_drivers")
                                   + (f"; {'; '.join(errors)}" if errors else ""))
        return next(iter(mine.values()))

    def new_machine(self) -> Machine:
        return boot(self.machine_config or MachineConfig.x86_64_guest(self.memory))

    def new_driver(self, machine: Machine, *, movable: bool = True, **options: Any) -> Driver:
        """Build the driver as a run would: options through ``validate``, then ``factory``."""
        info = self.driver_info()
        opts: dict[str, Any] = {**self.options, **options, "movable": movable}
        if info.validate is not None:
            opts = dict(info.validate(opts))
        opts.setdefault("_plugin", info.plugin)
        driver = info.factory(machine, opts)
        if not isinstance(driver, Driver):
            raise ConformanceError("registers", f"factory of {info.name!r} returned {type(driver).__name__}, "
                                   "not a pagemig.driver.Driver", plugin=info.plugin)
        if driver.owner_id == 0 or machine.owners[driver.owner_id] is not driver:
            raise ConformanceError("registers", "the driver is not registered with the machine "
                                   "(call Driver.__init__(self, machine, options))", plugin=info.plugin)
        if not isinstance(driver, MovableOperations):
            raise ConformanceError("registers", f"{type(driver).__name__} lacks isolate_page, migrate_page "
                                   "or putback_page", driver=driver.name, plugin=info.plugin)
        if driver.movable != movable:
            raise ConformanceError("registers", f"built with movable = {movable} but driver.movable is "
                                   f"{driver.movable}", driver=driver.name, plugin=info.plugin)
        check_exerciser(driver)
        return driver

    def populated(self, *, movable: bool = True, n: int | None = None) -> tuple[Machine, Driver]:
        """A fresh machine and a driver holding about ``n`` pages."""
        machine = self.new_machine()
        driver = self.new_driver(machine, movable=movable)
        want = self.nr_pages if n is None else n
        with guard(machine, driver, f"populate({want})"):
            got = call_count(driver, "populate", want)
        if got == 0 or not len(vm.driver_pages(machine, driver.owner_id)):
            raise ConformanceError("exerciser", f"populate({want}) on a fresh "
                                   f"{machine.managed_pages // 256} MiB machine added no page",
                                   driver=driver.name, plugin=driver.plugin)
        assert_no_page_lost(machine, driver, when=f"after populate({want})")
        return machine, driver

    def isolate_all(self, machine: Machine, driver: Driver, what: str, limit: int | None = None) -> list[int]:
        """Isolate every idle movable page of the driver (at most ``limit``), cycling the modes."""
        idle = vm.movable_idle_pages(machine, driver.owner_id).tolist()
        iso: list[int] = []
        with guard(machine, driver, what):
            for i, p in enumerate(idle):
                if limit is not None and len(iso) >= limit:
                    break
                if isolate_movable_page(machine, p, MODES[i % 3]):
                    iso.append(p)
        return iso

    def state(self, machine: Machine, driver: Driver) -> Any:
        custom = getattr(driver, "conformance_state", None)
        return custom() if callable(custom) else default_state(machine, driver)

    # ---------------------------------------------------------------- the tests
    def test_registers_a_driver(self) -> None:
        """The plugin registers one driver whose factory builds a Driver with the exerciser."""
        info = self.driver_info()
        assert callable(info.factory)
        machine = self.new_machine()
        driver = self.new_driver(machine)
        assert_no_page_lost(machine, driver, when="after building the driver")

    def test_populate_marks_pages_movable(self) -> None:
        """With movable = true every driver page is marked movable and sits in a MOVABLE pageblock."""
        machine, driver = self.populated()
        pages = vm.driver_pages(machine, driver.owner_id)
        unmarked = pages[(machine.pages.flags[pages] & MOVABLE) == 0]
        if len(unmarked):
            raise ConformanceError("marks-movable", f"{len(unmarked)} of {len(pages)} driver pages are not "
                                   f"marked movable (first pfn {int(unmarked[0]):#x})",
                                   driver=driver.name, plugin=driver.plugin)
        mts = machine.buddy.pageblock_mt[pages >> machine.pageblock_order]
        wrong = pages[mts != MigrateType.MOVABLE]
        if len(wrong):
            raise ConformanceError("movable-from-movable-blocks",
                                   f"{len(wrong)} of {len(pages)} pages lie in non-MOVABLE pageblocks (first pfn "
                                   f"{int(wrong[0]):#x}, a {MigrateType(int(mts[mts != MigrateType.MOVABLE][0])).name}"
                                   " block)", driver=driver.name, plugin=driver.plugin)

    def test_release_gives_pages_back(self) -> None:
        """release(n) frees pages, and every page stays accounted for."""
        machine, driver = self.populated()
        held = len(vm.driver_pages(machine, driver.owner_id))
        with guard(machine, driver, "release"):
            freed = call_count(driver, "release", max(1, held // 2))
        if freed == 0:
            raise ConformanceError("exerciser", f"release({max(1, held // 2)}) freed nothing while the driver "
                                   f"held {held} idle pages", driver=driver.name, plugin=driver.plugin)
        assert_no_page_lost(machine, driver, when="after release")
        left = len(vm.driver_pages(machine, driver.owner_id))
        if left >= held:
            raise ConformanceError("exerciser", f"release() said it freed {freed} pages but the driver still "
                                   f"holds {left} (it held {held})", driver=driver.name, plugin=driver.plugin)

    def test_populate_after_a_release_that_isolated_pages_held_up(self) -> None:
        """The sequence that found a bug by chance in the random test, replayed for every
        driver: isolate some pages, release everything (the isolated ones must stay),
        put them back, populate again: populate adds pages (never a negative count, never
        fewer pages held than before) and every page stays accounted for."""
        machine, driver = self.populated()
        isolated = self.isolate_all(machine, driver, "isolate_page of two idle pages", limit=2)
        held = len(vm.driver_pages(machine, driver.owner_id))
        with guard(machine, driver, "release while pages are isolated"):
            call_count(driver, "release", held)
        assert_no_page_lost(machine, driver, allow_isolated=True, when="after a release with pages isolated")
        with guard(machine, driver, "putback_page"):
            vm.putback(machine, isolated)
        before = len(vm.driver_pages(machine, driver.owner_id))
        with guard(machine, driver, "populate after the putback"):
            added = call_count(driver, "populate", 1)
        after = len(vm.driver_pages(machine, driver.owner_id))
        if after < before:
            raise ConformanceError("exerciser", f"populate(1) after a release that isolated pages held up left "
                                   f"the driver holding {after} pages, fewer than the {before} before it "
                                   f"(it answered {added})", driver=driver.name, plugin=driver.plugin)
        assert_no_page_lost(machine, driver, when="after populate")

    def test_isolate_then_putback_leaves_driver_as_it_was(self) -> None:
        """isolate_page + putback_page is a no-op for the driver, and the page can be isolated again."""
        machine, driver = self.populated()
        before = self.state(machine, driver)
        first = self.isolate_all(machine, driver, "isolate_page of every idle page")
        if not first:
            raise ConformanceError("pages-move", f"isolate_page refused all "
                                   f"{len(vm.driver_pages(machine, driver.owner_id))} idle pages",
                                   driver=driver.name, plugin=driver.plugin)
        assert_no_page_lost(machine, driver, allow_isolated=True, when="while pages were isolated")
        with guard(machine, driver, "putback_page"):
            vm.putback(machine, first)
        after = self.state(machine, driver)
        if after != before:
            raise ConformanceError("putback-restores", describe_state_change(before, after),
                                   driver=driver.name, plugin=driver.plugin)
        second = self.isolate_all(machine, driver, "isolate_page after putback")
        refused = sorted(set(first) - set(second))
        with guard(machine, driver, "putback_page"):
            vm.putback(machine, second)
        if refused:
            raise ConformanceError("putback-restores", f"{len(refused)} page(s) isolated before putback were "
                                   f"refused after it (first pfn {refused[0]:#x}): putback_page must relink the "
                                   "page where isolate_page can find it", driver=driver.name, plugin=driver.plugin)
        assert_no_page_lost(machine, driver, when="after isolate and putback")

    def test_migrate_moves_content_and_references(self) -> None:
        """Migrated pages carry their content, the driver references dst, and dst can move again."""
        machine, driver = self.populated()
        for round_ in range(2):  # the second round migrates pages the driver got through migration
            iso = self.isolate_all(machine, driver, f"isolate_page (round {round_ + 1})")
            outcomes = migrate_and_verify(machine, driver, iso, MODES[round_ + 1],
                                          what=f"migrate_page (round {round_ + 1})")
            moved = sum(o.migrated for o in outcomes)
            if not moved:
                rcs = Counter(o.rc for o in outcomes)
                raise ConformanceError("pages-move", f"round {round_ + 1}: {len(iso)} page(s) isolated, none "
                                       f"migrated (answers: {dict(rcs)})", driver=driver.name, plugin=driver.plugin)
            assert_no_page_lost(machine, driver, when=f"after migration round {round_ + 1}")

    def test_eagain_is_retried(self) -> None:
        """A page that answers -EAGAIN stays isolated, intact and the driver's, and a later pass moves it."""
        machine, driver = self.populated()
        iso = self.isolate_all(machine, driver, "isolate_page", limit=64)
        first_answer: dict[int, int] = {}

        def busy_twice(src: int, attempt: int) -> int | None:
            return -EAGAIN if attempt < 2 else None

        def before_retry(src: int, attempt: int) -> None:
            if not machine.pages._flags[src] & ISOLATED or src not in listed(driver):
                raise ConformanceError("eagain-leaves-src", f"after -EAGAIN (attempt {attempt}) pfn {src:#x} "
                                       "is no longer isolated or no longer the driver's",
                                       driver=driver.name, plugin=driver.plugin)

        outcomes = migrate_and_verify(machine, driver, iso, MigrateMode.SYNC, what="migration with -EAGAIN",
                                      inject=busy_twice, before_retry=before_retry,
                                      observe=lambda src, attempt, rc: first_answer.setdefault(src, rc))
        assert all(rc == -EAGAIN for rc in first_answer.values())
        if not any(o.migrated and o.passes == 3 for o in outcomes):
            raise ConformanceError("eagain-leaves-src", "no page answering -EAGAIN twice migrated on the third "
                                   f"attempt (answers: {dict(Counter(o.rc for o in outcomes))})",
                                   driver=driver.name, plugin=driver.plugin)
        assert_no_page_lost(machine, driver, when="after migration with retries")

    def test_contended_driver_answers_eagain(self) -> None:
        """While contended() holds the driver, migrate_page answers -EAGAIN; afterwards the retry succeeds."""
        machine, driver = self.populated()
        contended = getattr(driver, "contended", None)
        if not callable(contended):
            pytest.skip("the driver has no contended() context (optional; see pagemig.testing.exerciser)")
        iso = self.isolate_all(machine, driver, "isolate_page", limit=32)
        stack = contextlib.ExitStack()
        stack.enter_context(contended())
        answers: dict[int, int] = {}

        def first(src: int, attempt: int, rc: int) -> None:
            if attempt == 0:
                answers[src] = rc

        try:
            outcomes = migrate_and_verify(machine, driver, iso, MigrateMode.SYNC, what="migration while contended",
                                          observe=first, before_retry=lambda src, attempt: stack.close())
        finally:
            stack.close()
        wrong = {src: rc for src, rc in answers.items() if rc != -EAGAIN}
        if wrong:
            src, rc = next(iter(wrong.items()))
            raise ConformanceError("contended-eagain", f"migrate_page answered {rc} for pfn {src:#x} while "
                                   f"contended ({len(wrong)} of {len(answers)} pages)",
                                   driver=driver.name, plugin=driver.plugin)
        if not any(o.migrated for o in outcomes):
            raise ConformanceError("eagain-leaves-src", "no page migrated once the contention was over "
                                   f"(answers: {dict(Counter(o.rc for o in outcomes))})",
                                   driver=driver.name, plugin=driver.plugin)
        assert_no_page_lost(machine, driver, when="after migration under contention")

    def test_page_freed_while_isolated(self) -> None:
        """A page the driver frees while isolated leaves its records; migration or putback releases it."""
        machine, driver = self.populated()
        iso = self.isolate_all(machine, driver, "isolate_page")
        if not iso:
            raise ConformanceError("pages-move", "isolate_page refused every idle page",
                                   driver=driver.name, plugin=driver.plugin)
        release_pfn = getattr(driver, "release_pfn", None)
        with guard(machine, driver, "freeing isolated pages"):
            if callable(release_pfn):
                for pfn in iso[::2]:
                    ok = release_pfn(pfn)
                    if not isinstance(ok, bool):
                        raise ConformanceError("exerciser", f"release_pfn({pfn:#x}) returned {ok!r}, not a bool",
                                               driver=driver.name, plugin=driver.plugin)
                    if ok and machine.pages._owner[pfn] == driver.owner_id:
                        raise ConformanceError("free-while-isolated", f"release_pfn({pfn:#x}) returned True but "
                                               "the page is still the driver's (free it with machine.free_pages)",
                                               driver=driver.name, plugin=driver.plugin)
            else:
                call_count(driver, "release", len(vm.driver_pages(machine, driver.owner_id)))
        orphans = [p for p in iso if is_orphan(machine, p)]
        now = listed(driver)
        still = [p for p in orphans if p in now]
        if still:
            raise ConformanceError("free-while-isolated", f"pfn {still[0]:#x} was freed while isolated but "
                                   "expected_contents() still lists it", driver=driver.name, plugin=driver.plugin)
        assert_no_page_lost(machine, driver, allow_isolated=True, when="after freeing isolated pages")
        if not orphans:
            with guard(machine, driver, "putback_page"):
                vm.putback(machine, iso)
            pytest.skip("the driver never freed a page while it was isolated, which is allowed (a balloon "
                        "cannot deflate an isolated page); give it release_pfn(pfn) to test this path")
        half = len(iso) // 2
        migrate_and_verify(machine, driver, iso[:half], MigrateMode.SYNC, what="migrating freed isolated pages")
        with guard(machine, driver, "putback_page"):
            vm.putback(machine, iso[half:])
        # released pages may already serve as new pages of the driver: what must not remain
        # is an orphan, or an isolated page
        left = [p for p in orphans if is_orphan(machine, p) or machine.pages._flags[p] & ISOLATED]
        if left:
            raise ConformanceError("no-page-lost", f"pfn {left[0]:#x}, freed while isolated, was not released",
                                   driver=driver.name, plugin=driver.plugin)
        assert_no_page_lost(machine, driver, when="after migrating and putting back freed pages")

    def test_random_operations_never_lose_a_page(self) -> None:
        """Populate, release, isolate, migrate with injected faults, put back and free while
        isolated, in any order (hypothesis): no page is lost, no rule is broken."""
        from pagemig.testing.stateful import run_random_operations

        run_random_operations(self)

    def test_unmovable_driver_stays_out_of_movable_pageblocks(self) -> None:
        """With movable = false no page is marked movable or lies in a MOVABLE pageblock, and
        compaction leaves the driver's pages where they are."""
        machine, driver = self.populated(movable=False)
        pages = vm.driver_pages(machine, driver.owner_id)
        marked = pages[(machine.pages.flags[pages] & MOVABLE) != 0]
        if len(marked):
            raise ConformanceError("unmovable-stays-out", f"{len(marked)} page(s) marked movable with movable = "
                                   f"false (first pfn {int(marked[0]):#x})", driver=driver.name, plugin=driver.plugin)
        mts = machine.buddy.pageblock_mt[pages >> machine.pageblock_order]
        wrong = pages[mts == MigrateType.MOVABLE]
        if len(wrong):
            raise ConformanceError("unmovable-stays-out", f"{len(wrong)} of {len(pages)} pages lie in MOVABLE "
                                   f"pageblocks (first pfn {int(wrong[0]):#x}): allocate with "
                                   "driver.page_gfp(...)", driver=driver.name, plugin=driver.plugin)
        with guard(machine, driver, "full compaction"):
            vm.compact_all(machine)
        after = vm.driver_pages(machine, driver.owner_id)
        if not np.array_equal(after, pages):
            raise ConformanceError("unmovable-stays-out", "compaction moved pages of a driver built with "
                                   "movable = false", driver=driver.name, plugin=driver.plugin)
        assert_no_page_lost(machine, driver, when="after compaction")

    def test_compaction_moves_driver_pages(self) -> None:
        """Full compaction of a fragmented machine moves some driver pages and loses none."""
        machine = self.new_machine()
        driver = self.new_driver(machine)
        with guard(machine, driver, "populate"):
            scatter_among_filler(machine, driver, self.nr_pages)
        before = vm.driver_pages(machine, driver.owner_id)
        with guard(machine, driver, "full compaction"):
            vm.compact_all(machine)
        after = vm.driver_pages(machine, driver.owner_id)
        if np.array_equal(before, after):
            raise ConformanceError("pages-move", f"full compaction moved none of the driver's {len(before)} pages",
                                   driver=driver.name, plugin=driver.plugin)
        assert_no_page_lost(machine, driver, when="after full compaction")


def _is_builtin(host: PluginHost, info: Any) -> bool:
    record = host.records.get(getattr(info, "plugin", ""))
    return bool(record and record.builtin)


__all__ = [
    "DriverConformance",
    "assert_no_page_lost",
    "default_machine_config",
    "expected",
    "guard",
    "host_for",
    "listed",
    "migrate_and_verify",
    "scatter_among_filler",
    "verify_outcomes",
]
