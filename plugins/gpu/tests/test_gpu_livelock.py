"""A regression test for a compaction livelock found with this plugin's scenario.

gpu-arm-1g (with its order-8 ``GFP_KERNEL | __GFP_NORETRY`` probe), seed 3: kcompactd's
fast_find_migrateblock chose, again and again, a pageblock whose GPU pages answer
-EAGAIN (their buffer in flight), and the run never ended (killed after 11 minutes;
it takes about 12 s).  Run in a subprocess with a timeout so that a regression fails
instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path


def test_gpu_arm_1g_with_an_order_8_probe_finishes(tmp_path: Path) -> None:
    text = (resources.files("pagemig_gpu") / "scenarios" / "gpu-arm-1g.toml").read_text(encoding="utf-8")
    assert "order = 8" in text  # the probe that found the livelock
    scenario = tmp_path / "gpu-arm-1g.toml"
    scenario.write_text(text)
    out = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEMIG_")}
    proc = subprocess.run([sys.executable, "-m", "pagemig.cli", "run", str(scenario), "--seed", "3", "--quiet",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["checker"]["ok"], doc["checker"]["problems"]
    big = next(p for p in doc["probes"] if p["order"] == 8)
    assert big["attempts"] > 0
