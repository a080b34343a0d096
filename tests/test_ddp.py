"""Two CPU processes (DDP over gloo): validation and test metrics are means over every window, once."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from cvae_traj.forecast import load_model
from cvae_traj.metrics import constant_velocity, min_ade, min_fde
from conftest import ROOT, compose_config

# 21 agents give 105 windows: the two processes get 53 and 52, so a per-process average or a padded,
# repeated window would both move the numbers.
OVERRIDES = ["experiment=smoke", "logger=none", "trainer.max_epochs=2", "trainer.limit_train_batches=4",
             "trainer.limit_val_batches=1.0", "trainer.limit_test_batches=1.0", "data.num_train_agents=200",
             "data.num_val_agents=21", "data.num_test_agents=21", "data.eval_batch_size=16",
             "trainer.enable_progress_bar=false"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_cpu_processes_aggregate_metrics_over_every_window_once(tmp_path):
    run_dir = tmp_path / "ddp"
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *OVERRIDES, "trainer.accelerator=cpu",
                           "trainer.devices=2", "trainer.strategy=ddp", f"hydra.run.dir={run_dir}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stdout + done.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model = load_model(run_dir / metrics["best_checkpoint"])
    datamodule = instantiate(compose_config("train", OVERRIDES + [f"paths.output_dir={tmp_path / 'x'}"]).data)
    for split in ("val", "test"):
        windows = datamodule.windows(split)
        assert len(windows) == 105 and metrics["windows"][split] == 105
        batch = windows.batch(np.arange(len(windows)))
        cv = constant_velocity(batch.past, 12).unsqueeze(1)
        likely = model.most_likely(batch).unsqueeze(1)
        # Deterministic metrics of the selected checkpoint, recomputed here over all windows in one process (to
        # float rounding: the social attention sums over neighbours padded to each batch's width, and the shards'
        # batches differ from this one; a window counted twice or left out moves a mean by about 1%).
        expected = {"cv_ade": min_ade(cv, batch.future), "cv_fde": min_fde(cv, batch.future),
                    "ml_ade": min_ade(likely, batch.future), "ml_fde": min_fde(likely, batch.future)}
        for name, values in expected.items():
            assert metrics[split][f"{split}/{name}"] == pytest.approx(values.mean().item(), rel=1e-5), (split, name)
