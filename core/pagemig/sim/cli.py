"""Click commands of the sim layer: ``run``, ``compare``, ``scenarios`` (filled by issue 4)."""

from __future__ import annotations

import click


def add_commands(cli: click.Group) -> None:
    """Attach this module's commands to the ``pagemig`` group."""
