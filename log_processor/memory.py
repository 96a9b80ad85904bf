"""The processor's memory between cycles: what start-up leaves alive is frozen out of the garbage
collector's walks, and glibc keeps returning large blocks (docs/benchmarks.md, "Memory")."""
from __future__ import annotations

import ctypes
import ctypes.util
import gc


GC_YOUNG_THRESHOLD = 100_000     # allocations between young collections once settled


def settle_memory() -> None:
    """Freeze what start-up and the first cycle left alive (modules, Evidently's and plotly's
    internals, the reference): it lives as long as the process, and otherwise every full garbage
    collection walks it again, ~0.15 s that lands in whichever cycle triggers it (measured: the
    10 k window took 0.45 or 0.60 s depending on that alone).

    Then collect young objects every GC_YOUNG_THRESHOLD allocations instead of CPython's 700. A page
    of 10 000 hits decodes into ~300 000 objects, alive until parsed; with next to nothing left in
    the old generation after the freeze, CPython's rule ran a full collection over them about every
    70 000 allocations, half the cost of decoding a window (1.2 M documents: 14 s of CPU, 7 s
    without). Garbage in reference cycles (Evidently's report, pandas internals) would then wait
    longer for a full collection, so the thread runs one after each cycle: with start-up frozen it
    walks little."""
    pin_mmap_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


M_MMAP_THRESHOLD = -3   # glibc's mallopt parameter


def pin_mmap_threshold(size: int = 256 * 1024) -> bool:
    """Keep glibc serving large blocks with mmap, which go back to the system when freed.

    glibc raises its mmap threshold (up to 32 MiB) each time a large block is freed, after which a
    held window's columns (8 MB per million rows, replaced every cycle) come from the heap, whose
    free space it keeps: at a 1 M window the processor's RSS crept up ~30 MB a cycle, past 1 GiB.
    A fixed threshold stops that (measured: flat at ~475 MB between cycles). Elsewhere than glibc:
    nothing to do, False."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, size))
    except (OSError, AttributeError):
        return False
