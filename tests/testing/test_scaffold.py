"""``pagemig new-driver``: names checked with a clear error, the distribution written whole.

The written files are checked against what a distribution needs (an entry point in
the ``pagemig`` group naming an importable module, the three callbacks, a scenario
the loader accepts, tests that use the kit), not against a copy of the templates.
"""

from __future__ import annotations

import ast
import keyword
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib.resources.abc import Traversable
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from pagemig.cli.new_driver import new_driver
from pagemig.testing.scaffold import (
    PLACEHOLDER_RE,
    ScaffoldError,
    placeholders,
    render,
    template_root,
    validate_name,
    write_driver,
)


@pytest.mark.parametrize(("name", "hint"), [
    ("", "empty"),
    ("My Driver", "lowercase letters"),
    ("my-gpu", "'my_gpu'"),
    ("MyGpu", "'mygpu'"),
    ("9lives", "start with a letter"),
    ("_hidden", "start with a letter"),
    ("gpu.v2", "lowercase letters"),
    ("class", "reserved word"),
    ("pagemig", "reserved word"),
    ("x" * 41, "at most 40"),
])
def test_bad_names_are_refused_saying_what_would_work(name: str, hint: str) -> None:
    with pytest.raises(ScaffoldError) as err:
        validate_name(name)
    assert hint in str(err.value)


@given(st.from_regex(r"[a-z][a-z0-9_]{0,30}", fullmatch=True))
def test_every_valid_name_gives_importable_python_names(name: str) -> None:
    if name == "pagemig" or keyword.iskeyword(name):
        return
    v = placeholders(name)
    assert v["package"].isidentifier()
    assert v["Class"].isidentifier() and v["Class"][0].isupper()
    assert re.fullmatch(r"pagemig-[a-z0-9-]+", v["dist"])


def test_render_refuses_an_unknown_placeholder() -> None:
    with pytest.raises(KeyError, match="nosuch"):
        render("x = {{nosuch}}", {"name": "a"})


def test_every_template_placeholder_has_a_value() -> None:
    known = set(placeholders("abc"))

    def walk(node: Traversable) -> Iterator[Traversable]:
        for child in node.iterdir():
            yield from walk(child) if child.is_dir() else [child]

    for f in walk(template_root()):
        used = set(PLACEHOLDER_RE.findall(f.read_text(encoding="utf-8"))) | set(PLACEHOLDER_RE.findall(f.name))
        assert used <= known, f"{f.name}: {used - known}"


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scaffold") / "out"
    write_driver("my_gpu", root)
    return root


def test_the_distribution_has_every_part(written: Path) -> None:
    files = {p.relative_to(written).as_posix() for p in written.rglob("*") if p.is_file()}
    assert files == {
        "pyproject.toml", "README.md",
        "pagemig_my_gpu/__init__.py", "pagemig_my_gpu/driver.py", "pagemig_my_gpu/plugin.py",
        "pagemig_my_gpu/scenarios/my_gpu-demo.toml",
        "tests/test_conformance.py", "tests/test_my_gpu.py",
    }
    leftovers = [f for f in files if PLACEHOLDER_RE.search((written / f).read_text()) or "{{" in f]
    assert not leftovers


def test_pyproject_declares_the_entry_point_of_an_existing_module(written: Path) -> None:
    meta = tomllib.loads((written / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "pagemig-my-gpu"
    target = meta["project"]["entry-points"]["pagemig"]["my_gpu"]
    assert target == "pagemig_my_gpu.plugin"
    assert (written / "pagemig_my_gpu" / "plugin.py").is_file()
    assert any(dep.startswith("pagemig") for dep in meta["project"]["dependencies"])
    assert "scenarios/*.toml" in meta["tool"]["setuptools"]["package-data"]["pagemig_my_gpu"]


def test_the_driver_implements_the_protocol_and_the_exerciser(written: Path) -> None:
    tree = ast.parse((written / "pagemig_my_gpu" / "driver.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    assert cls.name == "MyGpuDriver"
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert {"isolate_page", "migrate_page", "putback_page", "populate", "release", "expected_contents"} <= methods


def test_the_tests_use_the_kit(written: Path) -> None:
    text = (written / "tests" / "test_conformance.py").read_text()
    assert "DriverConformance" in text and 'entry_point = "my_gpu"' in text


def test_written_python_is_lint_clean(written: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--line-length",
                           "120", "--select", "E,F,W,B,UP,RUF,SIM", str(written)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_directory_with_content_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="not an empty directory"):
        write_driver("gpu", tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert list(tmp_path.iterdir()) == [tmp_path / "keep.txt"]


def test_the_command_writes_into_dir_and_says_what_next(tmp_path: Path) -> None:
    result = CliRunner().invoke(new_driver, ["camera", "--dir", str(tmp_path / "cam")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cam" / "pagemig_camera" / "driver.py").is_file()
    assert "pip install -e ." in result.output and "pagemig run camera-demo" in result.output


def test_the_command_defaults_to_a_folder_named_after_the_distribution(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(new_driver, ["camera"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pagemig-camera" / "pyproject.toml").is_file()


def test_the_command_refuses_a_bad_name_with_exit_status_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(new_driver, ["My-GPU", "--dir", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "invalid driver name 'My-GPU'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_the_own_tests_pass_for_a_driver_that_refuses_some_pages(tmp_path: Path) -> None:
    """A driver may refuse to isolate a page (a mapped buffer): the kit allows it, and so must
    the scaffold's own tests, which pick pages the driver says it lets go of.  The written
    driver is made to refuse 1 page in 8 (every pfn divisible by 8, so the lowest pages,
    the ones a fresh machine hands out first, include refused ones)."""
    root = tmp_path / "pagemig-refuser"
    write_driver("refuser", root)
    driver = root / "pagemig_refuser" / "driver.py"
    text = driver.read_text()
    old = "        if page.pfn not in self.idle:\n            return False\n"
    assert old in text  # the template's isolate_page, where a real driver would check its mapping
    driver.write_text(text.replace(old, "        if page.pfn not in self.idle or page.pfn % 8 == 0:\n"
                                        "            return False\n"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                           str(root / "tests" / "test_refuser.py")],
                          cwd=root, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
