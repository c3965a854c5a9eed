"""The /proc files of a saved run: the same bytes as the live machine's, from the result alone.

Truth: the machine renderers of mm/vmstat.py (tested against the kernel's seq_printf formats
typed out by hand in tests/mm/test_vmstat.py) on the same state, and the snapshot parsers
(written against real /proc files of Linux 6.1) reading the text back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pagemig.cli import cli
from pagemig.mm import vmstat
from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from pagemig.mm.machine import Machine, MachineConfig
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageKind
from pagemig.report.procfs import PROC_FILES, proc_text, render_state
from pagemig.snapshot.parse import parse_buddyinfo, parse_pagetypeinfo, parse_vmstat

RENDER = {
    "buddyinfo": vmstat.render_buddyinfo,
    "pagetypeinfo": vmstat.render_pagetypeinfo,
    "vmstat": vmstat.render_vmstat,
    "extfrag_index": vmstat.render_extfrag_index,
    "unusable_index": vmstat.render_unusable_index,
}


def recorded(m) -> tuple[dict, dict]:
    """What a result document keeps of a machine and of one of its states."""
    doc = {"machine": {"pageblock_order": m.pageblock_order,
                       "zones": [{"name": z.name, "managed_pages": z.managed_pages} for z in m.zones]}}
    state = {**vmstat.free_state(m, pagetypes=True), "vmstat": dict(vmstat.vmstat_items(m))}
    return doc, json.loads(json.dumps(state))  # as it comes back from the JSON file


@pytest.mark.parametrize("name", sorted(PROC_FILES))
def test_a_recorded_state_prints_what_the_machine_prints(name: str) -> None:
    m = Machine(MachineConfig.x86_64_guest(256 << 20))  # two zones, DMA and DMA32
    anon = SimpleOwner(m, "a")
    pfns = np.sort(m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, 40000, anon.owner_id, PageKind.ANON))
    anon.pages.add_many(pfns, pfns.astype(np.uint64))
    drop = pfns[pfns % 3 != 0]
    anon.pages.remove_many(drop)
    m.free_pages_bulk(drop)
    kernel = SimpleOwner(m, "k")
    for _ in range(40):  # unmovable allocations steal pageblocks: more than one migratetype in use
        kernel.pages.add(m.alloc_pages(GFP_KERNEL, 0, kernel.owner_id, PageKind.KERNEL), 1)
    doc, state = recorded(m)
    assert render_state(doc, state, name) == RENDER[name](m)


def test_run_proc_prints_each_file_before_and_after_compaction_and_show_prints_it_again(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = CliRunner().invoke(cli, ["run", "frag-1g", "-q", "--json", str(out), "--proc", "pagetypeinfo,buddyinfo"])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    sections = r.output.split("==> ")[1:]
    (compaction,) = [c for c in doc["compactions"] if c["trigger"] == "compact_memory"]
    assert len(sections) == 4  # two files, before and after the scenario's one compact command
    head, body = sections[1].split(" <==\n", 1)
    assert head.startswith("/proc/buddyinfo: before compaction")
    assert {z.zone: list(z.counts) for z in parse_buddyinfo(body)} == {
        name: z["free_blocks"] for name, z in compaction["before"]["zones"].items()}
    head, body = sections[2].split(" <==\n", 1)
    assert head.startswith("/proc/pagetypeinfo: after compaction")
    pti = parse_pagetypeinfo(body)
    for name, z in compaction["after"]["zones"].items():
        free = [sum(c) for c in zip(*(pti.free[(0, name, t)] for t in pti.types), strict=True)]
        assert free == z["free_blocks"]  # pagetypeinfo's rows add up to buddyinfo's
    shown = CliRunner().invoke(cli, ["show", str(out), "--proc", "pagetypeinfo", "--proc", "buddyinfo"])
    assert shown.exit_code == 0 and shown.output == r.output


def test_show_end_prints_vmstat_of_the_last_sample(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert CliRunner().invoke(cli, ["run", "frag-1g", "-q", "--json", str(out)]).exit_code == 0
    r = CliRunner().invoke(cli, ["show", str(out), "--proc", "vmstat", "--at", "end"])
    assert r.exit_code == 0, r.output
    head, body = r.output.split(" <==\n", 1)
    assert head == "==> /proc/vmstat: at 20s (end of run)"
    doc = json.loads(out.read_text())
    assert parse_vmstat(body) == doc["samples"][-1]["vmstat"]


def test_show_without_proc_prints_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert CliRunner().invoke(cli, ["run", "frag-1g", "-q", "--json", str(out)]).exit_code == 0
    r = CliRunner().invoke(cli, ["show", str(out)])
    assert r.exit_code == 0 and "buddyinfo before" in r.output and "checker" in r.output.lower()


@pytest.mark.parametrize(("content", "why"), [
    ("not json", "not JSON"),
    ('{"a": 1}', "not a pagemig run result"),
])
def test_show_refuses_what_is_not_a_result(tmp_path: Path, content: str, why: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    r = CliRunner().invoke(cli, ["show", str(bad), "--proc", "vmstat"])
    assert r.exit_code == 2
    assert why in r.output and str(bad) in r.output and "Traceback" not in r.output


def test_an_unknown_proc_file_is_refused_before_the_run() -> None:
    r = CliRunner().invoke(cli, ["run", "gpu-arm-1g", "--proc", "meminfo"])
    assert r.exit_code == 2
    assert "--proc meminfo: expected one of buddyinfo, pagetypeinfo" in r.output
    r = CliRunner().invoke(cli, ["run", "frag-1g", "--json", "-", "--proc", "vmstat"])
    assert r.exit_code == 2 and "--json -" in r.output


def test_proc_text_heads_each_file_as_head_does() -> None:
    doc = {"machine": {"pageblock_order": 9, "zones": [{"name": "Normal", "managed_pages": 1}]},
           "compactions": [], "samples": [{"time_s": 5.0, "reason": "interval",
                                           "zones": {"Normal": {"free_blocks": [1] + [0] * 10}}}]}
    assert proc_text(doc, ["buddyinfo"], "samples") == (
        "==> /proc/buddyinfo: at 5s (interval sample) <==\n"
        "Node 0, zone   Normal      1      0      0      0      0      0      0      0      0      0      0 \n\n")
