"""The core's timeline commands on a running scenario."""

from __future__ import annotations

from pagemig.sim.loop import run_scenario
from pagemig.sim.scenario import parse_scenario


def test_drop_caches_frees_clean_page_cache_and_slab(host, small_toml: str) -> None:  # type: ignore[no-untyped-def]
    text = small_toml + """
[workloads.b]
type = "kernel_build"
parallelism = 2
job_anon = "2MiB"
tree = "64MiB"
headers = "4MiB"
dirty_expire = "1s"
stop = "8s"

[[timeline]]
at = "12s"
command = "drop_caches"
"""
    result = run_scenario(parse_scenario(text, host, label="t", name="t"), host)
    (entry,) = result.timeline
    before = next(s for s in result.samples if s["time_s"] == 10.0)["vmstat"]
    after = result.samples[-1]["vmstat"]
    assert before["nr_file_pages"] > 0 and before["nr_slab_reclaimable"] > 0
    assert entry["result"]["pages_dropped"] == before["nr_file_pages"] + before["nr_slab_reclaimable"]
    assert after["nr_file_pages"] == 0 and after["nr_slab_reclaimable"] == 0  # all clean by then
    assert after["drop_pagecache"] == 1 and after["drop_slab"] == 1
    assert result.checker["ok"]


def test_drop_caches_1_keeps_dirty_pages_and_slab(host, small_toml: str) -> None:  # type: ignore[no-untyped-def]
    text = small_toml + """
[workloads.b]
type = "kernel_build"
parallelism = 2
job_anon = "2MiB"
tree = "64MiB"
headers = "4MiB"
dirty_expire = "1h"
stop = "8s"

[[timeline]]
at = "12s"
command = "drop_caches 1"
"""
    result = run_scenario(parse_scenario(text, host, label="t", name="t"), host)
    after = result.samples[-1]["vmstat"]
    assert after["nr_file_pages"] == result.workloads["b"]["page_cache_dirty_pages"] > 0
    assert after["nr_slab_reclaimable"] > 0


def test_set_changes_a_tunable_and_its_watermarks(host, small_toml: str) -> None:  # type: ignore[no-untyped-def]
    text = small_toml + '[[timeline]]\nat = "2s"\ncommand = "set min_free_kbytes 16384"\n'
    result = run_scenario(parse_scenario(text, host, label="t", name="t"), host)
    assert result.timeline[0]["result"]["new"] == 16384
    zones = result.machine["zones"]
    # __setup_per_zone_wmarks: min shares 16384 KiB = 4096 pages by managed pages
    total = sum(z["managed_pages"] for z in zones)
    for z in zones:
        assert z["min"] == 4096 * z["managed_pages"] // total
