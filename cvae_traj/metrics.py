"""Displacement metrics and the constant-velocity baseline, as pure functions of tensors."""
from __future__ import annotations

import torch
from torch import Tensor


def displacement(pred: Tensor, future: Tensor) -> Tensor:
    """Euclidean error per step: pred (B, K, T, 2), future (B, T, 2) -> (B, K, T)."""
    return (pred - future.unsqueeze(1)).norm(dim=-1)


def min_ade(samples: Tensor, future: Tensor) -> Tensor:
    """Best-of-K average displacement per agent: (B, K, T, 2), (B, T, 2) -> (B,)."""
    return displacement(samples, future).mean(dim=-1).min(dim=1).values


def min_fde(samples: Tensor, future: Tensor) -> Tensor:
    """Best-of-K final displacement per agent, chosen separately from ADE: -> (B,)."""
    return displacement(samples, future)[..., -1].min(dim=1).values


def constant_velocity(past: Tensor, pred_len: int) -> Tensor:
    """Extrapolate the last observed velocity (a backward difference): (B, T_obs, 2) -> (B, T_pred, 2)."""
    velocity = past[:, -1] - past[:, -2]  # (B, 2)
    steps = torch.arange(1, pred_len + 1, dtype=past.dtype, device=past.device)  # (T_pred,)
    return past[:, -1:] + steps[None, :, None] * velocity[:, None]


def kde_nll(samples: Tensor, future: Tensor, clip: float = -20.0) -> Tensor:
    """KDE NLL as Trajectron++ defines it, per agent: (B, K, T, 2), (B, T, 2) -> (B,).

    For each agent and step, a Gaussian KDE with Scott's bandwidth (scipy.stats.gaussian_kde's default:
    kernel covariance = sample covariance * K^(-1/3) in 2-D) is fitted to the K sampled positions; the
    log density of the true position is clipped below at `clip`, negated and averaged over steps.
    """
    k = samples.shape[1]
    points = samples.transpose(1, 2).double()  # (B, T, K, 2)
    centred = points - points.mean(dim=2, keepdim=True)
    cov = centred.transpose(-1, -2) @ centred / (k - 1)  # (B, T, 2, 2), unbiased as in scipy
    kernel_cov = cov * k ** (-1.0 / 3.0)
    kernel = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=points.dtype, device=points.device),
                                                    covariance_matrix=kernel_cov.unsqueeze(2))
    log_kernels = kernel.log_prob(future.double().unsqueeze(2) - points)  # (B, T, K)
    log_density = torch.logsumexp(log_kernels, dim=-1) - torch.log(torch.tensor(float(k), dtype=points.dtype))
    return (-log_density.clamp(min=clip)).mean(dim=-1).to(samples.dtype)
