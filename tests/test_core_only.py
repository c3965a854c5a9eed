"""The core without any driver plugin: it installs, the CLI runs, and its tests pass.

A real non-editable pip install of the core into a fresh interpreter environment
whose other packages are the project's dependencies only (no pagemig-* plugin),
so entry-point discovery sees no driver distribution at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _deps_dir(tmp: Path) -> Path:
    """Everything installed beside the core except pagemig distributions and editable finders."""
    site = Path(sysconfig.get_paths()["purelib"])
    deps = tmp / "deps"
    deps.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if "pagemig" in name or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)
    return deps


@pytest.fixture(scope="module")
def core_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("core_only")
    src = tmp / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "core", src / "core", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    target = tmp / "core_site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    vpython = venv / "bin" / "python"
    purelib = subprocess.run([str(vpython), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "pagemig_core_only.pth").write_text(f"{target}\n{_deps_dir(tmp)}\n")
    return vpython


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PAGEMIG_", "PYTHONPATH"))}


def test_core_cli_runs_without_plugins(core_only: Path) -> None:
    proc = subprocess.run([str(core_only), "-m", "pagemig.cli", "plugins", "--json"], capture_output=True,
                          text=True, env=_env(), timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert not [p for p in listing if not p["builtin"]], listing
    assert all(p["error"] is None for p in listing)
    where = subprocess.run([str(core_only), "-c", "import pagemig; print(pagemig.__file__)"],
                           capture_output=True, text=True, env=_env(), check=True).stdout
    assert "core_site" in where  # the installed copy, not the source tree


def test_core_tests_pass_without_plugins(core_only: Path) -> None:
    tests = [str(ROOT / "tests" / t) for t in ("test_plugins.py",)]
    tests += [str(p) for p in sorted((ROOT / "tests" / "mm").glob("test_*.py")) if "slow" not in p.name][:6]
    proc = subprocess.run([str(core_only), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                          capture_output=True, text=True, env=_env(), timeout=900, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_installed_core_ships_its_data(core_only: Path, tmp_path: Path) -> None:
    """Package data reaches a non-editable install: the shipped scenarios run and the
    new-driver templates write a distribution."""
    run = subprocess.run([str(core_only), "-m", "pagemig.cli", "run", "frag-1g", "--quiet", "--json", "-"],
                         capture_output=True, text=True, env=_env(), timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(run.stdout)
    assert doc["checker"]["ok"] and doc["vmstat"]["pgmigrate_success"] > 0
    new = subprocess.run([str(core_only), "-m", "pagemig.cli", "new-driver", "camera", "--dir", str(tmp_path / "cam")],
                         capture_output=True, text=True, env=_env(), timeout=120, check=False)
    assert new.returncode == 0, new.stderr[-2000:]
    assert (tmp_path / "cam" / "pyproject.toml").is_file()
