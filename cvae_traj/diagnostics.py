"""Is the latent used? KL per dimension and active units, as pure functions of validation statistics."""
from __future__ import annotations

import torch
from torch import Tensor

# Burda et al. (2016): a unit is active when Cov_x(E_q[z_u | x]) exceeds this.
ACTIVE_UNIT_THRESHOLD = 0.01
# Below this KL (nats) in every dimension, z tells the decoder nothing: the posterior has collapsed.
COLLAPSE_NATS = 0.05


def latent_diagnostics(posterior_means: Tensor, kl_per_dim: Tensor) -> dict:
    """posterior_means (N, D) = E_q[z | x, y] and kl_per_dim (N, D) over N windows -> per-dimension summary."""
    return latent_diagnostics_from_sums(latent_sums(posterior_means, kl_per_dim))


def latent_sums(posterior_means: Tensor, kl_per_dim: Tensor) -> Tensor:
    """What latent_diagnostics needs, as sums that add up over batches and processes: (4, D) float64 rows
    count, sum of means, sum of squared means, sum of KL."""
    m = posterior_means.double()
    return torch.stack([torch.full_like(m[0], len(m)), m.sum(0), (m * m).sum(0), kl_per_dim.double().sum(0)])


def latent_diagnostics_from_sums(sums: Tensor) -> dict:
    """The summary from latent_sums (summed over any number of batches or processes)."""
    n, total, squares, kl = sums
    activity = ((squares - total * total / n) / (n - 1).clamp(min=1)).clamp(min=0).float()  # unbiased variance
    mean_kl = (kl / n).float()
    return {
        "activity": activity,
        "active_units": int((activity > ACTIVE_UNIT_THRESHOLD).sum()),
        "kl_per_dim": mean_kl,
        "collapsed": bool((mean_kl < COLLAPSE_NATS).all()),
    }
