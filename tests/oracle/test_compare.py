"""Real against simulated: the formulas on hand-worked counts, the side-by-side table,
and (once the simulator compacts) the fidelity target on the real 1 GiB snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemig.oracle.compare import Comparison, compare, free_pageblocks, unusable_index
from pagemig.snapshot.importer import import_snapshot
from pagemig.snapshot.model import load_snapshot
from pagemig.snapshot.simulate import SimCompaction

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots"


def test_unusable_index_hand_worked() -> None:
    # 100 order-0 and 50 order-1 blocks: nothing usable at order 3
    assert unusable_index([100, 50], 3) == 1.0
    # one order-4 block (16 pages) and 16 order-0 pages: half the free memory usable at order 3
    assert unusable_index([16, 0, 0, 0, 1], 3) == 0.5
    assert unusable_index([0, 0, 0, 0, 1], 3) == 0.0
    assert unusable_index([0] * 11, 3) == 1.0  # no free memory: the kernel says 1000


def test_free_pageblocks_counts_larger_blocks_in_pageblocks() -> None:
    assert free_pageblocks([5, 0, 0, 0, 0, 0, 0, 0, 0, 3, 2], 9) == 3 + 2 * 2
    assert free_pageblocks([5, 0, 0, 0, 0, 0, 0, 0, 0, 3, 2], 10) == 2


def fake_sim(after: list[int], migrated: int) -> SimCompaction:
    return SimCompaction(before={"Normal": [0] * 11}, after={"Normal": after},
                         counters={"pgmigrate_success": migrated, "compact_isolated": 2 * migrated},
                         seconds=0.5, simulated_seconds=0.1)


def test_side_by_side_table_and_headline() -> None:
    before = load_snapshot(FIXTURES / "uml-frag-128M" / "before")
    after = load_snapshot(FIXTURES / "uml-frag-128M" / "after")
    state = import_snapshot(before)
    real_after = list(after.buddyinfo[0].counts)
    real_migrated = after.vmstat["pgmigrate_success"] - before.vmstat["pgmigrate_success"]
    # a simulator 10% short on migrations and one pageblock short is within 15%
    sim_after = real_after.copy()
    sim_after[10] -= 1
    cmp = compare("frag", "128M", before, after, state, fake_sim(sim_after, int(real_migrated * 0.9)), 0.085)
    h = cmp.headline()
    assert h["pgmigrate_success"]["real"] == real_migrated
    assert h["pgmigrate_success"]["within_tolerance"]
    assert h["free_pageblocks_after"]["real"] == real_after[10]
    text = cmp.render()
    assert "free blocks per order (all zones)" in text
    assert "unusable free space index" in text and "pgmigrate_success" in text
    assert "real (UML guest, wall clock):      0.085 s" in text
    assert text.count("compact_isolated") == 1 and text.count("pgmigrate_success") == 2  # table + verdict
    js = cmp.to_json()
    assert js["real"]["buddyinfo_after"] == real_after and js["sim"]["buddyinfo_after"] == sim_after
    far = compare("frag", "128M", before, after, state, fake_sim(sim_after, real_migrated // 2), 0.1)
    assert not far.headline()["pgmigrate_success"]["within_tolerance"]
    assert "OUTSIDE" in far.render()
    assert isinstance(cmp, Comparison)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "mem"), [("uml-frag-1G", "1024M"), ("uml-zram-512M", "512M")])
def test_fidelity_within_15_percent(name: str, mem: str) -> None:
    """Issue 7's target, on real snapshots captured by the oracle (frag at 1 GiB is the
    one the issue names; zram at 512 MiB holds zsmalloc pages): after full compaction of
    the imported "before" state, the simulator's free pageblocks and pgmigrate_success
    are each within 15% of what the real kernel did."""
    from pagemig.snapshot.simulate import simulate_compact_memory

    before = load_snapshot(FIXTURES / name / "before")
    after = load_snapshot(FIXTURES / name / "after")
    state = import_snapshot(before)
    sim = simulate_compact_memory(state)
    # the simulator starts from the imported blocks: buddyinfo's, up to the drift the
    # import reports (the capture's own processes exiting between two reads)
    check = state.report.free[0]
    assert sim.before["Normal"] == [r + i for r, i in zip(check.reconstructed, check.inferred, strict=True)]
    assert max(abs(d) for d in check.difference) <= 1
    real_s = after.manifest["oracle"]["times"]
    cmp = compare(name, mem, before, after, state, sim,
                  real_s["compact_end"] - real_s["compact_start"])
    for name, h in cmp.headline().items():
        assert h["within_tolerance"], f"{name}: {h}\n{cmp.render()}"


def test_unusable_index_agrees_with_the_simulators_vmstat() -> None:
    """The comparison's formula and pagemig.mm.vmstat's (x1000, integer) on real counts."""
    from pagemig.mm.vmstat import unusable_free_index

    for name in ("uml-frag-1G", "uml-zram-512M"):
        for when in ("before", "after"):
            counts = list(load_snapshot(FIXTURES / name / when).buddyinfo[0].counts)
            for order in (1, 3, 9, 10):
                assert int(unusable_index(counts, order) * 1000) == unusable_free_index(counts, order)


def test_machine_from_snapshot() -> None:
    from pagemig.snapshot import machine_from_snapshot

    machine, state = machine_from_snapshot(FIXTURES / "uml-zram-128M" / "before")
    assert [z.name for z in machine.zones] == ["Normal"]
    assert sum(z.free_pages for z in machine.zones) == 18028  # buddyinfo's total
    assert machine.pageblock_order == state.pageblock_order == 10


def test_snapshot_compact_cli_json(tmp_path: Path) -> None:
    """``pagemig snapshot compact DIR --json``: the run result's ``compactions`` and
    ``vmstat`` keys for a compaction of the imported snapshot."""
    import json

    from click.testing import CliRunner

    from pagemig.cli.snapshot import snapshot_group

    out = tmp_path / "c.json"
    r = CliRunner().invoke(snapshot_group, ["compact", str(FIXTURES / "uml-frag-128M" / "before"), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "unusable index at order 3" in r.output
    js = json.loads(out.read_text())
    (rec,) = js["compactions"]
    assert rec["trigger"] == "compact_memory"
    assert rec["before"]["free_blocks"][10] == 4  # the snapshot's 4 free order-10 blocks
    assert rec["after"]["free_blocks"][10] > rec["before"]["free_blocks"][10]
    assert js["vmstat"]["pgmigrate_success"] == rec["counters"]["pgmigrate_success"] > 1000
