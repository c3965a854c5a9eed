"""A scenario that starts from a real machine's memory (``machine.snapshot``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemig.plugins import get_plugin_host
from pagemig.sim.loop import run_scenario
from pagemig.sim.scenario import ScenarioError, parse_scenario
from pagemig.snapshot import import_snapshot, load_snapshot

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots" / "uml-frag-128M" / "before"


def _text(snapshot: str, extra: str = "") -> str:
    return (f'duration = "3s"\n[machine]\nsnapshot = "{snapshot}"\ncompaction_proactiveness = 0\n{extra}'
            '[[timeline]]\nat = "1s"\ncommand = "compact"\n')


def test_a_run_starts_from_the_snapshot_and_compacts_it(tmp_path: Path) -> None:
    host = get_plugin_host(autoload=False)
    scenario_file = tmp_path / "s.toml"
    scenario_file.write_text(_text(str(FIXTURE)))
    scenario = parse_scenario(scenario_file.read_text(), host, label=str(scenario_file))
    doc = run_scenario(scenario, host).as_dict()
    assert doc["checker"]["ok"], doc["checker"]["problems"]
    # the machine is the snapshot's: its zone and page counts, not a preset's
    real = load_snapshot(FIXTURE)
    state = import_snapshot(real)
    zone = real.populated_zones[0]
    assert [z["name"] for z in doc["machine"]["zones"]] == [zone.name]
    assert doc["machine"]["pageblock_order"] == real.pagetypeinfo.pageblock_order
    before = doc["compactions"][0]["before"]["free_blocks"]
    assert sum(n << o for o, n in enumerate(before)) == int(state.kind.size - (state.kind != 0).sum())
    assert doc["vmstat"]["pgmigrate_success"] > 1000  # the kept anon pages move
    assert doc["scenario"]["machine"]["snapshot"] == str(FIXTURE)


def test_a_relative_snapshot_is_found_beside_the_scenario_file(tmp_path: Path) -> None:
    link = tmp_path / "snap"
    link.symlink_to(FIXTURE, target_is_directory=True)
    f = tmp_path / "s.toml"
    f.write_text(_text("snap"))
    scenario = parse_scenario(f.read_text(), get_plugin_host(autoload=False), label=str(f))
    assert scenario.machine.snapshot == str(link)


@pytest.mark.parametrize(("snapshot", "extra", "message"), [
    ("/nonexistent/snap", "", "machine.snapshot"),
    (str(FIXTURE), 'memory = "1GiB"\n', "the snapshot gives the machine's layout"),
])
def test_bad_snapshot_keys_are_scenario_errors(snapshot: str, extra: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_text(snapshot, extra), get_plugin_host(autoload=False))


def _partial_copy(tmp_path: Path, short_by: int) -> Path:
    """The fixture as plain files (no manifest, whose checksums refuse an edit), its
    kpageflags cut ``short_by`` pfns below the 29,468 pages the zone manages."""
    import lzma

    import numpy as np

    d = tmp_path / "partial"
    d.mkdir()
    for p in FIXTURE.iterdir():
        if p.name not in ("manifest.json", "kpagecount.xz"):
            data = p.read_bytes()
            (d / p.name.removesuffix(".xz")).write_bytes(lzma.decompress(data) if p.suffix == ".xz" else data)
    words = np.frombuffer((d / "kpageflags").read_bytes(), dtype="<u8")
    (d / "kpageflags").write_bytes(words[:29468 - short_by].tobytes())
    return d


def test_a_partial_snapshot_needs_allow_partial_and_the_result_says_what_was_inferred(tmp_path: Path) -> None:
    d = _partial_copy(tmp_path, 100)
    host = get_plugin_host(autoload=False)
    with pytest.raises(ScenarioError, match=r"machine\.allow_partial = true"):
        parse_scenario(_text(str(d)), host)
    scenario = parse_scenario(_text(str(d), "allow_partial = true\n"), host)
    doc = run_scenario(scenario, host).as_dict()
    assert doc["checker"]["ok"], doc["checker"]["problems"]
    machine = doc["scenario"]["machine"]
    assert machine["allow_partial"] is True and machine["coverage"]["partial"] is True
    (zone,) = machine["coverage"]["zones"]
    assert zone["seen"] == 29468 - 100 and zone["managed"] == 29468
    assert zone["unseen"] == zone["spanned"] - zone["seen"]


def test_allow_partial_without_a_snapshot_is_a_scenario_error() -> None:
    text = 'duration = "3s"\n[machine]\npreset = "x86_64-guest"\nmemory = "256MiB"\nallow_partial = true\n'
    with pytest.raises(ScenarioError, match=r"machine\.allow_partial: applies"):
        parse_scenario(text, get_plugin_host(autoload=False))
