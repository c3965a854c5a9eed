"""``pagemig new-driver NAME [--dir DIR]``: the scaffold of a driver distribution.

Exported as the click command :data:`new_driver`; the ``pagemig`` group adds it
(``cli.add_command(new_driver)``).  It needs neither pytest nor hypothesis.
"""

from __future__ import annotations

from pathlib import Path

import click

from pagemig.testing.scaffold import ScaffoldError, placeholders, write_driver


@click.command("new-driver")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write it (default: ./pagemig-NAME). Must not exist, or be empty.")
def new_driver(name: str, directory: Path | None) -> None:
    """Write a driver distribution NAME: pyproject.toml with the `pagemig` entry point, the driver
    with isolate/migrate/putback, a scenario, tests using the conformance kit, a README."""
    try:
        values = placeholders(name)
        written = write_driver(name, directory)
    except ScaffoldError as exc:
        raise click.UsageError(str(exc)) from None
    root = directory if directory is not None else Path.cwd() / values["dist"]
    click.echo(f"wrote {values['dist']} ({len(written)} files) in {root}")
    for path in written:
        click.echo(f"  {path.relative_to(root)}")
    click.echo("\nnext:\n"
               f"  cd {root}\n"
               "  pip install -e .          # registers the entry point: pagemig finds the driver\n"
               f"  pagemig plugins           # lists {name!r}\n"
               "  pytest                    # its tests and the conformance kit\n"
               f"  pagemig run {name}-demo   # its scenario")
