"""The two distributions over the latent z: the prior net p(z | x) and the recognition net q(z | x, y)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal
from torch.nn import functional as F


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


def diagonal_gaussian(params: Tensor, min_scale: float = 1e-4) -> Independent:
    """Independent(Normal) over the last dimension from concatenated (loc, pre-softplus scale).

    Not validated per call (torch's check costs a device sync each time): a NaN from the nets surfaces as
    TrainingDivergedError in training, and load_model refuses a checkpoint with non-finite weights."""
    loc, raw_scale = params.chunk(2, dim=-1)
    return Independent(Normal(loc, F.softplus(raw_scale) + min_scale, validate_args=False), 1, validate_args=False)


class PriorNet(nn.Module):
    """p_theta(z | x): where the latent may lie before the future is seen.

    A diagonal Gaussian, or with components > 1 a mixture of that many diagonal Gaussians with weights
    that depend on x (MixtureSameFamily), so that separate futures (left or right of an obstacle) can have
    separate lumps of prior mass instead of one lump the decoder must tear apart. With `weight_net` the weights
    come from a network of their own (two hidden layers), not from the layer that also places the components.
    """

    def __init__(self, context_dim: int, latent_dim: int, hidden_dim: int = 64, components: int = 1,
                 weight_net: bool = False) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"components must be at least 1, got {components!r}")
        self.components = components
        # One component: (loc, raw scale), as before the option (the same modules and checkpoints); more:
        # each component's (loc, raw scale), after the mixture's logits unless weight_net computes them.
        own_weights = weight_net and components > 1
        shared_logits = components if components > 1 and not own_weights else 0
        self.net = mlp(context_dim, hidden_dim, 2 * latent_dim * components + shared_logits)
        self.weight_net = nn.Sequential(mlp(context_dim, hidden_dim, hidden_dim), nn.ReLU(),
                                        nn.Linear(hidden_dim, components)) if own_weights else None

    def forward(self, context: Tensor) -> Independent | MixtureSameFamily:
        out = self.net(context)
        if self.components == 1:
            return diagonal_gaussian(out)  # event (D,), batch (B,)
        c = self.components
        if self.weight_net is None:
            logits, params = out[..., :c], out[..., c:].unflatten(-1, (c, -1))
        else:
            logits, params = self.weight_net(context), out.unflatten(-1, (c, -1))
        return MixtureSameFamily(Categorical(logits=logits, validate_args=False), diagonal_gaussian(params),
                                 validate_args=False)  # event (D,), batch (B,); components (B, C)


def temper(prior: Independent | MixtureSameFamily, factor: float,
           odds: float = 1.0) -> Independent | MixtureSameFamily:
    """The prior with every component's standard deviation multiplied by `factor`, its means unchanged: wider
    (factor > 1) or narrower futures within each mode. A mixture's logits are divided by `odds`: above 1 the
    modes' odds even out (more draws in the modes it thought unlikely: a stander setting off), below 1 they
    sharpen towards the likeliest; 1 keeps each mode's odds. factor and odds 1 return `prior` itself."""
    if factor == 1 and odds == 1:
        return prior
    if isinstance(prior, Independent):
        base = prior.base_dist
        return prior if factor == 1 else Independent(Normal(base.loc, base.scale * factor, validate_args=False), 1,
                                                     validate_args=False)
    weights = prior.mixture_distribution
    if odds != 1:
        weights = Categorical(logits=weights.logits / odds, validate_args=False)
    return MixtureSameFamily(weights, temper(prior.component_distribution, factor), validate_args=False)


def prior_draw(prior: Independent | MixtureSameFamily, noise: Tensor) -> Tensor:
    """z from standard normal `noise` (..., B, D) under p(z|x), deterministically: loc + scale * noise,
    reparameterised. For a mixture `noise` has one more channel (..., B, D + 1): the last picks the
    component by inverse CDF of its weights (its standard normal value mapped to a uniform), the rest are
    that component's noise; the pick itself is not differentiable, the draw from the component is."""
    if isinstance(prior, Independent):
        base = prior.base_dist
        return base.loc + base.scale * noise
    weights = prior.mixture_distribution.probs  # (B, C)
    uniform = 0.5 * (1 + torch.erf(noise[..., -1:] / 2 ** 0.5))  # (..., B, 1)
    pick = (weights.cumsum(-1)[..., :-1] < uniform).sum(-1)  # (..., B): the first component whose CDF passes u
    base = prior.component_distribution.base_dist  # loc, scale (B, C, D)
    index = pick.unsqueeze(-1).unsqueeze(-1).expand(*pick.shape, 1, base.loc.shape[-1])  # (..., B, 1, D)
    loc = base.loc.expand(*pick.shape, *base.loc.shape[-2:]).gather(-2, index).squeeze(-2)
    scale = base.scale.expand(*pick.shape, *base.scale.shape[-2:]).gather(-2, index).squeeze(-2)
    return loc + scale * noise[..., :-1]


def stratified_pick(z_noise: Tensor) -> Tensor:
    """`z_noise` (K, B, D + 1) for a mixture prior with its last channel, the one that picks each draw's component
    (prior_draw), stratified over the K draws: per agent, one value in each of K equal slices of the standard
    normal's probability rather than K independent values. Of K such draws each component of weight w gets
    w * K of them to within two, where independent draws scatter by sqrt(w (1 - w) K); each slice's value is
    still drawn at random, so an average over the K draws remains an unbiased estimate under p(z|x)."""
    k = z_noise.shape[0]
    slices = torch.arange(k, dtype=z_noise.dtype, device=z_noise.device).view(k, *[1] * (z_noise.dim() - 2))
    eps = torch.finfo(z_noise.dtype).eps
    uniform = ((slices + torch.rand(z_noise.shape[:-1], dtype=z_noise.dtype, device=z_noise.device)) / k)
    return torch.cat([z_noise[..., :-1], torch.special.ndtri(uniform.clamp(eps, 1 - eps)).unsqueeze(-1)], -1)


class RecognitionNet(nn.Module):
    """q_phi(z | x, y): the latent that explains the future y, given the past x."""

    def __init__(self, context_dim: int, latent_dim: int, hidden_dim: int = 64) -> None:
        super().__init__()
        self.future_gru = nn.GRU(4, hidden_dim, batch_first=True)
        self.net = mlp(context_dim + hidden_dim, hidden_dim, 2 * latent_dim)

    def forward(self, context: Tensor, past: Tensor, future: Tensor) -> Independent:
        origin = past[:, -1:]  # (B, 1, 2)
        steps = torch.diff(torch.cat([origin, future], dim=1), dim=1)  # (B, T_pred, 2)
        _, h = self.future_gru(torch.cat([future - origin, steps], dim=-1))
        return diagonal_gaussian(self.net(torch.cat([context, h[-1]], dim=-1)))


class RepresentativeNet(nn.Module):
    """K latent codes per agent, learned so that the decoder's futures at them cover where agents go: x -> z_1..z_K
    (K, B, D). The codes are deterministic in x; cvae_traj.representatives fits them to a trained model with its
    other networks frozen (a DLow-style diversity sampler, Yuan and Kitani 2020, without the noise)."""

    def __init__(self, context_dim: int, latent_dim: int, k: int, hidden_dim: int = 128) -> None:
        super().__init__()
        if k < 2:
            raise ValueError(f"learned_representatives must be at least 2, got {k!r}")
        self.k, self.latent_dim = k, latent_dim
        self.net = nn.Sequential(nn.Linear(context_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.ReLU(), nn.Linear(hidden_dim, k * latent_dim))

    def forward(self, context: Tensor) -> Tensor:
        return self.net(context).unflatten(-1, (self.k, self.latent_dim)).transpose(0, 1)  # (K, B, D)
