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
from torch import Tensor

from cvae_traj.baselines import CALIBRATION_LEVELS
from cvae_traj.data.datamodule import Split, TrackDataModule
from cvae_traj.data.windows import Windows
from cvae_traj.metrics import hdr_coverage, kde_nll, min_ade, min_fde
from cvae_traj.system import TrajectoryCVAE

# An agent whose last observed step is shorter than this stands (metres per step: 0.2 m/s at 2.5 steps a second).
STANDING_STEP = 0.08


@torch.no_grad()
def evaluate_likelihood(
    model: TrajectoryCVAE,
    datamodule: TrackDataModule,
    split: Split = "test",
    num_importance: int = 100,
    kde_samples: int = 2000,
    num_samples: int = 20,
    calibration_samples: int = 500,
    calibration_levels: tuple[float, ...] = CALIBRATION_LEVELS,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Mean metrics over a split: the model's bounds and most-likely path here, and evaluate_samples of its
    faithful draws (KDE NLL, calibration, best-of-K). `kde_samples=0` skips KDE NLL, the costliest one."""
    model.eval()
    torch.manual_seed(seed)
    windows = datamodule.windows(split)
    device = next(model.parameters()).device
    pred_len = model.hparams.pred_len
    sums: dict[str, float] = {}
    for lo in range(0, len(windows), batch_size):
        batch = windows.batch(np.arange(lo, min(lo + batch_size, len(windows)))).to(device)
        nelbo = model.cvae.elbo_terms(batch)["nelbo"]  # the one validation logs
        iwae = model.cvae.importance_nll(batch, num_importance)
        likely = model.cvae.most_likely(batch).unsqueeze(1)
        values = {
            "nll_elbo": nelbo, "nll_iwae": iwae,
            "nll_elbo_per_step": nelbo / pred_len, "nll_iwae_per_step": iwae / pred_len,
            "ml_ade": min_ade(likely, batch.future), "ml_fde": min_fde(likely, batch.future),
        }
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value.sum().item()
    metrics = {name: total / len(windows) for name, total in sums.items()}
    metrics.update(evaluate_samples(model, windows, num_samples=num_samples, kde_samples=kde_samples,
                                    calibration_samples=calibration_samples, calibration_levels=calibration_levels,
                                    batch_size=batch_size, seed=seed, device=device))
    metrics.update(num_importance=num_importance)
    return metrics


@torch.no_grad()
def evaluate_samples(
    sampler,
    windows: Windows,
    num_samples: int = 20,
    kde_samples: int = 2000,
    calibration_samples: int = 500,
    calibration_levels: tuple[float, ...] = CALIBRATION_LEVELS,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str = "cpu",
    standing_step: float = STANDING_STEP,
) -> dict[str, float]:
    """What any sampler's draws score on a set of windows (`sampler.sample(batch, K)` -> (B, K, T, 2)): best of
    `num_samples`, KDE NLL of `kde_samples` draws (0: skipped), and the calibration of `calibration_samples`
    draws' final positions: coverage_<level>, how often the truth lies in the highest-density region holding
    that share of the draws, and calibration_error, the mean over the levels of |coverage - level|.

    The pooled error can hide two opposite ones: draws too wide for people standing still and too narrow for
    walkers cancel out in it (benchmarks/HISTORY.md). So the same error is also given apart for the windows whose
    last observed step is shorter than `standing_step` (calibration_error_standing; the tracks' units per step:
    0.08 m is 0.2 m/s at ETH/UCY's 2.5 steps a second) and for the others (calibration_error_moving), each where
    it has windows, with standing_share, the share of windows standing."""
    torch.manual_seed(seed)
    sums: dict[str, float] = {}
    classes: dict[str, list[Tensor]] = {"standing": [], "moving": []}
    for lo in range(0, len(windows), batch_size):
        batch = windows.batch(np.arange(lo, min(lo + batch_size, len(windows)))).to(device)
        best = sampler.sample(batch, num_samples)
        values = {f"min_ade_{num_samples}": min_ade(best, batch.future),
                  f"min_fde_{num_samples}": min_fde(best, batch.future)}
        if kde_samples:
            values["kde_nll"] = kde_nll(sampler.sample(batch, kde_samples), batch.future)
        if calibration_samples:
            finals = sampler.sample(batch, calibration_samples)[:, :, -1]  # (B, K, 2)
            inside = hdr_coverage(finals, batch.future[:, -1], calibration_levels)  # (B, L)
            values.update({f"coverage_{round(100 * a)}": inside[:, i].float()
                           for i, a in enumerate(calibration_levels)})
            still = standing(batch.past, standing_step)
            classes["standing"].append(inside[still].cpu())
            classes["moving"].append(inside[~still].cpu())
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value.sum().item()
    metrics = {name: total / len(windows) for name, total in sums.items()}
    if calibration_samples:
        metrics["calibration_error"] = float(np.mean([abs(metrics[f"coverage_{round(100 * a)}"] - a)
                                                      for a in calibration_levels]))
        metrics.update(calibration_by_class(classes, calibration_levels))
    metrics.update(windows=len(windows), kde_samples=kde_samples, calibration_samples=calibration_samples)
    return metrics


def standing(past: Tensor, standing_step: float = STANDING_STEP) -> Tensor:
    """Which agents stand (B,): their last observed step (past (B, T_obs, 2)) shorter than standing_step."""
    if past.shape[1] < 2:
        return torch.zeros(len(past), dtype=torch.bool, device=past.device)
    return torch.linalg.vector_norm(past[:, -1] - past[:, -2], dim=-1) < standing_step


def calibration_by_class(classes: dict[str, list[Tensor]], levels: tuple[float, ...]) -> dict[str, float]:
    """From each class's hdr_coverage rows (lists of (n, L) tensors), for the classes with windows:
    calibration_error_<class>, the mean |coverage - level|, and calibration_bias_<class>, the mean coverage -
    level (above 0: draws too wide, below: too narrow); and standing_share, the standing class's share."""
    counts = {name: sum(len(p) for p in parts) for name, parts in classes.items()}
    out = {}
    for name, parts in classes.items():
        if counts[name]:
            gap = torch.cat(parts).float().mean(0) - torch.tensor(levels, dtype=torch.float32)
            out |= {f"calibration_error_{name}": float(gap.abs().mean()), f"calibration_bias_{name}": float(gap.mean())}
    return out | {"standing_share": counts["standing"] / max(1, sum(counts.values()))}


@torch.no_grad()
def evaluate_best_of_k(
    model: TrajectoryCVAE,
    datamodule: TrackDataModule,
    split: Split = "test",
    num_samples: int = 20,
    cluster_from: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    history: int | None = None,
) -> dict[str, float]:
    """Mean minADE_K / minFDE_K over a split, of K faithful draws or (cluster_from=M) of K representatives
    of M draws clustered by final position (TrajectoryCVAE.representatives), with the seconds sampling took.
    With `history` h every window's past is cut to its last h steps (TrajectoryBatch.history), as for an agent
    that has just appeared; the futures and windows are the same."""
    model.eval()
    torch.manual_seed(seed)
    windows = datamodule.windows(split)
    device = next(model.parameters()).device
    ade = fde = seconds = 0.0
    for lo in range(0, len(windows), batch_size):
        batch = windows.batch(np.arange(lo, min(lo + batch_size, len(windows)))).to(device)
        if history is not None:
            batch = batch.with_history(torch.full((len(batch),), history, dtype=torch.int64, device=device))
        start = time.perf_counter()
        samples = (model.sample(batch, num_samples=num_samples) if cluster_from is None
                   else model.representatives(batch, num_samples, cluster_from)[0])
        seconds += time.perf_counter() - start
        ade += min_ade(samples, batch.future).sum().item()
        fde += min_fde(samples, batch.future).sum().item()
    return {f"min_ade_{num_samples}": ade / len(windows), f"min_fde_{num_samples}": fde / len(windows),
            "cluster_from": cluster_from, "windows": len(windows), "sampling_seconds": seconds}
