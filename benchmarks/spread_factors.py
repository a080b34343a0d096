"""Where the width of the draws lives: calibration on an unseen scene as one part of the spread is scaled.

    python benchmarks/spread_factors.py variant=speed_clip test_scene=zara1 val_scene=eth \
        ['factors=[1,1.5,2]'] ['kinds=[latent,decoder,output]'] [windows=1500]

Loads a screen of benchmarks/scene_shift.py (the fold of `test_scene` trained without `val_scene`, checkpoint
chosen on `val_scene`) and scores its faithful draws on `windows` windows of the unseen scene, with each kind of
spread multiplied by each factor:
  - latent: every prior component's standard deviation (prior_temperature; mixture weights unchanged);
  - decoder: the decoder's per-step noise;
  - output: each draw's deviation from the agent's most likely future.
Prints calibration error, coverage at five levels and best-of-20. The fold's test scene is never read.
"""
import json
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bench.options import options
from cvae_traj.evaluation import evaluate_samples
from cvae_traj.forecast import load_model

cfg = options({"variant": "speed_clip", "test_scene": "zara1", "val_scene": "eth", "factors": [1.0, 1.5, 2.0],
               "kinds": ["latent", "decoder", "output"], "windows": 1500, "samples": 500, "seed": 0,
               "runs_dir": "benchmarks/runs/scene_shift", "records": "benchmarks/results/runs/scene_shift"})


class Scaled:
    """The model's faithful draws with one part of their spread multiplied by `factor`."""

    def __init__(self, cvae, kind: str, factor: float) -> None:
        self.cvae, self.kind, self.factor = cvae, kind, factor

    def sample(self, batch, num_samples: int):
        c = self.cvae
        z_noise, y_noise = torch.randn(num_samples, len(batch), c.noise_dim), torch.randn(num_samples, len(batch),
                                                                                         c.pred_len, 2)
        if self.kind == "latent":
            z_noise[..., :c.latent_dim] *= self.factor
        elif self.kind == "decoder":
            y_noise *= self.factor
        futures = c.sample_from_noise(batch, z_noise, y_noise)
        if self.kind == "output":
            likely = c.most_likely(batch).unsqueeze(1)
            futures = likely + self.factor * (futures - likely)
        return futures


name = f"{cfg.test_scene}_val_{cfg.val_scene}"
record = json.loads((Path(cfg.records) / cfg.variant / name / f"seed{cfg.seed}.json").read_text())
model = load_model(Path(cfg.runs_dir) / cfg.variant / name / f"seed{cfg.seed}" / "checkpoints" / "best.ckpt")
# The screen's own data config; options since retired from the model are dropped (they changed the loss only).
overrides = [o for o in record["overrides"] if not o.startswith(("paths.", "model.mixture_kl"))]
with initialize_config_dir(str(Path("conf").resolve()), version_base="1.3"):
    windows = instantiate(compose(config_name="train", overrides=overrides).data).windows("val")
rows = np.sort(np.random.default_rng(cfg.seed).permutation(len(windows))[:cfg.windows])
subset = windows.subset(rows)
print(f"{cfg.variant}, fold {cfg.test_scene}, unseen {cfg.val_scene}: {len(rows)} of {len(windows)} windows")
for kind in cfg.kinds:
    for factor in cfg.factors:
        m = evaluate_samples(Scaled(model.cvae, kind, factor), subset, kde_samples=0,
                             calibration_samples=cfg.samples, seed=cfg.seed)
        coverage = " ".join(f"{m[f'coverage_{level}']:.2f}" for level in (10, 30, 50, 70, 90))
        print(f"{kind:8s} x{factor:<5g} calibration error {m['calibration_error']:.3f}  coverage at 0.1/0.3/0.5/0.7/0.9 "
              f"{coverage}  best of 20 {m['min_ade_20']:.3f} / {m['min_fde_20']:.3f}", flush=True)
