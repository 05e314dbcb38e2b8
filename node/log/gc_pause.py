"""The cyclic garbage collector paused while a bulk step holds millions of objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause cyclic garbage collection for the block.

    An import builds millions of tuples that live until it commits; each
    collection walks all of them again (six seconds of a 1M-media import).
    Reference counting still frees what the block drops; only cycles wait.
    Process-wide: a thread running beside the block merely collects later.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
