"""Peak resident memory of this process, for benchmarks that fit in a fresh child process.

``ru_maxrss`` survives ``fork``/``exec``: a child started by a parent holding 1.7 GB reports at
least 1.7 GB whatever it used.  ``VmHWM`` in ``/proc/self/status`` belongs to the process's own
address space, which ``exec`` replaces, so it is the child's own peak (``ru_maxrss`` where
``/proc`` is missing).
"""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's own peak resident set size in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
