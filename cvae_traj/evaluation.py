"""Metrics for any split of any datamodule beyond the training loop's: likelihood, which best-of-K error
cannot show, and best-of-K of clustered futures.

All are means over the split's windows: ELBO and the importance-weighted bound (IWAE) in nats per agent
and per step, KDE NLL as Trajectron++ defines it, most-likely ADE/FDE, best-of-K ADE/FDE, and the
calibration of the sampled final positions.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from cvae_traj.data.datamodule import Split, TrackDataModule
from cvae_traj.metrics import hdr_coverage, kde_nll, min_ade, min_fde
from cvae_traj.system import TrajectoryCVAE


@torch.no_grad()
def evaluate_likelihood(
    model: TrajectoryCVAE,
    datamodule: TrackDataModule,
    split: Split = "test",
    num_importance: int = 100,
    kde_samples: int = 2000,
    num_samples: int = 20,
    calibration_samples: int = 200,
    calibration_levels: tuple[float, ...] = (0.5, 0.9),
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Mean metrics over a split; `kde_samples=0` skips KDE NLL, the costliest one.

    coverage_<level> is how often the true final position lies in the model's highest-density region
    holding that fraction of its samples (a calibrated model: coverage_50 = 0.5, coverage_90 = 0.9).
    """
    model.eval()
    torch.manual_seed(seed)
    windows = datamodule.windows(split)
    device = next(model.parameters()).device
    pred_len = model.hparams.pred_len
    sums: dict[str, float] = {}
    for lo in range(0, len(windows), batch_size):
        batch = windows.batch(np.arange(lo, min(lo + batch_size, len(windows)))).to(device)
        terms = model.elbo_terms(batch)
        nelbo = terms["rec_nll"] + terms["kl_per_dim"].sum(-1)
        iwae = model.importance_nll(batch, num_importance)
        best = model.sample(batch, num_samples=num_samples)
        likely = model.most_likely(batch).unsqueeze(1)
        values = {
            "nll_elbo": nelbo, "nll_iwae": iwae,
            "nll_elbo_per_step": nelbo / pred_len, "nll_iwae_per_step": iwae / pred_len,
            f"min_ade_{num_samples}": min_ade(best, batch.future), f"min_fde_{num_samples}": min_fde(best, batch.future),
            "ml_ade": min_ade(likely, batch.future), "ml_fde": min_fde(likely, batch.future),
        }
        if kde_samples:
            values["kde_nll"] = kde_nll(model.sample(batch, num_samples=kde_samples), batch.future)
        if calibration_samples:
            finals = model.sample(batch, num_samples=calibration_samples)[:, :, -1]  # (B, K, 2)
            inside = hdr_coverage(finals, batch.future[:, -1], calibration_levels)  # (B, L)
            values.update({f"coverage_{round(100 * a)}": inside[:, i].float()
                           for i, a in enumerate(calibration_levels)})
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value.sum().item()
    metrics = {name: total / len(windows) for name, total in sums.items()}
    metrics.update(windows=len(windows), num_importance=num_importance, kde_samples=kde_samples)
    return metrics


@torch.no_grad()
def evaluate_best_of_k(
    model: TrajectoryCVAE,
    datamodule: TrackDataModule,
    split: Split = "test",
    num_samples: int = 20,
    cluster_from: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Mean minADE_K / minFDE_K over a split, of K faithful draws or (cluster_from=M) of K representatives
    of M draws clustered by final position (TrajectoryCVAE.representatives), with the seconds sampling took."""
    model.eval()
    torch.manual_seed(seed)
    windows = datamodule.windows(split)
    device = next(model.parameters()).device
    ade = fde = seconds = 0.0
    for lo in range(0, len(windows), batch_size):
        batch = windows.batch(np.arange(lo, min(lo + batch_size, len(windows)))).to(device)
        start = time.perf_counter()
        samples = (model.sample(batch, num_samples=num_samples) if cluster_from is None
                   else model.representatives(batch, num_samples, cluster_from)[0])
        seconds += time.perf_counter() - start
        ade += min_ade(samples, batch.future).sum().item()
        fde += min_fde(samples, batch.future).sum().item()
    return {f"min_ade_{num_samples}": ade / len(windows), f"min_fde_{num_samples}": fde / len(windows),
            "cluster_from": cluster_from, "windows": len(windows), "sampling_seconds": seconds}
