"""Entry point of pagemig-balloon: registers its driver through the pagemig hooks."""

from __future__ import annotations
