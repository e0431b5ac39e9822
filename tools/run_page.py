"""Execute one MyST page of the book as a notebook (no HTML): `make page PAGE=book/x.md`.

Reads the page with jupytext, runs it with nbclient in the page's folder, and
reports the wall time and the kernel's peak memory (its resident-set
high-water mark, sampled every 0.1 s as the book build's status page does); a
failing cell exits non-zero with its traceback.
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def _high_water_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


class PeakMemory:
    """The largest high-water mark of this process's children (the kernel) while it runs."""

    def __init__(self):
        import psutil

        self.peak = 0.0
        self._me = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.1):
            for child in self._me.children(recursive=True):
                try:
                    self.peak = max(self.peak, _high_water_mb(child.pid))
                except Exception:  # noqa: BLE001  (it exited)
                    pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main(path: str) -> int:
    page = Path(path)
    if not page.exists():
        print(f"no such page: {page}", file=sys.stderr)
        return 2
    nb = jupytext.read(page)
    t0 = time.perf_counter()
    try:
        with PeakMemory() as memory:
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(page.parent)}}).execute()
    except CellExecutionError as exc:
        print(exc, file=sys.stderr)
        return 1
    out = Path(tempfile.mkdtemp(prefix="run_page-")) / (page.stem + ".ipynb")  # one folder per run: parallel runs never overwrite each other
    nbformat.write(nb, out)
    print(f"executed {page} in {time.perf_counter() - t0:.1f} s, kernel peak memory "
          f"{memory.peak:,.0f} MB -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
