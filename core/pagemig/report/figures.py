"""PNG figures of a run (matplotlib, Agg, no GUI), written into ``--out``.

* ``memory_map.png``: physical memory, one cell per pageblock, before and after the
  last compaction (start and end of the run if it never compacted).  A cell's colour
  is its pageblock's migratetype; its filled height is the share of its pages in use,
  driver pages drawn from the bottom in their own colours (movable and not), free
  pages as a pale tint of the migratetype, reserved pages grey from the top.
* ``free_blocks.png``: free blocks per order, and free memory per order, before and
  after that compaction.
* ``over_time.png``: free memory in blocks of order >= 3 and >= pageblock order over
  time, memory use by kind, and each allocation probe's failure rate per interval,
  with the timeline's commands marked.  Lines are steps ending at each sample: a
  value is what the sample found, somewhere in the interval before it.
* ``compare.png`` (``pagemig compare``): the same pictures for two runs, overlaid.

Figures are built on ``matplotlib.figure.Figure`` directly, never through pyplot,
so no global backend state is touched and nothing can try to open a window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pagemig.mm.gfp import MIGRATETYPE_NAMES
from pagemig.mm.pages import NR_ORDERS, PAGE_ALLOC_COSTLY_ORDER, PAGE_SIZE
from pagemig.outputs import atomic_output
from pagemig.sim.result import PageblockMap

MIB_PAGES = (1 << 20) // PAGE_SIZE
MT_COLOURS = ["#d62728", "#2ca02c", "#1f77b4", "#9467bd", "#17becf", "#7f7f7f"]  # by migratetype
DRIVER_MOVABLE = "#ff9f1c"
DRIVER_UNMOVABLE = "#111111"
RESERVED = "#b0b0b0"
CELL = 10  # pixels per cell side, one of them the gap


def _rgb(hexcolour: str) -> np.ndarray:
    h = hexcolour.lstrip("#")
    return np.array([int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)])


def map_image(pm: PageblockMap, cols: int | None = None) -> tuple[np.ndarray, int]:
    """The map as an RGB image (rows of ``cols`` pageblocks, lowest address top left)."""
    n = pm.nr_blocks
    if cols is None:
        cols = 32 if n <= 1024 else 64 if n <= 4096 else 128
    rows = (n + cols - 1) // cols
    size = 1 << pm.pageblock_order
    inner = CELL - 1
    level = (np.arange(inner)[::-1] + 0.5) / inner  # pixel rows top to bottom, as heights
    du = (pm.driver - pm.movable_driver) / size
    dm = pm.movable_driver / size
    used = (pm.used - pm.driver) / size
    res = pm.reserved / size
    lv = level[None, :]
    cat = np.select(
        [lv < du[:, None], lv < (du + dm)[:, None], lv < (du + dm + used)[:, None], lv > 1 - res[:, None]],
        [0, 1, 2, 3], default=4,
    )  # (n, inner): 0 driver unmovable, 1 driver movable, 2 in use, 3 reserved, 4 free
    mt = np.minimum(pm.migratetype, len(MT_COLOURS) - 1)
    base = np.stack([_rgb(c) for c in MT_COLOURS])[mt]  # (n, 3)
    pale = 0.25 * base + 0.75
    colours = np.empty((n, inner, 3))
    colours[:] = pale[:, None, :]
    used_mask = cat == 2
    colours[used_mask] = np.broadcast_to(base[:, None, :], colours.shape)[used_mask]
    colours[cat == 0] = _rgb(DRIVER_UNMOVABLE)
    colours[cat == 1] = _rgb(DRIVER_MOVABLE)
    colours[cat == 3] = _rgb(RESERVED)
    img = np.ones((rows * CELL, cols * CELL, 3))
    idx = np.arange(n)
    r, c = idx // cols, idx % cols
    for x in range(inner):  # columns of a cell are identical
        img[(r * CELL)[:, None] + np.arange(inner)[None, :], (c * CELL + x)[:, None]] = colours
    return img, cols


def _map_axes(ax: Any, pm: PageblockMap, title: str) -> None:
    img, cols = map_image(pm)
    ax.imshow(img, interpolation="nearest", aspect="equal")
    rows = img.shape[0] // CELL
    block_mib = (1 << pm.pageblock_order) / MIB_PAGES
    step = max(1, rows // 8)
    ticks = list(range(0, rows, step))
    ax.set_yticks([t * CELL + CELL / 2 for t in ticks])
    ax.set_yticklabels([f"{t * cols * block_mib:g} MiB" for t in ticks], fontsize=7)
    ax.set_xticks([])
    for start, name in zip(pm.zone_starts, pm.zone_names, strict=True):
        r, c = divmod(start, cols)
        ax.annotate(name, (c * CELL, r * CELL), xytext=(2, -2), textcoords="offset points", fontsize=6,
                    color="black", va="bottom", bbox={"boxstyle": "square,pad=0.1", "fc": "white", "lw": 0})
    ax.set_title(title, fontsize=9)


def _legend_handles(pm_list: Sequence[PageblockMap]) -> list[Patch]:
    present = sorted({int(t) for pm in pm_list for t in np.unique(pm.migratetype)})
    handles = [Patch(color=MT_COLOURS[min(t, len(MT_COLOURS) - 1)], label=f"{MIGRATETYPE_NAMES[t]} (in use)")
               for t in present]
    r, g, b = (0.25 * _rgb(MT_COLOURS[1]) + 0.75).tolist()
    handles.append(Patch(color=(r, g, b), label="free (pale tint of the block's type)"))
    if any(pm.movable_driver.any() for pm in pm_list):
        handles.append(Patch(color=DRIVER_MOVABLE, label="driver pages, movable"))
    if any((pm.driver - pm.movable_driver).any() for pm in pm_list):
        handles.append(Patch(color=DRIVER_UNMOVABLE, label="driver pages, unmovable"))
    handles.append(Patch(color=RESERVED, label="reserved"))
    return handles


def memory_map_figure(panels: Sequence[tuple[str, PageblockMap]], suptitle: str) -> Figure:
    cols = len(panels)
    rows_px = max(map_image(pm)[0].shape[0] for _, pm in panels)
    height = 1.6 + rows_px / 70
    fig = Figure(figsize=(6.2 * cols, height), layout="constrained")
    axes = fig.subplots(1, cols, squeeze=False)[0]
    for ax, (title, pm) in zip(axes, panels, strict=True):
        _map_axes(ax, pm, title)
    fig.legend(handles=_legend_handles([pm for _, pm in panels]), loc="outside lower center", ncol=4, fontsize=7,
               frameon=False)
    fig.suptitle(suptitle, fontsize=10)
    return fig


def _chosen_maps(result: Any) -> tuple[list[tuple[str, PageblockMap]], Mapping[str, Any] | None]:
    """Before/after the last compaction that has maps, else start/end."""
    for c in reversed(result.compactions):
        if c.map_before is not None and c.map_after is not None:
            when = f"{c.trigger} at {c.time:g} s"
            return [(f"before {when}", c.map_before), (f"after {when}", c.map_after)], c.as_dict()
    return [("start of the run", result.maps["start"]), ("end of the run", result.maps["end"])], None


def free_blocks_figure(series: Sequence[tuple[str, list[int]]], title: str) -> Figure:
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    orders = np.arange(NR_ORDERS)
    width = 0.8 / max(1, len(series))
    for i, (label, blocks) in enumerate(series):
        b = np.asarray(blocks, dtype=float)
        x = orders - 0.4 + width * (i + 0.5)
        ax1.bar(x, np.where(b > 0, b, np.nan), width, label=label)
        ax2.bar(x, b * (1 << orders) / MIB_PAGES, width, label=label)
    ax1.set_yscale("log")
    ax1.set_title("free blocks per order", fontsize=9)
    ax2.set_title("free memory per order (MiB)", fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xticks(orders)
        ax.set_xlabel("order")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def _times(samples: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.array([s["time_s"] for s in samples], dtype=float)


def _mark_timeline(ax: Any, timeline: Sequence[Mapping[str, Any]], label: bool) -> None:
    for e in timeline:
        ax.axvline(e["time_s"], color="grey", lw=0.8, ls=":")
        if label:
            ax.annotate(e["command"], (e["time_s"], 1), xycoords=("data", "axes fraction"), rotation=90,
                        fontsize=6, va="top", ha="right", color="grey")


def probe_failure_rates(samples: Sequence[Mapping[str, Any]], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Failure rate of one probe in each interval between samples (NaN where it made no attempt)."""
    att = np.array([s["probes"].get(name, {}).get("attempts", 0) for s in samples], dtype=float)
    fail = np.array([s["probes"].get(name, {}).get("failures", 0) for s in samples], dtype=float)
    da, df = np.diff(att), np.diff(fail)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(da > 0, df / da, np.nan)
    return _times(samples)[1:], rate


