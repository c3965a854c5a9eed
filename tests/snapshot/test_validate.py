"""Snapshots that must not import: flag words no kernel writes, a kpageflags that shows
too little, and (below) files that describe different machines or moments.

The fixtures are real 6.1 captures; the bad snapshots are those same files with one of
them damaged or swapped, so each test changes exactly what it names.
"""

from __future__ import annotations

import json
import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pagemig.cli.snapshot import snapshot_group
from pagemig.snapshot.importer import import_snapshot
from pagemig.snapshot.model import load_snapshot
from pagemig.snapshot.parse import KPF, SnapshotFormatError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots"


def copy_without_manifest(src: Path, dst: Path) -> Path:
    """The fixture as plain files with no manifest (whose checksums would refuse any edit)."""
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name != "manifest.json":
            name = p.name.removesuffix(".xz")
            (dst / name).write_bytes(lzma.decompress(p.read_bytes()) if p.suffix == ".xz" else p.read_bytes())
    return dst


def write_flags(d: Path, words: np.ndarray) -> None:
    (d / "kpageflags").write_bytes(words.astype("<u8").tobytes())
    (d / "kpagecount").unlink(missing_ok=True)


def bit(*bits: KPF) -> int:
    return sum(1 << int(b) for b in bits)


@pytest.mark.parametrize("fixture", sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*")))
def test_every_committed_capture_still_imports(fixture: str) -> None:
    # UML leaves out exactly spanned - managed pfns: within what is accepted without --allow-partial
    snap = load_snapshot(FIXTURES / fixture)
    (z,) = snap.populated_zones
    assert len(snap.kpageflags) == z.managed < z.spanned


def test_random_words_are_refused(frag128: Path, tmp_path: Path) -> None:
    d = copy_without_manifest(frag128, tmp_path / "s")
    write_flags(d, np.random.default_rng(1).integers(0, 2**63, size=125, dtype=np.uint64))
    with pytest.raises(SnapshotFormatError, match="words for at least the 29468 pages zone Normal manages"):
        load_snapshot(d)
    with pytest.raises(SnapshotFormatError, match=r"no bit above 41"):
        load_snapshot(d, allow_partial=True)


@pytest.mark.parametrize(("word", "what"), [
    (1 << 42, "no bit above 41"),
    (1 << 63, "no bit above 41"),
    (bit(KPF.BUDDY, KPF.LRU), "BUDDY never together with LRU or SLAB"),
    (bit(KPF.BUDDY, KPF.SLAB), "BUDDY never together with LRU or SLAB"),
])
def test_flag_words_no_kernel_writes(frag128: Path, tmp_path: Path, word: int, what: str) -> None:
    d = copy_without_manifest(frag128, tmp_path / "s")
    flags = np.frombuffer((d / "kpageflags").read_bytes(), dtype="<u8").copy()
    flags[1000] = word
    flags[2000] = word
    write_flags(d, flags)
    with pytest.raises(SnapshotFormatError) as exc:
        load_snapshot(d)
    msg = str(exc.value)
    assert what in msg and "pfn 0x3e8" in msg and "1 more" in msg and str(d / "kpageflags") in msg


def test_highest_61_bits_are_accepted(frag128: Path, tmp_path: Path) -> None:
    d = copy_without_manifest(frag128, tmp_path / "s")
    flags = np.frombuffer((d / "kpageflags").read_bytes(), dtype="<u8").copy()
    flags[1000] |= np.uint64(bit(KPF.ARCH_2, KPF.SOFTDIRTY))  # bits 41 and 40 exist in 6.1
    write_flags(d, flags)
    load_snapshot(d)


def test_a_shortfall_beyond_the_unmanaged_pages_needs_allow_partial(frag128: Path, tmp_path: Path) -> None:
    d = copy_without_manifest(frag128, tmp_path / "s")
    flags = np.frombuffer((d / "kpageflags").read_bytes(), dtype="<u8")
    managed = 29468
    write_flags(d, flags[:managed])
    load_snapshot(d)  # exactly as UML dumps it
    write_flags(d, flags[:managed - 1])  # one pfn fewer than the zone manages
    with pytest.raises(SnapshotFormatError, match="got '29467 of them"):
        load_snapshot(d)
    r = CliRunner().invoke(snapshot_group, ["show", str(d)])
    assert r.exit_code == 2 and "--allow-partial" in r.output and len(r.output.strip().splitlines()) == 1
    out = tmp_path / "r.json"
    r = CliRunner().invoke(snapshot_group, ["show", str(d), "--allow-partial", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "kpageflags shows 29467 of 32768 pfns; 3301 (10.1%) inferred" in r.output and "PARTIAL" in r.output
    cov = json.loads(out.read_text())["coverage"]
    assert cov["partial"] is True
    assert cov["zones"] == [{"zone": "Normal", "spanned": 32768, "managed": managed, "seen": managed - 1,
                             "unseen": 32768 - managed + 1, "unseen_share": round((32768 - managed + 1) / 32768, 6),
                             "beyond_unmanaged": 1}]
    r = CliRunner().invoke(snapshot_group, ["compact", str(d), "--allow-partial", "--json", str(out)])
    assert r.exit_code == 0 and json.loads(out.read_text())["coverage"]["partial"] is True
    # the real fixture reports its tail, and is not partial
    r = CliRunner().invoke(snapshot_group, ["show", str(frag128), "--json", str(out)])
    assert r.exit_code == 0 and json.loads(out.read_text())["coverage"]["partial"] is False


def test_a_kpageflags_from_a_larger_machine_is_refused(frag128: Path, tmp_path: Path) -> None:
    d = copy_without_manifest(frag128, tmp_path / "s")
    flags = np.frombuffer((d / "kpageflags").read_bytes(), dtype="<u8")
    # a dump runs to max_pfn rounded up to a 32768-pfn section; the zone ends at 32768
    write_flags(d, np.concatenate([flags, np.zeros(32768 - len(flags), np.uint64)]))
    assert import_snapshot(load_snapshot(d)).report.visible_pfns == 32768
    write_flags(d, np.concatenate([flags, np.zeros(32768 - len(flags) + 1, np.uint64)]))
    with pytest.raises(SnapshotFormatError, match=r"at most 32768 words.*larger machine"):
        load_snapshot(d)


def test_partial_kpageflags_in_a_scenario_is_a_scenario_error(frag128: Path, tmp_path: Path) -> None:
    d = copy_without_manifest(frag128, tmp_path / "s")
    write_flags(d, np.zeros(125, np.uint64))
    from pagemig.plugins import get_plugin_host
    from pagemig.sim.scenario import ScenarioError, parse_scenario

    with pytest.raises(ScenarioError, match=r"machine\.snapshot.*125 of them"):
        parse_scenario(f'duration = "3s"\n[machine]\nsnapshot = "{d}"\n', get_plugin_host(autoload=False))


# --- files from different captures ---------------------------------------------------------


def _free_pages(buddyinfo_line_counts: list[int]) -> int:
    return sum(n << o for o, n in enumerate(buddyinfo_line_counts))


@pytest.mark.parametrize("other", ["uml-zram-128M/before", "uml-zram-128M/after"])
def test_a_pagetypeinfo_from_another_capture_is_refused(frag128: Path, tmp_path: Path, other: str) -> None:
    d = copy_without_manifest(frag128, tmp_path / "s")
    shutil.copy(FIXTURES / other / "pagetypeinfo", d / "pagetypeinfo")
    with pytest.raises(SnapshotFormatError) as exc:
        load_snapshot(d)
    msg = str(exc.value)
    assert msg.startswith(f"{d / 'pagetypeinfo'}: expected free blocks holding") and str(d / "buddyinfo") in msg
    assert "against 20109 (" in msg and "4069 4254 29 53 33 6 2 2 3 2 4" in msg  # buddyinfo's figures
    r = CliRunner().invoke(snapshot_group, ["show", str(d)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_blocks_that_merged_between_the_reads_are_accepted(frag128: Path, tmp_path: Path) -> None:
    # a live capture: buddyinfo read while an order-10 and an order-9 block lay split into
    # 1536 order-0 pages that had merged again when pagetypeinfo was read: 3072 pages apart
    # order by order, the same pages in total
    d = copy_without_manifest(frag128, tmp_path / "s")
    text = (d / "buddyinfo").read_text()
    head, counts = text.split("Normal")
    nums = [int(x) for x in counts.split()]
    moved = [nums[0] + 1536, *nums[1:9], nums[9] - 1, nums[10] - 1]
    assert _free_pages(moved) == _free_pages(nums) and min(moved) >= 0
    (d / "buddyinfo").write_text(f"{head}Normal " + " ".join(f"{n:6d}" for n in moved) + " \n")
    load_snapshot(d)


def test_vmstat_and_zoneinfo_from_another_capture_are_refused(frag128: Path, zram128: Path, tmp_path: Path) -> None:
    d = copy_without_manifest(frag128, tmp_path / "v")
    shutil.copy(zram128 / "vmstat", d / "vmstat")
    with pytest.raises(SnapshotFormatError, match=r"vmstat: expected nr_free_pages within 1024 pages of the "
                                                  r"20109 free pages .*zoneinfo counts over all zones.*'18028"):
        load_snapshot(d)
    d = copy_without_manifest(frag128, tmp_path / "z")
    shutil.copy(zram128 / "zoneinfo", d / "zoneinfo")
    with pytest.raises(SnapshotFormatError, match=r"zoneinfo: expected node 0 zone Normal's pages free within "
                                                  r"1024 pages of the 20109 free pages .*buddyinfo"):
        load_snapshot(d)


def test_live_drift_within_a_pageblock_is_accepted(frag128: Path, tmp_path: Path) -> None:
    # 128 MiB, pageblock order 10: the tolerance is max(1024 pages, 5% of buddyinfo's free
    # pages); with e pages more on buddyinfo's order-0 list, e is within it while
    # e <= 0.05 * (20109 + e), i.e. up to e = 1058 (0.05 * 21167 = 1058.35)
    d = copy_without_manifest(frag128, tmp_path / "s")
    text = (d / "buddyinfo").read_text()
    head, counts = text.split("Normal")
    nums = [int(x) for x in counts.split()]
    assert _free_pages(nums) == 20109
    for extra, ok in ((1058, True), (1059, False)):
        moved = [nums[0] + extra, *nums[1:]]
        (d / "buddyinfo").write_text(f"{head}Normal " + " ".join(f"{n:6d}" for n in moved) + " \n")
        if ok:
            load_snapshot(d)
        else:
            with pytest.raises(SnapshotFormatError, match="1059 pages apart"):
                load_snapshot(d)


def test_a_capped_pagetypeinfo_count_is_a_floor() -> None:
    from pagemig.snapshot.parse import parse_pagetypeinfo
    from pagemig.snapshot.validate import check_pagetypeinfo_buddyinfo

    def pti(movable0: str):  # type: ignore[no-untyped-def]
        return parse_pagetypeinfo(
            "Page block order: 9\nPages per block:  512\n\n"
            "Free pages count per migrate type at order 0 1\n"
            f"Node    0, zone   Normal, type      Movable {movable0} 0\n\n"
            "Number of blocks type     Unmovable      Movable\nNode 0, zone   Normal 0 300\n")

    buddy = {(0, "Normal"): (150000, 0)}
    check_pagetypeinfo_buddyinfo(pti(">100000"), buddy, "pagetypeinfo", "buddyinfo")  # 100000 is a floor
    with pytest.raises(SnapshotFormatError, match="50000 pages apart"):
        check_pagetypeinfo_buddyinfo(pti("100000"), buddy, "pagetypeinfo", "buddyinfo")
    with pytest.raises(SnapshotFormatError, match="50000 pages apart"):  # a floor above buddyinfo still counts
        check_pagetypeinfo_buddyinfo(pti(">100000"), {(0, "Normal"): (50000, 0)}, "pagetypeinfo", "buddyinfo")
