"""The compaction loop as pluggy hooks: defaults are the kernel's policy, registered as a
built-in plugin; a plugin can replace one phase (firstresult) or observe; hooks run per
zone run and per batch, never per page.

Truth: pluggy's firstresult semantics, the counts of phases a run has (one begin and
one end per zone, one "migrated" per batch), and the kernel-policy run without pluggy
as the reference the hooked run must match exactly.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from pagemig import hookimpl
from pagemig.mm import compaction as C
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import Machine
from pagemig.plugins import BUILTIN_PLUGINS, get_plugin_host


class Observer:
    """Counts every compaction hook call."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.batch_sizes: list[int] = []
        self.results: list[C.CompactResult] = []

    @hookimpl
    def pagemig_compaction_begin(self, machine: Machine, cc: C.CompactControl) -> None:
        self.calls["begin"] += 1

    @hookimpl
    def pagemig_compaction_finished(self, machine: Machine, cc: C.CompactControl) -> None:
        self.calls["finished"] += 1  # returns None: the default decides

    @hookimpl
    def pagemig_compaction_isolate_migratepages(self, machine: Machine, cc: C.CompactControl) -> None:
        self.calls["isolate_migratepages"] += 1

    @hookimpl
    def pagemig_compaction_isolate_freepages(self, machine: Machine, cc: C.CompactControl) -> None:
        self.calls["isolate_freepages"] += 1

    @hookimpl
    def pagemig_compaction_migrated(self, machine: Machine, cc: C.CompactControl, result: Any) -> None:
        self.calls["migrated"] += 1
        self.batch_sizes.append(result.nr_succeeded + result.nr_failed_pages)

    @hookimpl
    def pagemig_compaction_end(self, machine: Machine, cc: C.CompactControl, result: C.CompactResult) -> None:
        self.calls["end"] += 1
        self.results.append(result)


def host_with(*plugins: tuple[str, object]) -> Any:
    return get_plugin_host(autoload=False, extra_plugins=plugins)


def test_the_default_policy_is_a_builtin_plugin() -> None:
    assert "pagemig.compaction_policy" in BUILTIN_PLUGINS
    record = get_plugin_host(autoload=False).records["pagemig.compaction_policy"]
    assert record.builtin
    assert record.hooks == ["pagemig_compaction_finished", "pagemig_compaction_isolate_freepages",
                            "pagemig_compaction_isolate_migratepages"]


def test_observers_are_called_per_phase_not_per_page(one_zone_machine, fragmenter) -> None:
    m = one_zone_machine(16384)
    fragmenter(m)
    obs = Observer()
    report = C.compact_memory(m, host_with(("obs", obs)).hook)
    zone = report.zones[0]
    assert obs.calls["begin"] == obs.calls["end"] == 1  # one zone
    assert obs.results == [C.COMPACT_COMPLETE]
    assert obs.calls["migrated"] == zone.batches
    assert sum(obs.batch_sizes) == zone.migrated + zone.migrate_failed
    # finished is asked before every iteration and once more at the end; each iteration
    # asks the migration scanner once
    assert obs.calls["finished"] == obs.calls["isolate_migratepages"] + 1
    total_calls = sum(obs.calls.values())
    assert total_calls < zone.migrated / 8, (total_calls, zone.migrated)
    assert_consistent(m)


def test_machine_hook_is_used_when_no_relay_is_given(one_zone_machine, fragmenter) -> None:
    m = one_zone_machine(8192)
    fragmenter(m)
    obs = Observer()
    m.hook = host_with(("obs", obs)).hook  # what a run does
    C.compact_memory(m)
    assert obs.calls["begin"] == 1 and obs.calls["migrated"] > 0


