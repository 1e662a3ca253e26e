"""The process's descriptor table, grown once at start-up rather than under traffic.

Why. Linux keeps a process's open files in a table it doubles when a new descriptor does not fit
(64, 128, 256, ... entries), and never shrinks. In a process with more than one thread sharing the
table, each doubling waits for an RCU grace period before the old table is freed — 10–30 ms here,
in whichever thread opened the descriptor: the event loop's accept() or connect(). A stream holds
two descriptors (its client's and its upstream's), so a proxy's first burst of streams crossed 256,
512 and 1,024 descriptors at ~100, ~230 and ~480 open, and the streams arriving then waited for the
grace period: scenario 4's first round after a start had its TTFB p99 at 13–68 ms where every later
round, the table already grown, was at 2–4 ms (bench/README.md, scenario 4).

So each worker grows its table once, at start-up, to its open-files limit (RLIMIT_NOFILE's soft
value), at most CAP entries: a descriptor is duplicated just below that number and closed again.
The table costs 8 bytes an entry (CAP: ~0.5 MB); a process that opens more than CAP descriptors
grows it further as before.
"""

from __future__ import annotations

import fcntl
import os
import resource

CAP = 65_536


def presize(cap: int = CAP) -> int:
    """Grows the table to hold min(the soft open-files limit, cap) descriptors; returns that number
    (0 when the limit leaves nothing to grow or the kernel refused)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = cap if soft == resource.RLIM_INFINITY else min(soft, cap)
    if target < 64:
        return 0
    low = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        high = fcntl.fcntl(low, fcntl.F_DUPFD_CLOEXEC, target - 1)  # the lowest free number from there on
    except OSError:
        return 0
    finally:
        os.close(low)
    os.close(high)
    return target


def table_size() -> int:
    """The table's current size (FDSize in /proc/self/status)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("FDSize:"):
                return int(line.split()[1])
    return 0
