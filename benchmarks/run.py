"""Run the benchmark scripts and collect their Markdown into benchmarks/out/latest.md.

    python benchmarks/run.py [NAME ...] [--quick] [--timeout SECONDS]

Every ``benchmarks/bench_<name>.py`` is run in its own subprocess with this interpreter;
each prints one Markdown section to stdout (progress goes to stderr, which is passed
through).  NAME selects scripts by ``<name>`` (``core``, ``panel``, ...); none means all.
``--quick`` is passed on to the scripts that accept it (those whose source mentions
``--quick``); the others run as usual.  A script may raise its own time limit with a
line ``BENCH_TIMEOUT_S = <seconds>``.  A script that fails or times out is reported in the
output with the tail of its stderr; the others still run.  The collected Markdown is
written to ``benchmarks/out/latest.md`` and printed.  Exit status: 0 when every script
succeeded, 1 otherwise (the report is written either way).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "latest.md"
DEFAULT_TIMEOUT_S = 1800
STDERR_TAIL = 40


def discover() -> dict[str, Path]:
    return {p.stem[len("bench_") :]: p for p in sorted(HERE.glob("bench_*.py"))}


def script_timeout(path: Path, default: float) -> float:
    m = re.search(r"^BENCH_TIMEOUT_S\s*=\s*([0-9_.]+)", path.read_text(), re.M)
    return float(m.group(1).replace("_", "")) if m else default


def accepts_quick(path: Path) -> bool:
    return "--quick" in path.read_text()


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages * size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average at start {os.getloadavg()[0]:.1f}"
    return f"{cpu}, {cores} cores{mem}; Python {platform.python_version()} on {platform.system()}{load}"


def git_line() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=HERE, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        return f"commit {rev}{' + uncommitted changes under src/' if dirty else ''}" if rev else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def run_one(name: str, path: Path, quick: bool, timeout: float) -> tuple[str, bool]:
    """Run one script; return (its Markdown, or a failure section) and whether it succeeded."""
    cmd = [sys.executable, str(path)]
    pass_quick = quick and accepts_quick(path)
    if pass_quick:
        cmd.append("--quick")
    print(f"[bench] {path.name}: {' '.join(cmd[1:])} (timeout {timeout:.0f} s)", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    out_chunks: list[str] = []
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)

    def pump_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))
            sys.stderr.write(line if line.startswith(f"[{name}]") else f"  [{name}] {line}")
            sys.stderr.flush()

    def pump_out() -> None:
        assert proc.stdout is not None
        out_chunks.append(proc.stdout.read())

    threads = [threading.Thread(target=pump_err, daemon=True), threading.Thread(target=pump_out, daemon=True)]
    for t in threads:
        t.start()
    timed_out = False
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:  # the whole process group: R or other children of the script too
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rc = proc.wait()
    for t in threads:
        t.join(timeout=10)
    elapsed = time.perf_counter() - t0
    out = "".join(out_chunks).strip()
    note = "" if pass_quick or not quick else " (script does not take --quick; ran in full)"
    print(f"[bench] {path.name}: {'ok' if rc == 0 else 'FAILED'} in {elapsed:.0f} s", file=sys.stderr, flush=True)
    if rc == 0 and not timed_out:
        return (out + (f"\n\n_{path.name}: {elapsed:.0f} s{note}._" if note else "")), True
    why = f"timed out after {timeout:.0f} s" if timed_out else f"exit status {rc} after {elapsed:.0f} s"
    parts = [f"## {path.name}: FAILED ({why})"]
    if out:
        parts.append("Output before the failure:\n\n" + out)
    if tail:
        parts.append("Last lines of stderr:\n\n```\n" + "\n".join(tail) + "\n```")
    return "\n\n".join(parts), False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="scripts to run by name (bench_<name>.py); default all")
    ap.add_argument("--quick", action="store_true", help="pass --quick to the scripts that take it")
    ap.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds per script unless it sets BENCH_TIMEOUT_S (default {DEFAULT_TIMEOUT_S})",
    )
    args = ap.parse_args(argv)

    scripts = discover()
    unknown = [n for n in args.names if n not in scripts]
    if unknown:
        ap.error(f"no benchmarks/bench_{{{','.join(unknown)}}}.py; available: {', '.join(scripts) or 'none'}")
    chosen = {n: scripts[n] for n in (args.names or scripts)}

    started = dt.datetime.now().astimezone()
    header = [
        "# hlm benchmarks",
        "",
        f"Run {started:%Y-%m-%d %H:%M %Z}{' in --quick mode' if args.quick else ''}: "
        f"{', '.join(p.name for p in chosen.values())}.",
        "",
        f"Machine: {machine_line()}. {git_line()}".rstrip() + ".",
    ]
    sections, failed = [], []
    for name, path in chosen.items():
        text, ok = run_one(name, path, args.quick, script_timeout(path, args.timeout))
        sections.append(text)
        if not ok:
            failed.append(path.name)
    total = (dt.datetime.now().astimezone() - started).total_seconds()
    footer = f"_Total {total:.0f} s." + (f" Failed: {', '.join(failed)}._" if failed else " All scripts succeeded._")
    report = "\n".join(header) + "\n\n" + "\n\n".join(sections) + "\n\n" + footer + "\n"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report)
    print(report)
    print(f"[bench] written to {OUT.relative_to(HERE.parent)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