def test_hooked_defaults_match_the_kernel_policy_called_directly(frag_state) -> None:
    a, _ = frag_state(0.25, seed=3)
    b, _ = frag_state(0.25, seed=3)
    ra = C.compact_memory(a, hook=None)
    rb = C.compact_memory(b, host_with().hook)
    assert ra.as_dict() == rb.as_dict()
    for col in ("kind", "flags", "owner", "private", "token"):
        assert np.array_equal(getattr(a.pages, col), getattr(b.pages, col)), col


def test_a_plugin_replaces_the_finish_policy(one_zone_machine, fragmenter) -> None:
    class StopAfterTwoBatches:
        @hookimpl
        def pagemig_compaction_finished(self, machine: Machine, cc: C.CompactControl) -> Any:
            if cc.batches >= 2:
                return C.COMPACT_SUCCESS
            return None  # not mine to decide: the kernel's policy answers

    m = one_zone_machine(16384)
    fragmenter(m)
    cc = C.CompactControl(zone=m.zones[0], order=-1, mode=C.MigrateMode.SYNC, whole_zone=True,
                          ignore_skip_hint=True)
    result = C.compact_zone(m, cc, host_with(("stop", StopAfterTwoBatches())).hook)
    assert result == C.COMPACT_SUCCESS and cc.batches == 2
    assert_consistent(m)  # the run ended cleanly: nothing left isolated, targets released


def test_a_plugin_replaces_target_selection(one_zone_machine, fragmenter) -> None:
    """A policy that takes targets straight from the free lists, highest pfn first, above
    the migration scanner's block (instead of scanning pageblocks down from the top)."""

    class HighestFreeBlocksFirst:
        def __init__(self) -> None:
            self.calls = 0

        @hookimpl
        def pagemig_compaction_isolate_freepages(self, machine: Machine, cc: C.CompactControl) -> int:
            self.calls += 1
            floor = C.pageblock_end_pfn(machine, cc.migrate_pfn)
            heads = sorted((pfn for order_lists in cc.zone.free_area for d in order_lists for pfn in d
                            if pfn >= floor), reverse=True)
            taken = 0
            for pfn in heads:
                if cc.nr_freepages >= cc.nr_migratepages:
                    break
                got = C.isolate_free_block(machine, cc, pfn)
                if not got:
                    break
                taken += got
            if not taken:
                cc.free_pfn = cc.migrate_pfn  # nothing left above: let the scanners meet
            return taken

    policy = HighestFreeBlocksFirst()
    m = one_zone_machine(16384)
    fragmenter(m)
    cc = C.CompactControl(zone=m.zones[0], order=-1, mode=C.MigrateMode.SYNC, whole_zone=True,
                          ignore_skip_hint=True)
    C.compact_zone(m, cc, host_with(("targets", policy)).hook)
    assert policy.calls > 0 and cc.nr_migrated > 0
    assert cc.total_free_scanned == 0  # the default free scanner never ran
    assert_consistent(m)


def test_a_policy_that_finds_no_targets_ends_the_run_with_everything_put_back(one_zone_machine, fragmenter) -> None:
    class NoTargets:
        @hookimpl
        def pagemig_compaction_isolate_freepages(self, machine: Machine, cc: C.CompactControl) -> int:
            return 0

    m = one_zone_machine(8192)
    fragmenter(m)
    before = m.pages.kind.copy()
    cc = C.CompactControl(zone=m.zones[0], order=-1, mode=C.MigrateMode.SYNC, whole_zone=True)
    result = C.compact_zone(m, cc, host_with(("none", NoTargets())).hook)
    # migrate_pages gets -ENOMEM for want of a target before the scanners met
    assert result == C.COMPACT_CONTENDED and cc.nr_migrated == 0
    assert np.array_equal(before, m.pages.kind)
    assert_consistent(m)


