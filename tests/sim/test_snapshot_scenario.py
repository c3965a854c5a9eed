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
