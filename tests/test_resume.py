"""Crash and resume: a training process killed with SIGKILL mid-epoch continues with ckpt_path=last."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT

EPOCHS, BATCHES = 4, 20  # 300 agents give about 24 training batches: the limit applies


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")
def test_sigkill_mid_epoch_then_ckpt_path_last_completes_the_planned_epochs(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), "experiment=smoke", "logger=none",
               f"trainer.max_epochs={EPOCHS}", f"trainer.limit_train_batches={BATCHES}", "data.num_train_agents=300",
               "data.num_val_agents=20", "data.num_test_agents=20", "trainer.enable_progress_bar=false",
               f"hydra.run.dir={run_dir}"]
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not last.exists():  # written at the end of the first epoch
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.02)
        time.sleep(0.3)  # into the next epoch's batches
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    crashed = torch.load(last, weights_only=True)  # what the crash left is a complete checkpoint
    assert crashed["epoch"] < EPOCHS - 1 and not (run_dir / "metrics.json").exists()

    resumed = subprocess.run([*command, "ckpt_path=last"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr
    final = torch.load(last, weights_only=True)
    # Every planned epoch ran, once: the step count is the plan's, not the plan's plus the crashed epochs'.
    assert final["epoch"] == EPOCHS - 1 and final["global_step"] == EPOCHS * BATCHES
    assert (run_dir / "metrics.json").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()
