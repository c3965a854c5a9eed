"""pagemig.api is the one module drivers and workloads import, and it is documented.

* every module of the shipped plugins' packages and of the built-in workloads imports
  nothing of pagemig but ``pagemig.api`` (and its own package), read from the source
  (ast), so an import inside a function or under TYPE_CHECKING counts too;
* every name in ``pagemig.api.__all__`` exists and is documented where it is declared:
  a class or function by its own docstring, a constant by the docstring that follows its
  assignment in api.py (as pytest's hookspec.py documents each hook);
* the files ``pagemig new-driver`` writes import only ``pagemig.api`` (its tests also
  ``pagemig.testing``), and the driver they make passes the conformance kit
  (tests/testing/test_new_driver_e2e.py installs it and runs the kit).
"""

from __future__ import annotations

import ast
import inspect
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

import pagemig.api as api
from pagemig.testing.scaffold import write_driver

ROOT = Path(__file__).resolve().parents[1]
API_SOURCE = Path(api.__file__)


def pagemig_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import of a pagemig module (``pagemig`` or ``pagemig.*``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "pagemig" or alias.name.startswith("pagemig."):
                    yield node.lineno, alias.name
        elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
              and (node.module == "pagemig" or node.module.startswith("pagemig."))):
            yield node.lineno, node.module


def plugin_modules() -> Iterator[tuple[Path, str]]:
    """(file, own package) of every module a plugin or built-in workload ships."""
    for pkg in sorted(ROOT.glob("plugins/*/pagemig_*")):
        if pkg.is_dir():
            for f in sorted(pkg.rglob("*.py")):
                yield f, pkg.name
    for f in sorted((ROOT / "core" / "pagemig" / "workloads").rglob("*.py")):
        yield f, "pagemig.workloads"


MODULES = list(plugin_modules())


def test_there_is_something_to_check() -> None:
    packages = {own for _, own in MODULES}
    assert {"pagemig_balloon", "pagemig_zram", "pagemig_gpu", "pagemig.workloads"} <= packages


@pytest.mark.parametrize(("path", "own"), MODULES, ids=[str(p.relative_to(ROOT)) for p, _ in MODULES])
def test_plugins_and_workloads_import_only_pagemig_api(path: Path, own: str) -> None:
    bad = [f"{path.relative_to(ROOT)}:{line}: imports {mod}" for line, mod in pagemig_imports(path)
           if mod != "pagemig.api" and mod != own and not mod.startswith(own + ".")]
    assert not bad, "\n".join(bad)


def test_the_import_check_sees_every_form() -> None:
    """The checker itself: a plain, a from-, a function-local and a TYPE_CHECKING import."""
    src = ("import pagemig.mm.pages\nfrom pagemig.sim import schema\nfrom pagemig import hookimpl\n"
           "def f():\n    from pagemig.mm.machine import Machine\n"
           "if TYPE_CHECKING:\n    from pagemig.driver import Driver\nfrom pagemig.api import Page\n")
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(src)
    found = [m for _, m in sorted(pagemig_imports(Path(fh.name)))]
    Path(fh.name).unlink()
    assert found == ["pagemig.mm.pages", "pagemig.sim", "pagemig", "pagemig.mm.machine", "pagemig.driver",
                     "pagemig.api"]


def documented_assignments() -> dict[str, str]:
    """Names assigned at api.py's top level, or the package root's (API_VERSION lives there, for
    discovery to read without importing the api), that a string literal follows (their docstring)."""
    body = [node for src in (API_SOURCE, API_SOURCE.parent / "__init__.py")
            for node in [*ast.parse(src.read_text(encoding="utf-8")).body, ast.Pass()]]
    out = {}
    for node, nxt in itertools.pairwise(body):
        if (isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and nxt.value.value.strip():
                    out[t.id] = nxt.value.value
    return out


def own_docstring(obj: object) -> str | None:
    """A class's or function's own docstring (a class does not inherit ``__doc__``)."""
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__")
        return doc if isinstance(doc, str) else None
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return obj.__doc__
    return None


def test_all_is_explicit_sorted_and_without_duplicates() -> None:
    assert len(set(api.__all__)) == len(api.__all__)
    assert api.__all__ == sorted(api.__all__, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))


@pytest.mark.parametrize("name", api.__all__)
def test_every_exported_name_exists_and_is_documented(name: str) -> None:
    assert hasattr(api, name), f"pagemig.api.__all__ lists {name!r}, which does not exist"
    doc = own_docstring(getattr(api, name)) or documented_assignments().get(name)
    assert doc and doc.strip(), f"pagemig.api.{name} has no docstring (nor one after its assignment in api.py)"


def test_nothing_public_is_left_out_of_all() -> None:
    # ("@py_builtins" and the like are pytest's assertion rewriting, not the module's)
    public = {n for n in vars(api) if not n.startswith(("_", "@")) and n != "annotations"}
    assert public == set(api.__all__), sorted(public ^ set(api.__all__))


def test_api_version_is_major_minor() -> None:
    major, minor = api.API_VERSION.split(".")
    assert major.isdigit() and minor.isdigit()


def test_every_shipped_plugin_declares_the_api_it_is_written_for() -> None:
    import importlib

    for mod in ("pagemig_balloon.plugin", "pagemig_zram.plugin", "pagemig_gpu.plugin"):
        try:
            plugin = importlib.import_module(mod)
        except ImportError:
            pytest.skip("the driver plugins are not installed (core-only install)")
        assert plugin.PAGEMIG_API_VERSION == api.API_VERSION


def test_the_scaffold_imports_only_pagemig_api(tmp_path: Path) -> None:
    root = tmp_path / "out"
    write_driver("camera", root)
    for f in sorted(root.rglob("*.py")):
        allowed = {"pagemig.api"} | ({"pagemig.testing"} if f.parent.name == "tests" else set())
        bad = [m for _, m in pagemig_imports(f) if m not in allowed and not m.startswith("pagemig_camera")]
        assert not bad, f"{f.relative_to(root)} imports {bad}"
    assert 'PAGEMIG_API_VERSION = "' + api.API_VERSION + '"' in (root / "pagemig_camera" / "plugin.py").read_text()


def test_the_guide_imports_only_pagemig_api() -> None:
    """docs/writing-a-driver.md's code imports pagemig.api (its tests: pagemig.testing too)."""
    text = (ROOT / "docs" / "writing-a-driver.md").read_text(encoding="utf-8")
    blocks = text.split("```python")[1:]
    assert blocks, "the guide has no python code"
    for block in blocks:
        code = block.split("```", 1)[0]
        for line in code.splitlines():
            s = line.strip()
            if s.startswith(("from pagemig", "import pagemig")):
                mod = s.split()[1]
                assert mod in ("pagemig.api", "pagemig.testing") or not mod.startswith("pagemig."), s
                assert mod != "pagemig", s
