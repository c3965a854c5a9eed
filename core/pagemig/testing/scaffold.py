"""``pagemig new-driver NAME``: write a driver distribution from the templates.

The templates live in ``pagemig/testing/templates/driver/`` as ``*.tmpl`` files (so
that neither ruff nor pytest mistakes them for the core's own code).  Names in
double braces are replaced, in file contents and in paths:

==============  ===================  ==========================================
placeholder     example (``hello``)  used for
==============  ===================  ==========================================
``name``        ``hello``            driver name, entry point, scenario tables
``package``     ``pagemig_hello``    the import package
``dist``        ``pagemig-hello``    the distribution (pip install name)
``Class``       ``Hello``            class name prefix
``core_version``  ``0.1.0``          the pagemig the driver was written against
==============  ===================  ==========================================
"""

from __future__ import annotations

import keyword
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from pagemig import __version__

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME = 40
TEMPLATE_SUFFIX = ".tmpl"
PLACEHOLDER_RE = re.compile(r"\{\{(\w+)\}\}")


class ScaffoldError(ValueError):
    """A name or a target directory that cannot be used, with a message saying what would work."""


def validate_name(name: str) -> str:
    """Check a driver name; return it, or raise :class:`ScaffoldError` saying what is allowed."""
    example = "e.g. 'mydriver' or 'my_gpu'"
    if not name:
        raise ScaffoldError(f"the driver name is empty; use lowercase letters, digits and '_' ({example})")
    if len(name) > MAX_NAME:
        raise ScaffoldError(f"driver name {name!r} is {len(name)} characters long; use at most {MAX_NAME}")
    if not NAME_RE.match(name):
        hint = ""
        if "-" in name:
            hint = f" (use '_' instead of '-': {name.replace('-', '_').lower()!r})"
        elif name[:1].isdigit() or name[:1] == "_":
            hint = " (it must start with a letter)"
        elif name.lower() != name:
            hint = f" (use lowercase: {name.lower()!r})"
        raise ScaffoldError(f"invalid driver name {name!r}: use lowercase letters, digits and '_', starting "
                            f"with a letter ({example}){hint}")
    if keyword.iskeyword(name) or name == "pagemig":
        raise ScaffoldError(f"invalid driver name {name!r}: it is a reserved word; pick another ({example})")
    return name


def placeholders(name: str) -> dict[str, str]:
    """The values of every placeholder for a driver called ``name``."""
    validate_name(name)
    return {
        "name": name,
        "package": f"pagemig_{name}",
        "dist": f"pagemig-{name.replace('_', '-')}",
        "Class": "".join(part.capitalize() for part in name.split("_") if part),
        "core_version": __version__ if __version__[0].isdigit() else "0.1",
    }


def render(text: str, values: dict[str, str]) -> str:
    """Replace ``{{key}}`` placeholders; an unknown placeholder is a template bug, refused loudly."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return values[key]

    return PLACEHOLDER_RE.sub(sub, text)


def template_root() -> Traversable:
    return files("pagemig.testing") / "templates" / "driver"


def _walk(node: Traversable, rel: str = "") -> list[tuple[str, Traversable]]:
    out: list[tuple[str, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        path = f"{rel}/{child.name}" if rel else child.name
        if child.is_dir():
            out.extend(_walk(child, path))
        elif child.name.endswith(TEMPLATE_SUFFIX):
            out.append((path.removesuffix(TEMPLATE_SUFFIX), child))
    return out


def write_driver(name: str, directory: Path | str | None = None) -> list[Path]:
    """Write the distribution for driver ``name`` into ``directory`` (default ``./pagemig-NAME``).

    Refuses a directory that exists and is not empty, so nobody's work is overwritten.
    Returns the files written.
    """
    values = placeholders(name)
    target = Path(directory) if directory is not None else Path.cwd() / values["dist"]
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not an empty directory; choose another with --dir")
    written: list[Path] = []
    for rel, src in _walk(template_root()):
        dest = target / render(rel, values)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(render(src.read_text(encoding="utf-8"), values), encoding="utf-8")
        written.append(dest)
    return written
