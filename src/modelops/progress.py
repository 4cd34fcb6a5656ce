"""Progress lines for long steps: what is running, and how long it took, on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def step(label: str) -> Iterator[None]:
    """Print `label ...` when a step starts and its duration when it ends (or fails)."""
    print(f"» {label} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        print(
            f"✗ {label} failed after {time.perf_counter() - start:.1f}s",
            file=sys.stderr,
            flush=True,
        )
        raise
    print(f"✓ {label} ({time.perf_counter() - start:.1f}s)", file=sys.stderr, flush=True)
