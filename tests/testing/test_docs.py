"""docs/writing-a-driver.md, run: every code block, in order, in an empty folder.

* a block with ``title="path"`` is written to that path;
* a ``console`` block's ``$`` lines are run (``pip``, ``pytest`` and ``pagemig`` are the
  fresh virtual environment's; ``pip install`` installs without network into it);
* a ``python`` block without a title is run with the environment's python;
* a ``toml`` block without a title must parse.

Any other kind of block fails the test: a block nobody runs is a block that rots.
Also checked: every rule id of the kit appears in the guide's table of rules.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from pagemig.testing.rules import RULES

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-driver.md"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<body>.*?)^```\s*$", re.M | re.S)
TITLE = re.compile(r'title="([^"]+)"')


def blocks() -> list[tuple[str, str | None, str]]:
    out = []
    for m in FENCE.finditer(DOC.read_text(encoding="utf-8")):
        title = TITLE.search(m.group("info"))
        out.append((m.group("lang"), title.group(1) if title else None, m.group("body")))
    return out


def _shims(venv: Path) -> None:
    """``pip``, ``pytest`` and ``pagemig`` in the fresh environment, as a user's would be."""
    bindir = venv / "bin"
    py = bindir / "python"
    scripts = {
        # the outer pip installs into this environment, offline, with the outer setuptools
        "pip": f'#!/bin/sh\nPIP_NO_INDEX=1 PIP_NO_DEPS=1 PIP_NO_BUILD_ISOLATION=0 PIP_DISABLE_PIP_VERSION_CHECK=1 '
               f'exec {shlex.quote(sys.executable)} -m pip --python {shlex.quote(str(py))} "$@"\n',
        "pytest": f'#!/bin/sh\nexec {shlex.quote(str(py))} -m pytest "$@"\n',
        # the core's console script (pagemig.cli:main)
        "pagemig": f"#!{py}\nfrom pagemig.cli import main\nmain()\n",
    }
    for name, text in scripts.items():
        path = bindir / name
        path.write_text(text)
        path.chmod(0o755)


def test_every_rule_is_in_the_guide() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [rule for rule in RULES if f"| `{rule}` |" not in text]
    assert not missing, f"rules missing from the guide's table: {missing}"


def test_every_block_has_a_runner() -> None:
    for lang, title, _ in blocks():
        assert title is not None or lang in ("console", "python", "toml"), f"a {lang} block nobody runs"


def test_the_guide_runs_from_an_empty_folder(tmp_path: Path) -> None:
    try:
        import wheel  # noqa: F401 - pip install --no-build-isolation builds with it (setuptools < 70.1)
    except ImportError:
        pytest.fail("the test environment needs `wheel` (the core's test extras) to pip install offline")
    work = tmp_path / "camera"
    work.mkdir()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "_pagemig_outer.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    _shims(venv)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAGEMIG_", "PYTEST_", "PYTHONPATH"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    ran = []
    for i, (lang, title, body) in enumerate(blocks()):
        where = f"block {i + 1} ({lang}{' ' + title if title else ''})"
        if title is not None:
            path = work / title
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
        elif lang == "console":
            for line in body.splitlines():
                if not line.startswith("$ "):
                    continue
                proc = subprocess.run(line[2:], shell=True, cwd=work, env=env, capture_output=True, text=True,
                                      timeout=300, check=False)
                assert proc.returncode == 0, f"{where}: `{line[2:]}` failed:\n{proc.stdout[-3000:]}\n" \
                                             f"{proc.stderr[-3000:]}"
                ran.append((line[2:], proc.stdout))
        elif lang == "python":
            proc = subprocess.run([str(venv / "bin" / "python"), "-c", body], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=120, check=False)
            assert proc.returncode == 0, f"{where} failed:\n{proc.stdout}\n{proc.stderr}"
            ran.append(("python", proc.stdout))
        elif lang == "toml":
            tomllib.loads(body)
        else:
            pytest.fail(f"{where}: no runner for this kind of block")
    outputs = dict(ran)
    # what the guide says these commands show
    camera = next(r for r in json.loads(outputs["pagemig plugins --json"]) if r["name"] == "camera")
    assert camera["distribution"] == "pagemig-camera" and camera["version"] == "0.1.0"
    assert camera["drivers"] == ["camera"] and camera["commands"] == ["camera"] and camera["error"] is None
    assert "passed" in outputs["pytest -q -p no:cacheprovider"]
    assert "camera pages migrated:" in outputs["python"]
    assert (tmp_path / "pagemig-lidar" / "pagemig_lidar" / "driver.py").is_file()
