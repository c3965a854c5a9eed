"""Capture this very machine's /proc (root on Linux) and import it: the one test on a
kernel other than UML's, with several zones, holes and per-cpu lists as they come."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import pytest

from pagemig.snapshot.capture import CaptureError, capture
from pagemig.snapshot.importer import import_snapshot
from pagemig.snapshot.model import load_snapshot
from pagemig.snapshot.simulate import build_machine


@pytest.mark.slow
def test_capture_and_import_this_machine(tmp_path: Path) -> None:
    if platform.system() != "Linux" or os.geteuid() != 0:
        pytest.skip("needs root on Linux to read /proc/kpageflags")
    try:
        d = capture(tmp_path / "live", compress="gz")
    except CaptureError as e:
        pytest.skip(f"this machine's /proc cannot be read: {e}")
    snap = load_snapshot(d)
    state = import_snapshot(snap)
    assert state.report.mode == "all-pages"  # any kernel since 4.4
    total_b = total_r = 0
    for check in state.report.free:
        total_b += check.pages(check.buddyinfo)
        total_r += check.pages(check.reconstructed) + check.pages(check.inferred)
    # a live machine moves between the reads of buddyinfo and kpageflags; the
    # disagreement is printed, and small
    assert abs(total_b - total_r) <= 0.02 * total_b + 4096
    assert snap.pagetypeinfo is not None
    for fit in state.report.fits:
        for t, n in fit.target.items():
            if sum(fit.target.values()) == fit.nr_blocks:
                assert fit.assigned[t] == n
    machine = build_machine(state)
    assert sum(z.free_pages for z in machine.zones) == int(np.sum(1 << state.free_orders.astype(np.int64)))
