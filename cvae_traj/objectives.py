"""The conditional ELBO as unweighted terms; the KL weight (beta) is applied by the training system."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, MixtureSameFamily, Normal, kl_divergence


def elbo_terms(
    prior: Independent | MixtureSameFamily,
    posterior: Independent,
    decode: Callable[[Tensor], Distribution],
    y: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Single-sample terms of E_q[log p(y|x,z)] - KL(q(z|x,y) || p(z|x)).

    Returns the reconstruction NLL -log p(y|x,z) at a reparameterised z ~ q, shape (B,), the closed-form
    KL per latent dimension, shape (B, D), and the rest of the KL that no dimension owns, shape (B,): zero
    for a Gaussian prior. A mixture prior's KL is log q(z) - log p(z) at the same z: unbiased, and its gradient
    shares each z among the components by their responsibility, so the weights learn the odds. Its
    per-dimension part is the closest component's (mixture_kl_bound), for the latent diagnostics, and kl_rest
    the remainder, so that the total and its gradient are the sampled KL's. The ELBO is
    -(rec_nll + kl_per_dim.sum(-1) + kl_rest).
    """
    z = posterior.rsample()  # (B, D)
    rec_nll = -decode(z).log_prob(y)  # (B,)
    if isinstance(prior, MixtureSameFamily):
        kl_per_dim, _ = mixture_kl_bound(posterior, prior)
        kl = posterior.log_prob(z) - prior.log_prob(z)  # (B,) unbiased, soft in the components
        kl_rest = kl - kl_per_dim.sum(-1)
    else:
        kl_per_dim = kl_divergence(posterior.base_dist, prior.base_dist)  # (B, D)
        kl_rest = kl_per_dim.new_zeros(kl_per_dim.shape[:-1])
    return rec_nll, kl_per_dim, kl_rest


def mixture_kl_bound(posterior: Independent, prior: MixtureSameFamily) -> tuple[Tensor, Tensor]:
    """An upper bound on KL(q || sum_c pi_c N_c) for a diagonal Gaussian q: min over c of KL(q || N_c) -
    log pi_c (the mixture's log density is at least log pi_c + log N_c, everywhere). Closed form, so the
    ELBO it gives is still a lower bound on log p(y|x). Returns the chosen component's KL per latent
    dimension (B, D) and -log pi of that component (B,); their sum over dimensions plus it is the bound."""
    q = posterior.base_dist
    components = prior.component_distribution.base_dist  # (B, C, D)
    q_expanded = Normal(q.loc.unsqueeze(-2), q.scale.unsqueeze(-2), validate_args=False)
    kl = kl_divergence(q_expanded, components)  # (B, C, D)
    log_weights = prior.mixture_distribution.logits.log_softmax(-1)  # (B, C)
    chosen = (kl.sum(-1) - log_weights).argmin(-1, keepdim=True)  # (B, 1)
    per_dim = kl.gather(-2, chosen.unsqueeze(-1).expand(-1, 1, kl.shape[-1])).squeeze(-2)  # (B, D)
    return per_dim, -log_weights.gather(-1, chosen).squeeze(-1)


def importance_weighted_bound(
    prior: Independent | MixtureSameFamily,
    posterior: Independent,
    decode: Callable[[Tensor], Distribution],
    y: Tensor,
    num_samples: int,
) -> Tensor:
    """log (1/S) sum_s p(z_s|x) p(y|x,z_s) / q(z_s|x,y) with z_s ~ q: a bound on log p(y|x), shape (B,).

    It equals the ELBO in expectation at S = 1, never decreases in expectation as S grows, and tends to
    log p(y|x) (Burda et al., 2016). `decode` must accept z with a leading sample dimension (S, B, D).
    """
    z = posterior.sample((num_samples,))  # (S, B, D)
    log_weights = prior.log_prob(z) + decode(z).log_prob(y.expand(num_samples, *y.shape)) - posterior.log_prob(z)
    return torch.logsumexp(log_weights, dim=0) - math.log(num_samples)  # (B,)
