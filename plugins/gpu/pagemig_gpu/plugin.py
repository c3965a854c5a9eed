"""Entry point of pagemig-gpu: registers its driver through the pagemig hooks."""

from __future__ import annotations
