"""Learned representatives: K futures per agent that cover where it may go, fitted to a trained model.

    python -m cvae_traj.representatives ckpt_path=model.ckpt input=train_tracks.csv output=represented.ckpt

A trained model's `representatives(batch, K)` are by default clusters of many faithful draws. This fits K latent
codes per agent instead (models.latent.RepresentativeNet, a DLow-style diversity sampler without its noise): a
small network from the model's context to z_1..z_K, trained on windows whose futures are known to minimise the
best of the K decoded futures' ADE + FDE, plus `prior_weight` times -log p(z_k | x) to keep the codes where the
prior holds mass. Every other network is frozen, so faithful draws are unchanged. Each representative's weight
is the share of faithful draws whose final position lies nearest its own (ConditionalVAE.representatives).

Fit on training windows, never on those the representatives are judged on. The setting (4000 steps of 128
windows, prior_weight 1e-3) was chosen on ETH/UCY validation windows (benchmarks/HISTORY.md).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from cvae_traj.cli import KNOWN_FUTURES_OPTIONS, checkpoint_output, known_windows, run_or_exit
from cvae_traj.data.windows import Windows
from cvae_traj.errors import CheckpointError, InputError
from cvae_traj.forecast import load_model
from cvae_traj.io import atomic_path
from cvae_traj.models.latent import RepresentativeNet
from cvae_traj.system import TrajectoryCVAE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepresentativeFit:
    """The fitted model's K, the steps taken and the mean "cover" (best-of-K ADE + FDE, metres) of the last 100."""

    k: int
    steps: int
    cover: float
    seconds: float


def fit_representatives(model: TrajectoryCVAE, windows: Windows, k: int = 20, steps: int = 4000,
                        batch_size: int = 128, prior_weight: float = 1e-3, lr: float = 1e-3,
                        seed: int = 0) -> RepresentativeFit:
    """Give `model` K learned representatives fitted on `windows` (in place; any it had are replaced). Only the
    new network trains; the model's own networks, and so its faithful draws, stay as they were."""
    if len(windows) == 0:
        raise InputError("no windows to fit the representatives on")
    if steps < 1 or batch_size < 1 or k < 2:
        raise InputError(f"need k >= 2, steps >= 1 and batch_size >= 1, got k={k}, steps={steps}, "
                         f"batch_size={batch_size}")
    cvae = model.single_model("learned representatives")
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    with torch.no_grad():
        probe = windows.batch(np.arange(min(2, len(windows)))).to(device)
        context_dim = cvae.encode(cvae.agent_frame(probe)[0]).shape[-1]
    cvae.representative_net = RepresentativeNet(context_dim, cvae.latent_dim, k).to(device)
    model.hparams.learned_representatives = k
    model.eval()  # no dropout or batch statistics in the frozen part
    optimiser = torch.optim.Adam(cvae.representative_net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    covers, start = [], time.perf_counter()
    for _ in range(steps):
        index = np.sort(rng.choice(len(windows), min(batch_size, len(windows)), replace=False))
        terms = cvae.representative_terms(windows.batch(index).to(device))
        loss = (terms["cover"] + prior_weight * terms["prior"]).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        covers.append(terms["cover"].mean().item())
    for p in cvae.representative_net.parameters():
        p.requires_grad_(False)
    return RepresentativeFit(k, steps, float(np.mean(covers[-100:])), time.perf_counter() - start)


def write_represented_checkpoint(source: str | Path, model: TrajectoryCVAE, output: str | Path) -> Path:
    """A copy of checkpoint `source` with `model`'s learned representatives (network and K) added, written
    atomically; the rest of the checkpoint is as it was."""
    content = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(content, dict) or not {"state_dict", "hyper_parameters"} <= content.keys():
        raise CheckpointError(f"{source}: not a Lightning checkpoint with hyper-parameters and weights")
    net = model.cvae.representative_net
    if net is None:
        raise InputError("the model has no learned representatives to write")
    content["hyper_parameters"]["learned_representatives"] = net.k
    state = {k: v for k, v in content["state_dict"].items() if not k.startswith("cvae.representative_net.")}
    state.update({f"cvae.representative_net.{k}": v.detach().cpu() for k, v in net.state_dict().items()})
    content["state_dict"] = state
    with atomic_path(output) as tmp:
        torch.save(content, tmp)
    return Path(output)


def represent(cfg: DictConfig) -> RepresentativeFit:
    """Fit cfg.k learned representatives to cfg.ckpt_path on every window of cfg.input (a track table as
    predict.py reads) and write the checkpoint with them to cfg.output."""
    checkpoint_output(cfg.output)
    model = load_model(cfg.ckpt_path)
    windows = known_windows(cfg, model.hparams, "fit the representatives to")
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    fit = fit_representatives(model, windows, cfg.k, cfg.steps, cfg.batch_size, cfg.prior_weight, cfg.lr, cfg.seed)
    log.info("fitted %d representatives on %d windows of %s in %d steps (%.0f s): best-of-%d ADE + FDE %.3f m",
             fit.k, len(windows), cfg.input, fit.steps, fit.seconds, fit.k, fit.cover)
    write_represented_checkpoint(cfg.ckpt_path, model, cfg.output)
    log.info("wrote %s (predict.py cluster_from=M with num_samples=%d gives them, weighted by M draws)", cfg.output,
             fit.k)
    return fit


ConfigStore.instance().store(name="represent", node={
    "defaults": [{"override hydra/job_logging": "stdout"}, "_self_"],
    "ckpt_path": "???",
    "input": "???",
    "output": "represented.ckpt",
    "k": 20,
    "steps": 4000,
    "batch_size": 128,
    "prior_weight": 1e-3,
    "lr": 1e-3,
    "seed": 0,
    "threads": None,
    **KNOWN_FUTURES_OPTIONS,
    "hydra": {"run": {"dir": "."}, "output_subdir": None},
})


@hydra.main(version_base="1.3", config_path=None, config_name="represent")
def main(cfg: DictConfig) -> None:
    run_or_exit(lambda: represent(cfg))


if __name__ == "__main__":
    main()
