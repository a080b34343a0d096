"""Is the latent used? KL per dimension and active units, as pure functions of validation statistics."""
from __future__ import annotations

from torch import Tensor

# Burda et al. (2016): a unit is active when Cov_x(E_q[z_u | x]) exceeds this.
ACTIVE_UNIT_THRESHOLD = 0.01
# Below this KL (nats) in every dimension, z tells the decoder nothing: the posterior has collapsed.
COLLAPSE_NATS = 0.05


def latent_diagnostics(posterior_means: Tensor, kl_per_dim: Tensor) -> dict:
    """posterior_means (N, D) = E_q[z | x, y] and kl_per_dim (N, D) over N windows -> per-dimension summary."""
    activity = posterior_means.var(dim=0)  # (D,)
    mean_kl = kl_per_dim.mean(dim=0)  # (D,)
    return {
        "activity": activity,
        "active_units": int((activity > ACTIVE_UNIT_THRESHOLD).sum()),
        "kl_per_dim": mean_kl,
        "collapsed": bool((mean_kl < COLLAPSE_NATS).all()),
    }
