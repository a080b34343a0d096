"""Calibrate a trained model's spread on recorded tracks of the place it will forecast:

    python -m cvae_traj.calibration ckpt_path=model.ckpt input=site_tracks.csv output=calibrated.ckpt

A model is calibrated on scenes like its training scenes, but on a new site its draws can be too narrow or too
wide: on ETH/UCY the faithful models' 50% regions hold the truth 20-30% of the time on ETH and UNIV, scenes
never trained on, and 55% on HOTEL (benchmarks/HISTORY.md). The width that fits lies in the latent: scaling
every prior component's standard deviation (TrajectoryCVAE's prior_temperature) brings those coverages to their
levels, where scaling the decoder's per-step noise barely moves them. The mixture weights are left alone, so
each mode keeps its odds.

`fit_prior_temperature` tries each factor of a grid on windows whose futures are known and keeps the one whose
sampled final positions are best calibrated (the mean |coverage - level| over the highest-density regions of
levels 0.1 ... 0.9, as evaluation.evaluate_samples scores them). The windows must be disjoint from those the
result is then judged on: calibrate on an earlier stretch of a recording, judge on a later one.
"""
from __future__ import annotations

import logging
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
from cvae_traj.evaluation import evaluate_samples
from cvae_traj.forecast import load_model
from cvae_traj.io import atomic_path
from cvae_traj.system import TrajectoryCVAE

log = logging.getLogger(__name__)
# Factors of the prior's standard deviations tried: 0.5 to 4 in steps of 2 ** 0.25, 1 among them.
TEMPERATURES = tuple(float(t) for t in np.geomspace(0.5, 4.0, 13))


@dataclass(frozen=True)
class TemperatureFit:
    """The factor chosen and the calibration error of each factor tried, on `windows` windows."""

    temperature: float
    errors: dict[float, float]
    windows: int

    def table(self) -> str:
        return "\n".join(f"  prior_temperature {t:.3f}: calibration error {e:.3f}" + ("  <-" if t == self.temperature
                                                                                       else "")
                         for t, e in self.errors.items())


@torch.no_grad()
def fit_prior_temperature(model: TrajectoryCVAE, windows: Windows, temperatures: tuple[float, ...] = TEMPERATURES,
                          samples: int = 500, max_windows: int | None = 2000, seed: int = 0) -> TemperatureFit:
    """The factor of `temperatures` whose `samples` draws per window are best calibrated on `windows`; at most
    `max_windows` of them, drawn at random with `seed`. Every factor is scored on the same noise. The model comes
    back as it was given; set the result with `model.cvae.prior_temperature = fit.temperature`, or write it into
    a checkpoint (`calibrate`)."""
    if len(windows) == 0:
        raise InputError("no windows to calibrate on")
    if not temperatures or min(temperatures) <= 0:
        raise InputError(f"temperatures must be positive factors, got {list(temperatures)}")
    rows = np.arange(len(windows))
    if max_windows is not None and len(rows) > max_windows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_windows, replace=False))
    subset = windows.subset(rows)
    model.eval()
    device = next(model.parameters()).device
    before = model.cvae.prior_temperature
    errors = {}
    try:
        for t in temperatures:
            model.cvae.prior_temperature = float(t)
            scores = evaluate_samples(model, subset, num_samples=1, kde_samples=0, calibration_samples=samples,
                                      seed=seed, device=device)
            errors[float(t)] = scores["calibration_error"]
    finally:
        model.cvae.prior_temperature = before
    return TemperatureFit(min(errors, key=errors.get), errors, len(rows))


def write_calibrated_checkpoint(source: str | Path, temperature: float, output: str | Path) -> Path:
    """A copy of checkpoint `source` whose model samples with prior_temperature `temperature`, written atomically."""
    content = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(content, dict) or "hyper_parameters" not in content:
        raise CheckpointError(f"{source}: not a Lightning checkpoint with hyper-parameters")
    content["hyper_parameters"]["prior_temperature"] = float(temperature)
    with atomic_path(output) as tmp:
        torch.save(content, tmp)
    return Path(output)


def calibrate(cfg: DictConfig) -> TemperatureFit:
    """Fit prior_temperature on every window of cfg.input (a track table as predict.py reads) and write
    cfg.ckpt_path with it to cfg.output. The model's own temperature is replaced, not multiplied."""
    checkpoint_output(cfg.output)
    model = load_model(cfg.ckpt_path)
    hp = model.hparams
    windows = known_windows(cfg, hp, "calibrate against")
    temperatures = tuple(cfg.temperatures) if cfg.temperatures else TEMPERATURES
    fit = fit_prior_temperature(model, windows, temperatures, cfg.samples, cfg.max_windows, cfg.seed)
    log.info("calibration error of %d draws' final positions on %d windows of %s:\n%s", cfg.samples, fit.windows,
             cfg.input, fit.table())
    write_calibrated_checkpoint(cfg.ckpt_path, fit.temperature, cfg.output)
    log.info("wrote %s with prior_temperature %.3f (was %.3f)", cfg.output, fit.temperature,
             hp.get("prior_temperature", 1.0))
    return fit


ConfigStore.instance().store(name="calibrate", node={
    "defaults": [{"override hydra/job_logging": "stdout"}, "_self_"],
    "ckpt_path": "???",
    "input": "???",
    "output": "calibrated.ckpt",
    # null: TEMPERATURES, 0.5 to 4.
    "temperatures": None,
    "samples": 500,
    "max_windows": 2000,
    "seed": 0,
    **KNOWN_FUTURES_OPTIONS,
    "hydra": {"run": {"dir": "."}, "output_subdir": None},
})


@hydra.main(version_base="1.3", config_path=None, config_name="calibrate")
def main(cfg: DictConfig) -> None:
    run_or_exit(lambda: calibrate(cfg))


if __name__ == "__main__":
    main()
