"""The event loop: determinism, the timeline, compaction records, drivers, the checker."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pagemig.mm.pages import PageKind
from pagemig.sim.loop import Run, run_scenario
from pagemig.sim.result import SCHEMA_VERSION, without_timings
from pagemig.sim.scenario import parse_scenario

WORKLOADS = """
[drivers.toy]
pages = 200

[workloads.churn]
type = "page_churn"
size = "48MiB"
interval = "1s"

[workloads.probe]
type = "alloc_probe"
order = 3
rate = "10/s"

[[timeline]]
at = "10s"
command = "compact"
"""


def run(host, text: str, **kw):  # type: ignore[no-untyped-def]
    return run_scenario(parse_scenario(text, host, label="t.toml", name="t", **kw), host)


def test_same_seed_same_json_different_seed_differs(host, small_toml: str) -> None:  # type: ignore[no-untyped-def]
    text = small_toml + WORKLOADS
    a, b = run(host, text).as_dict(), run(host, text).as_dict()
    assert json.dumps(without_timings(a)) == json.dumps(without_timings(b))
    c = run(host, text, seed=4).as_dict()
    assert c["seed"] == 4
    assert json.dumps(without_timings(a)["samples"]) != json.dumps(without_timings(c)["samples"])


def test_result_document_keys(host, small_toml: str) -> None:  # type: ignore[no-untyped-def]
    doc = run(host, small_toml + WORKLOADS).as_dict()
    for key in ("schema_version", "vmstat", "compactions", "drivers", "probes", "checker", "timings", "plugins",
                "scenario", "samples", "seed"):
        assert key in doc
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["checker"]["ok"], doc["checker"]["problems"]
    (probe,) = doc["probes"]
    assert (probe["order"], probe["gfp"]) == (3, "GFP_KERNEL")
    assert probe["attempts"] == 200  # 10/s for 20 s
    assert doc["drivers"]["toy"]["pages"] == 200 and doc["drivers"]["toy"]["movable"] is True
    (comp,) = doc["compactions"]
    assert comp["trigger"] == "compact_memory" and comp["time_s"] == 10.0
    for side in ("before", "after"):
        assert len(comp[side]["free_blocks"]) == 11
        assert len(comp[side]["fragmentation_index"]) == 11 and len(comp[side]["unusable_index"]) == 11
    assert comp["zones"] and all(z["result"] for z in comp["zones"])
    assert [p["name"] for p in doc["plugins"]][:2] == ["pagemig.sim.builtin", "pagemig.workloads.builtin"]
    assert json.loads(json.dumps(doc)) == doc  # plain JSON all the way down


def test_samples_at_each_interval_and_their_free_counts(host, small_toml: str) -> None:  # type: ignore[no-untyped-def]
    result = run(host, small_toml + WORKLOADS)
    times = [s["time_s"] for s in result.samples]
    assert times == [0.0, 5.0, 10.0, 15.0, 20.0]
    for s in result.samples:
        blocks = s["free_blocks"]
        assert s["free_pages"] == sum(n << o for o, n in enumerate(blocks))
        assert s["free_pages_order_ge_3"] == sum(n << o for o, n in enumerate(blocks) if o >= 3)
        assert sum(z["free_blocks"][o] for z in s["zones"].values() for o in range(11)) == sum(blocks)


def test_timeline_after_and_when(host, small_toml: str) -> None:  # type: ignore[no-untyped-def]
    text = small_toml + """
[workloads.fill]
type = "page_churn"
start = "6s"
size = "64MiB"
free = "0%"
churn = "0%"

[[timeline]]
when = "anon >= 60MiB"
command = "sample grown"

[[timeline]]
after = "3s"
command = "set extfrag_threshold 700"
"""
    result = run(host, text)
    first, second = result.timeline
    assert first["time_s"] == 7.0  # the fill happens in the step starting at 6 s; seen at the next step
    assert second["time_s"] == 10.0 and second["result"] == {"key": "extfrag_threshold", "old": 500, "new": 700}
    assert [s["reason"] for s in result.samples if s["time_s"] == 7.0] == ["grown"]
    assert result.as_dict()["machine"]["sysctl"]["extfrag_threshold"] == 700


def test_workload_stop_and_start(host, small_toml: str) -> None:  # type: ignore[no-untyped-def]
    text = small_toml + """
[workloads.build]
type = "kernel_build"
parallelism = 2
job_anon = "4MiB"
tree = "64MiB"
headers = "4MiB"
start = "5s"
stop = "12s"
"""
    r = Run(parse_scenario(text, host, label="t", name="t"), host)
    result = r.execute()
    w = result.workloads["build"]
    assert w["jobs_running"] == 0 and w["jobs_started"] == w["jobs_done"] + w["jobs_killed"]
    assert w["jobs_done"] > 0 and w["jobs_killed"] == 2
    kinds = np.bincount(r.machine.pages.kind, minlength=len(PageKind))
    assert kinds[PageKind.ANON] == 0 and kinds[PageKind.PAGETABLE] == 0  # processes exited at stop
    assert kinds[PageKind.FILE] > 0  # the page cache stays
    assert result.checker["ok"]


def test_toy_command_and_driver_stats(host, small_toml: str) -> None:  # type: ignore[no-untyped-def]
    text = small_toml + '[drivers.toy]\npages = 5\n[[timeline]]\nat = "1s"\ncommand = "toy_grow 7"\n'
    result = run(host, text)
    assert result.timeline[0]["result"] == {"grown": 7}
    assert result.drivers["toy"]["pages"] == 12
    assert result.samples[-1]["drivers"]["toy"]["pages"] == 12


@pytest.mark.parametrize("movable", [True, False])
def test_driver_movable_flag_reaches_pages(host, small_toml: str, movable: bool) -> None:  # type: ignore[no-untyped-def]
    text = small_toml + f"[drivers.toy]\npages = 64\nmovable = {str(movable).lower()}\n"
    r = Run(parse_scenario(text, host, label="t", name="t"), host)
    r.execute()
    pfns = r.drivers["toy"].set.pfns()
    flags = r.machine.pages.flags[pfns]
    from pagemig.mm.pages import PageFlag

    assert bool(np.all(flags & PageFlag.MOVABLE)) is movable
    mts = r.machine.buddy.pageblock_mt[pfns >> r.machine.pageblock_order]
    from pagemig.mm.gfp import MigrateType

    assert bool(np.all(mts == MigrateType.MOVABLE)) is movable


def test_proactive_compaction_is_recorded(host) -> None:  # type: ignore[no-untyped-def]
    """frag leaves the node's fragmentation score far above proactive compaction's high mark
    (30 at the default proactiveness 20), so kcompactd's 500 ms check compacts."""
    from pagemig.sim.scenario import load_scenario

    sc = load_scenario("frag-proactive-1g", host, overrides=["machine.memory=256MiB", "duration=3s"])
    result = run_scenario(sc, host)
    recs = [c for c in result.compactions if c.trigger == "proactive"]
    assert recs and recs[0].time == 0.5
    assert recs[0].zones and all(z["order"] == -1 for z in recs[0].zones)
    assert recs[0].counters.get("compact_migrate_scanned", 0) > 0
    assert recs[0].before["unusable_index"][9] > 300
    assert [c.index for c in result.compactions] == list(range(len(result.compactions)))
    assert result.checker["ok"]
