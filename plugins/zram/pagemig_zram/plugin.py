"""Entry point of pagemig-zram: registers its driver through the pagemig hooks."""

from __future__ import annotations
