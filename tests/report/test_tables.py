"""Summary and compare tables print figures the way the kernel prints them."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.vmstat import render_buddyinfo, render_extfrag_index, render_unusable_index
from pagemig.plugins import get_plugin_host
from pagemig.report import compare, tables
from pagemig.sim.loop import run_scenario
from pagemig.sim.scenario import load_scenario


@pytest.mark.parametrize(("value", "text"), [(827, "0.827"), (-1000, "-1.000"), (0, "0.000"), (1000, "1.000"),
                                             (5, "0.005")])
def test_index_text_is_debugfs_format(value: int, text: str) -> None:
    assert tables.index_text(value) == text


def test_buddyinfo_lines_match_proc_format() -> None:
    m = Machine(MachineConfig.x86_64_guest(256 * MiB))
    zones = {z.name: {"free_blocks": z.nr_free_by_order()} for z in m.zones}
    assert "\n".join(tables.buddyinfo_lines(zones)) + "\n" == render_buddyinfo(m)


def test_index_rows_match_debugfs_files() -> None:
    m = Machine(MachineConfig.x86_64_guest(256 * MiB))
    from pagemig.mm.vmstat import indexes

    for zone, unusable_line, extfrag_line in zip(m.zones, render_unusable_index(m).splitlines(),
                                                 render_extfrag_index(m).splitlines(), strict=True):
        idx = indexes(zone.nr_free_by_order())
        assert unusable_line.split()[4:] == [tables.index_text(v) for v in idx["unusable_index"]]
        assert extfrag_line.split()[4:] == [tables.index_text(v) for v in idx["fragmentation_index"]]


@pytest.fixture(scope="module")
def doc():  # type: ignore[no-untyped-def]
    host = get_plugin_host(autoload=False)
    sc = load_scenario("page-churn", host, overrides=["machine.memory=256MiB", "duration=20s",
                                                      "timeline.0.at=15s"])
    return run_scenario(sc, host).as_dict()


def test_summary_mentions_what_a_kernel_engineer_looks_for(doc) -> None:  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    tables.print_summary(doc, Console(file=buf, width=160))
    out = buf.getvalue()
    for word in ("compaction #0: compact_memory at 15s", "buddyinfo before:", "buddyinfo after:",
                 "unusable index after", "extfrag index before", "pgmigrate_success", "allocation probes",
                 "GFP_TRANSHUGE_LIGHT", "checker: OK", "page_churn"):
        assert word in out, word


def test_headline_figures_from_the_samples(doc) -> None:  # type: ignore[no-untyped-def]
    h = compare.headline(doc)
    last = doc["samples"][-1]["free_blocks"]
    assert h["end: free blocks, orders 0-10"] == last
    assert h["end: free MiB in blocks of order >= 9 (pageblock)"] == sum(n << o for o, n in enumerate(last)
                                                                        if o >= 9) / 256
    rows = compare.compare_rows(doc, doc)
    assert all(a == b for _, a, b in rows)
    assert compare.difference([3.0, 1.0], [1.0, 2.0]) == [2.0, -1.0]
    assert compare._signed(compare.difference([3.0, 1.0], [1.0, 2.0])) == "+2 -1"


def test_the_index_legend_says_what_minus_one_means() -> None:
    # fragmentation_index returns -1000 when a block of the order is free (mm/vmstat.c:
    # "if (info->free_blocks_suitable) return -1000"): the legend must say so wherever
    # the rows are printed.
    doc = run_scenario(load_scenario("frag-1g", get_plugin_host()), get_plugin_host()).as_dict()
    console = Console(width=200, record=True, file=io.StringIO())
    tables.print_summary(doc, console)
    text = console.export_text()
    assert "-1.000" in text
    assert "-1.000 means a free block of that order exists" in text
