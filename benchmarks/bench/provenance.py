"""Where a benchmark number came from: the code's commit (and whether it was dirty) and the machine it ran on.

Every benchmark record stores both, so that a table can say which code and hardware made each of its runs.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch


def git_commit(outputs: tuple[str, ...] = (), cwd: str | Path | None = None) -> str | None:
    """The commit the code ran at, with a + when tracked files other than `outputs` (the benchmark's own
    records and shipped checkpoints, which a rerun rewrites) had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=cwd).stdout.strip()
        top = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                                  check=True, cwd=cwd).stdout.strip()).resolve()
        inside = [(Path(cwd or ".") / o).resolve() for o in outputs]  # outputs outside the repo change nothing
        exclude = [f":(top,exclude){p.relative_to(top)}" for p in inside if p.is_relative_to(top)]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *exclude],
                               capture_output=True, text=True, check=True, cwd=cwd).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def hardware(runs_at_once: int = 1) -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "runs_at_once": runs_at_once,
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}
