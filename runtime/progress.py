"""When long work shows a progress bar: one rule for every command, pass and API call."""

from __future__ import annotations

import sys

PROGRESS_MIN_LAYERS = 8
"""Fewest layers (or launches) for which a terminal gets a progress bar without asking."""


def show_progress(asked: bool | None, items: int) -> bool:
    """Whether to show a bar over ``items`` pieces of work: as ``asked`` (``--progress`` /
    ``--no-progress``, ``progress=``), else when stderr is a terminal and there are at least
    :data:`PROGRESS_MIN_LAYERS` of them."""
    if asked is not None:
        return asked
    return sys.stderr.isatty() and items >= PROGRESS_MIN_LAYERS