def over_time_figure(doc: Mapping[str, Any]) -> Figure:
    samples = doc["samples"]
    pbo = doc["machine"]["pageblock_order"]
    probes = [p["name"] for p in doc["probes"]]
    n = 3 if probes else 2
    fig = Figure(figsize=(10, 2.4 * n + 0.6), layout="constrained")
    axes = fig.subplots(n, 1, sharex=True)
    t = _times(samples)
    ax = axes[0]
    ax.plot(t, [s["free_pages"] / MIB_PAGES for s in samples], label="free", color="black", lw=1, ds="steps-pre")
    ax.plot(t, [s["free_pages_order_ge_3"] / MIB_PAGES for s in samples],
            label=f"in blocks of order >= {PAGE_ALLOC_COSTLY_ORDER}", lw=1.5, ds="steps-pre")
    ax.plot(t, [s["free_pages_order_ge_pageblock"] / MIB_PAGES for s in samples],
            label=f"in blocks of order >= {pbo} (pageblock)", lw=1.5, ds="steps-pre")
    ax.set_ylabel("free MiB")
    ax.legend(fontsize=7, loc="best")
    _mark_timeline(ax, doc["timeline"], label=True)
    ax = axes[1]
    gauges = {"anon": "nr_anon_pages", "page cache": "nr_file_pages", "slab": ("nr_slab_reclaimable",
              "nr_slab_unreclaimable"), "driver": "nr_driver_pages", "other kernel": "nr_kernel_misc"}
    for label, keys in gauges.items():
        ks = keys if isinstance(keys, tuple) else (keys,)
        ys = [sum(s["vmstat"].get(k, 0) for k in ks) / MIB_PAGES for s in samples]
        if any(ys):
            ax.plot(t, ys, label=label, lw=1, ds="steps-pre")
    ax.set_ylabel("MiB in use")
    ax.legend(fontsize=7, loc="best")
    _mark_timeline(ax, doc["timeline"], label=False)
    if probes:
        ax = axes[2]
        for p in doc["probes"]:
            tt, rate = probe_failure_rates(samples, p["name"])
            ax.step(tt, 100 * rate, where="pre", label=f"{p['name']}: order {p['order']} {p['gfp']}")
        ax.set_ylabel("probe failures %")
        ax.set_ylim(-2, 102)
        ax.legend(fontsize=7, loc="best")
        _mark_timeline(ax, doc["timeline"], label=False)
    axes[-1].set_xlabel("simulated time (s)")
    fig.suptitle(f"{doc['scenario']['name']} (seed {doc['seed']}): free memory over time", fontsize=10)
    return fig


