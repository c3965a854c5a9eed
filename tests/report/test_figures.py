"""The pictures: rendered from real runs, non-trivial PNG files, and a map that says
what the machine holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.pages import PageKind
from pagemig.plugins import get_plugin_host
from pagemig.report import figures
from pagemig.sim.loop import run_scenario
from pagemig.sim.observe import pageblock_map
from pagemig.sim.scenario import load_scenario

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def frag_result():  # type: ignore[no-untyped-def]
    host = get_plugin_host(autoload=False)
    sc = load_scenario("frag-1g", host, overrides=["machine.memory=256MiB", "duration=12s"])
    return run_scenario(sc, host)


def test_run_figures_are_written(frag_result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = figures.write_figures(frag_result, tmp_path)
    assert sorted(p.name for p in paths) == ["free_blocks.png", "memory_map.png", "over_time.png"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000


def test_compare_figure(frag_result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    doc = frag_result.as_dict()
    p = figures.write_compare_figure(doc, doc, "a", "b", tmp_path / "sub" / "cmp.png")
    assert p.read_bytes().startswith(PNG) and p.stat().st_size > 10_000


def test_compare_figure_names_each_timeline_line(frag_result) -> None:  # type: ignore[no-untyped-def]
    """Each dotted line marks a timeline command, and says which, on both time axes (as over_time.png)."""
    doc = frag_result.as_dict()
    commands = [e["command"] for e in doc["timeline"]]
    assert commands, "the scenario has a timeline"
    fig = figures.compare_figure(doc, doc, "a", "b")
    time_axes = [ax for ax in fig.axes if ax.get_xlabel() == "simulated time (s)"]
    assert len(time_axes) == 2
    for ax in time_axes:
        assert [t.get_text() for t in ax.texts] == commands


def test_map_image_colours_what_is_there() -> None:
    """One pageblock full of unmovable kernel pages, one with driver pages, the rest free:
    the cells' colours say so."""
    m = Machine(MachineConfig.arm32_device(64 * MiB, pageblock_order=9))
    pbo = m.pageblock_order
    start = 8 << pbo  # pageblock 8, past the kernel image
    m.pages.kind[start:start + 512] = PageKind.KERNEL  # pretend: kind is all the map reads
    m.buddy.pageblock_mt[8] = 0
    m.pages.kind[(9 << pbo):(9 << pbo) + 256] = PageKind.DRIVER
    pm = pageblock_map(m)
    assert pm.used[8] == 512 and pm.driver[9] == 256 and pm.used[9] == 256
    img, cols = figures.map_image(pm, cols=8)
    cell = figures.CELL

    def pixel(block: int, y: int) -> np.ndarray:
        r, c = divmod(block, cols)
        return img[r * cell + y, c * cell + 2]

    unmovable = figures._rgb(figures.MT_COLOURS[0])
    assert np.allclose(pixel(8, 0), unmovable) and np.allclose(pixel(8, cell - 2), unmovable)
    assert np.allclose(pixel(9, cell - 2), figures._rgb(figures.DRIVER_UNMOVABLE))  # bottom: driver pages
    assert not np.allclose(pixel(9, 0), figures._rgb(figures.DRIVER_UNMOVABLE))  # top half: free
    assert np.allclose(pixel(0, 0), figures._rgb(figures.RESERVED))  # the kernel image


def test_probe_failure_rate_per_interval() -> None:
    samples = [{"time_s": t, "probes": {"p": {"attempts": a, "failures": f}}}
               for t, a, f in [(0, 0, 0), (10, 100, 0), (20, 200, 50), (30, 200, 50)]]
    t, rate = figures.probe_failure_rates(samples, "p")
    assert list(t) == [10, 20, 30]
    assert rate[0] == 0 and rate[1] == 0.5 and np.isnan(rate[2])
