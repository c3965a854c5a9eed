"""app_churn: applications come and go; each holds anon memory, THP, stacks and
unmovable kernel memory of mixed orders, and gives all of it back when it exits."""

from __future__ import annotations

import numpy as np

from pagemig.mm.invariants import assert_consistent
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.workloads import app_churn

from .conftest import build, drive


def test_apps_arrive_live_and_leave_everything_behind(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(256)
    free0 = m.nr_free_pages
    w = build(app_churn.AppChurn, m, app_churn.validate, apps=4, rate="0.5/s", lifetime="5s", rss="8MiB",
              kernel="256KiB", max_apps=8)
    drive(w, m, 30.0)
    st = w.stats()
    assert st["apps_started"] == st["apps_exited"] + st["apps_running"] > 4
    kinds = np.bincount(m.pages.kind, minlength=len(PageKind))
    assert kinds[PageKind.ANON] == st["anon_pages"] + st["thp_pages"]
    assert kinds[PageKind.SLAB_UNRECLAIMABLE] == st["kernel_pages"]
    heads = np.flatnonzero(m.pages.flags & PageFlag.HEAD)
    orders = set(m.pages.private[heads + 1].tolist())
    assert {2} <= orders  # kernel stacks at least; kernel memory of orders 1-3 and THPs as available
    assert_consistent(m)
    w.stop(30.0)
    assert m.nr_free_pages == free0
    assert_consistent(m)


def test_max_apps_turns_arrivals_away(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(256)
    w = build(app_churn.AppChurn, m, app_churn.validate, apps=3, rate="10/s", lifetime="1h", rss="1MiB",
              max_apps=3)
    drive(w, m, 5.0)
    st = w.stats()
    assert st["apps_running"] == 3 and st["apps_refused"] > 0