def write_figures(result: Any, out_dir: str | Path) -> list[Path]:
    """Every figure of one run, as PNG files in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = result.as_dict()
    name = doc["scenario"]["name"]
    panels, comp = _chosen_maps(result)
    paths = []
    block_mib = (1 << doc["machine"]["pageblock_order"]) / MIB_PAGES
    fig = memory_map_figure(panels, f"{name}: physical memory, one cell per {block_mib:g} MiB pageblock "
                                    "(colour: migratetype; filled height: pages in use)")
    paths.append(_save(fig, out / "memory_map.png"))
    if comp is not None:
        series = [("before", comp["before"]["free_blocks"]), ("after", comp["after"]["free_blocks"])]
        title = f"{name}: free blocks before and after {comp['trigger']} at {comp['time_s']:g} s"
    else:
        series = [("start", doc["samples"][0]["free_blocks"]), ("end", doc["samples"][-1]["free_blocks"])]
        title = f"{name}: free blocks at the start and the end of the run"
    paths.append(_save(free_blocks_figure(series, title), out / "free_blocks.png"))
    paths.append(_save(over_time_figure(doc), out / "over_time.png"))
    return paths


def compare_figure(a: Mapping[str, Any], b: Mapping[str, Any], label_a: str, label_b: str) -> Figure:
    pbo = a["machine"]["pageblock_order"]
    fig = Figure(figsize=(11, 7), layout="constrained")
    (ax1, ax2), (ax3, ax4) = fig.subplots(2, 2)
    orders = np.arange(NR_ORDERS)
    for i, (label, doc) in enumerate(((label_a, a), (label_b, b))):
        blocks = np.asarray(doc["samples"][-1]["free_blocks"], dtype=float)
        x = orders - 0.2 + 0.4 * i
        ax1.bar(x, np.where(blocks > 0, blocks, np.nan), 0.4, label=label)
        ax2.bar(x, blocks * (1 << orders) / MIB_PAGES, 0.4, label=label)
        t = _times(doc["samples"])
        ax3.plot(t, [s["free_pages_order_ge_3"] / MIB_PAGES for s in doc["samples"]], label=label, ds="steps-pre")
        ax4.plot(t, [s["free_pages_order_ge_pageblock"] / MIB_PAGES for s in doc["samples"]], label=label,
                 ds="steps-pre")
    ax1.set_yscale("log")
    ax1.set_title("free blocks per order, end of run", fontsize=9)
    ax2.set_title("free MiB per order, end of run", fontsize=9)
    ax3.set_title(f"free MiB in blocks of order >= {PAGE_ALLOC_COSTLY_ORDER}", fontsize=9)
    ax4.set_title(f"free MiB in blocks of order >= {pbo} (pageblock)", fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xticks(orders)
        ax.set_xlabel("order")
    for ax in (ax3, ax4):
        ax.set_xlabel("simulated time (s)")
        _mark_timeline(ax, a["timeline"], label=True)
    for ax in (ax1, ax2, ax3, ax4):
        ax.legend(fontsize=7)
    fig.suptitle(f"{a['scenario']['name']} (seed {a['seed']}): {label_a} vs {label_b}", fontsize=10)
    return fig


def write_compare_figure(a: Mapping[str, Any], b: Mapping[str, Any], label_a: str, label_b: str,
                         path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(compare_figure(a, b, label_a, label_b), path)


def _save(fig: Figure, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path
