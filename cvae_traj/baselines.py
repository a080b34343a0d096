"""A calibrated naive baseline for likelihood and calibration: constant velocity with per-step Gaussian noise.

Best-of-K has its constant-velocity baseline; a model's likelihood and calibration need one that also says
how unsure it is. This one predicts the last observed velocity carried on (metrics.constant_velocity), with
isotropic Gaussian noise of a standard deviation per future step: fitted on the training windows (the root
mean square of constant velocity's error per axis at that step), then scaled by the one factor, from a grid,
whose final positions are best calibrated on the validation windows (PROTOCOL.md); nothing of the test
split is used. At test time it is scored from its draws, exactly as a model is (evaluation.evaluate_samples).
A model that cannot beat it on calibration or KDE NLL has learned no useful uncertainty.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.data.windows import Windows
from cvae_traj.metrics import constant_velocity

# The highest-density-region levels of the calibration error (PROTOCOL.md).
CALIBRATION_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Factors on the trained spread tried on validation.
SPREAD_FACTORS = tuple(float(f) for f in np.geomspace(0.25, 4.0, 17))


@dataclass(frozen=True)
class GaussianConstantVelocity:
    """y_t ~ N(constant-velocity position at t, (factor * sigma_t)^2 I), independently per step."""

    sigma: Tensor  # (T_pred,) metres, fitted on the training windows
    factor: float = 1.0  # chosen on validation

    @classmethod
    def fit(cls, train: Windows, val: Windows) -> GaussianConstantVelocity:
        """sigma from the training windows; factor the SPREAD_FACTORS one whose final positions are best
        calibrated on the validation windows. An isotropic Gaussian's highest-density region of level a is the
        disk of radius factor * sigma_T * sqrt(-2 ln(1 - a)), so its coverage is counted exactly, no draws."""
        sigma = _constant_velocity_errors(train).square().mean(dim=(0, 2)).sqrt()  # (T,) per axis
        final_error = _constant_velocity_errors(val)[:, -1].norm(dim=-1)  # (W,)
        levels = torch.tensor(CALIBRATION_LEVELS, dtype=sigma.dtype)
        radius = sigma[-1] * torch.sqrt(-2 * torch.log1p(-levels))  # (L,) at factor 1
        errors = [((final_error[:, None] <= f * radius).to(sigma.dtype).mean(0) - levels).abs().mean().item()
                  for f in SPREAD_FACTORS]
        return cls(sigma, SPREAD_FACTORS[int(np.argmin(errors))])

    def with_factor(self, factor: float) -> GaussianConstantVelocity:
        return GaussianConstantVelocity(self.sigma, factor)

    def sample(self, batch: TrajectoryBatch, num_samples: int = 20) -> Tensor:
        """(B, K, T_pred, 2) draws; seed with torch.manual_seed."""
        mean = constant_velocity(batch.past, len(self.sigma)).unsqueeze(1)  # (B, 1, T, 2)
        noise = torch.randn(len(batch), num_samples, len(self.sigma), 2, dtype=mean.dtype)
        return mean + self.factor * self.sigma.to(mean.dtype).view(1, 1, -1, 1) * noise


def _constant_velocity_errors(windows: Windows) -> Tensor:
    """Each window's true future minus constant velocity's: (W, T_pred, 2)."""
    past, future = torch.from_numpy(windows.past), torch.from_numpy(windows.future)
    return future - constant_velocity(past, future.shape[1])
