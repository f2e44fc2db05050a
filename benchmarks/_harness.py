"""Run one command in its own process and measure it: wall time and peak RSS of the whole process tree."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT_DIR = HERE / "out"
BIN = Path(sys.executable).parent


@dataclass
class Run:
    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def measure(cmd: list[str], *, env: dict | None = None, cwd: Path | None = None, poll_s: float = 0.02) -> Run:
    """Wall time from spawn to exit; peak RSS = max over time of the summed RSS of the process and its
    children (psutil polling), or the kernel's high-water mark of the largest single process
    (wait4's ru_maxrss), whichever is larger."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    peak = [0]
    done = threading.Event()

    def poll() -> None:
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            try:
                procs = [root] + root.children(recursive=True)
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], total)
            except psutil.Error:
                return
            done.wait(poll_s)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((proc.stdout, out_chunks), (proc.stderr, err_chunks))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    poller.join()
    for r in readers:
        r.join()
    maxrss = usage.ru_maxrss * 1024  # KiB on Linux
    return Run(wall, max(peak[0], maxrss) / 2**20, proc.returncode,
               b"".join(out_chunks).decode(errors="replace"), b"".join(err_chunks).decode(errors="replace"))


def machine() -> str:
    mem = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import duckdb
    import pyarrow

    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}; "
            f"load average before the runs {LOAD_BEFORE:.1f}")


LOAD_BEFORE = os.getloadavg()[0]  # anything else running skews every number: compare with an idle machine


def ours_cmd(corpus: Path, warehouse: Path, project_id: str) -> list[str]:
    exe = BIN / "modelarts-etl"
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "pipelines.cli"]
    return head + ["ingest", str(corpus), "--project-id", project_id, "--warehouse", str(warehouse)]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                                      for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])
