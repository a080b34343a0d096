"""The conditional ELBO as unweighted terms; weights (beta, free bits) are applied by the training system."""
from __future__ import annotations

from typing import Callable

from torch import Tensor
from torch.distributions import Distribution, Independent, kl_divergence


def elbo_terms(
    prior: Independent,
    posterior: Independent,
    decode: Callable[[Tensor], Distribution],
    y: Tensor,
) -> tuple[Tensor, Tensor]:
    """Single-sample terms of E_q[log p(y|x,z)] - KL(q(z|x,y) || p(z|x)).

    Returns the reconstruction NLL -log p(y|x,z) at a reparameterised z ~ q, shape (B,), and the
    closed-form KL per latent dimension, shape (B, D); the ELBO is -(rec_nll + kl_per_dim.sum(-1)).
    """
    z = posterior.rsample()  # (B, D)
    rec_nll = -decode(z).log_prob(y)  # (B,)
    kl_per_dim = kl_divergence(posterior.base_dist, prior.base_dist)  # (B, D)
    return rec_nll, kl_per_dim