def test_a_raising_policy_leaves_nothing_isolated(one_zone_machine, fragmenter) -> None:
    class Broken:
        def __init__(self) -> None:
            self.n = 0

        @hookimpl
        def pagemig_compaction_isolate_freepages(self, machine: Machine, cc: C.CompactControl) -> Any:
            self.n += 1
            if self.n == 3:
                raise RuntimeError("policy bug")
            return None

    m = one_zone_machine(8192)
    fragmenter(m)
    cc = C.CompactControl(zone=m.zones[0], order=-1, mode=C.MigrateMode.SYNC, whole_zone=True)
    with pytest.raises(RuntimeError, match="policy bug"):
        C.compact_zone(m, cc, host_with(("broken", Broken())).hook)
    assert_consistent(m)
    assert not C.compaction_state(m).active


def test_a_raising_policy_mid_batch_puts_back_only_isolated_driver_pages(one_zone_machine) -> None:
    """Driver pages in the batch when a target policy raises: each put back exactly once,
    and only if the VM had isolated it (the driver checks the protocol itself)."""
    from pagemig.driver import Driver
    from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE
    from pagemig.mm.movable import set_movable
    from pagemig.mm.pages import Page, PageKind, copy_page

    class StrictDriver(Driver):
        name = "strict"

        def __init__(self, machine: Machine) -> None:
            super().__init__(machine, {})
            self.tokens: dict[int, int] = {}
            self.isolated: set[int] = set()
            self.putbacks = 0

        def isolate_page(self, page, mode) -> bool:
            assert page.pfn not in self.isolated
            self.isolated.add(page.pfn)
            return True

        def migrate_page(self, dst, src, mode) -> int:
            assert src.pfn in self.isolated
            copy_page(dst, src)
            set_movable(dst, self)
            self.tokens[dst.pfn] = self.tokens.pop(src.pfn)
            self.isolated.discard(src.pfn)
            return 0

        def putback_page(self, page) -> None:
            assert page.pfn in self.isolated, "putback of a page the VM never isolated"
            self.isolated.discard(page.pfn)
            self.putbacks += 1

        def expected_contents(self):
            items = sorted(self.tokens.items())
            return (np.array([p for p, _ in items], dtype=np.int64),
                    np.array([t for _, t in items], dtype=np.uint64))

    class RaiseOnSecondRefill:
        def __init__(self) -> None:
            self.n = 0

        @hookimpl
        def pagemig_compaction_isolate_freepages(self, machine: Machine, cc: C.CompactControl) -> Any:
            self.n += 1
            if self.n == 2:
                raise RuntimeError("policy bug")
            # the first refill: only 8 targets, so the batch needs another refill
            taken = 0
            floor = C.pageblock_end_pfn(machine, cc.migrate_pfn)
            for pfn in sorted((p for d in cc.zone.free_area[0] for p in d if p >= floor), reverse=True)[:8]:
                taken += C.isolate_free_block(machine, cc, pfn)
            return taken

    m = one_zone_machine(4096)
    d = StrictDriver(m)
    for _ in range(2400):
        pfn = m.alloc_pages(d.page_gfp(GFP_HIGHUSER_MOVABLE), 0, d.owner_id, PageKind.DRIVER)
        page = Page(m, pfn)
        page.token = pfn + 1
        d.tokens[pfn] = pfn + 1
        set_movable(page, d)
    # wherever the allocator put them: the lowest 600 stay (the migrate scanner's first
    # batch), the middle goes, and every other one of the highest 600 is freed (order-0
    # targets far above the first batch's pageblock, where the policy looks)
    got = sorted(d.tokens)
    for pfn in got[600:1800] + got[1800::2]:
        del d.tokens[pfn]
        m.free_pages(pfn, 0)
    cc = C.CompactControl(zone=m.zones[0], order=-1, mode=C.MigrateMode.SYNC, whole_zone=True,
                          ignore_skip_hint=True)
    with pytest.raises(RuntimeError, match="policy bug"):
        C.compact_zone(m, cc, host_with(("raise", RaiseOnSecondRefill())).hook)
    assert not d.isolated and d.putbacks > 0
    assert_consistent(m)
