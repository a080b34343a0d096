"""The generation net p_theta(y | x, z): a distribution over future positions, not a point."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Normal, constraints
from torch.nn import functional as F

from cvae_traj.models.latent import mlp


class IntegratedGaussian(Distribution):
    """Future positions built from Gaussian noise by summation from `origin`.

    order 1: the per-step displacements are independent Gaussians N(loc_t, scale_t).
    order 2: the displacements' deviations from loc drift: deviation_t = deviation_{t-1} + scale_t * eps_t, so a
    draw that starts off faster or turned stays so and its path is smooth, not a random walk of positions.
    mixing: any lower-triangular (T_pred, T_pred) matrix M with unit diagonal instead (orders 1 and 2 are M = I
    and M = the lower triangle of ones): deviation_t = sum_{s <= t} M[t, s] * scale_s * eps_s.
    Either way the map from the standard normal innovations to positions is triangular with unit diagonal
    (a Jacobian of 1 after the scales), so log p(positions) = sum over steps and axes of log N(innovation_t;
    0, scale_t).
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, origin: Tensor, loc: Tensor, scale: Tensor, order: int = 1, mixing: Tensor | None = None,
                 validate_args: bool | None = None) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        if mixing is not None and (order != 1 or mixing.shape != (loc.shape[-2],) * 2):
            raise ValueError(f"mixing must be ({loc.shape[-2]}, {loc.shape[-2]}) and replaces order, got "
                             f"{tuple(mixing.shape)} with order {order}")
        self.origin = origin  # (..., 2) last observed position
        self.loc, self.scale = loc, scale  # (..., T_pred, 2) displacement moments
        self.order, self.mixing = order, mixing
        super().__init__(batch_shape=loc.shape[:-2], event_shape=loc.shape[-2:], validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return self.origin.unsqueeze(-2) + self.loc.cumsum(dim=-2)  # (..., T_pred, 2)

    @property
    def mode(self) -> Tensor:
        return self.mean

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        eps = torch.randn(self._extended_shape(sample_shape), dtype=self.loc.dtype, device=self.loc.device)
        return self.from_noise(eps)

    def from_noise(self, eps: Tensor) -> Tensor:
        """The draw that standard normal noise `eps` (..., T_pred, 2) makes: deterministic, mean at eps = 0."""
        deviation = self.scale * eps
        if self.mixing is not None:
            deviation = torch.einsum("ts,...sc->...tc", self.mixing, deviation)
        elif self.order == 2:
            deviation = deviation.cumsum(dim=-2)
        return self.origin.unsqueeze(-2) + (self.loc + deviation).cumsum(dim=-2)

    def log_prob(self, value: Tensor) -> Tensor:
        prev = torch.cat([self.origin.unsqueeze(-2).expand_as(value[..., :1, :]), value[..., :-1, :]], dim=-2)
        innovation = value - prev - self.loc  # order 1: each step's deviation
        if self.mixing is not None:
            innovation = torch.linalg.solve_triangular(self.mixing, innovation, upper=False, unitriangular=True)
        elif self.order == 2:  # each step's change of deviation, the first against none
            innovation = torch.diff(innovation, dim=-2, prepend=torch.zeros_like(innovation[..., :1, :]))
        noise = Normal(torch.zeros_like(self.scale), self.scale, validate_args=False)
        return noise.log_prob(innovation).sum(dim=(-1, -2))


class TrajectoryDecoder(nn.Module):
    """Maps (x, z) to per-step Gaussian displacements, integrated into positions from the last observation.

    noise_order 1 or 2 is IntegratedGaussian's order; "learned" learns its mixing matrix (shared by all agents,
    starting from order 1), so how the steps' noise is correlated in time is fitted, not assumed.
    """

    def __init__(self, context_dim: int, latent_dim: int, pred_len: int, hidden_dim: int = 64,
                 min_scale: float = 0.01, noise_order: int | str = 1, layers: int = 2) -> None:
        super().__init__()
        if noise_order not in (1, 2, "learned"):
            raise ValueError(f"noise_order must be 1, 2 or 'learned', got {noise_order!r}")
        if layers < 2:
            raise ValueError(f"the mlp decoder needs at least 2 hidden layers, got {layers!r}")
        self.pred_len, self.min_scale, self.noise_order = pred_len, min_scale, noise_order
        extra = [m for _ in range(layers - 2) for m in (nn.Linear(hidden_dim, hidden_dim), nn.ReLU())]
        self.net = nn.Sequential(nn.Linear(context_dim + latent_dim, hidden_dim), nn.ReLU(), *extra,
                                 mlp(hidden_dim, hidden_dim, 4 * pred_len))
        # Below-diagonal entries of the mixing matrix (the rest is masked out).
        self.mixing_offdiag = nn.Parameter(torch.zeros(pred_len, pred_len)) if noise_order == "learned" else None

    def mixing(self) -> Tensor | None:
        if self.mixing_offdiag is None:
            return None
        eye = torch.eye(self.pred_len, dtype=self.mixing_offdiag.dtype, device=self.mixing_offdiag.device)
        return eye + torch.tril(self.mixing_offdiag, diagonal=-1)

    def forward(self, context: Tensor, z: Tensor, origin: Tensor) -> IntegratedGaussian:
        """context (..., C), z (..., D), origin (..., 2) -> distribution with event (T_pred, 2). context and origin
        may have fewer leading dimensions than z and broadcast against it: (B, C) and (B, 2) for z (K, B, D)."""
        first, c = self.net[0], context.shape[-1]
        # The first layer on [context, z], with the context's share computed once per agent rather than once
        # per draw of z (the context is most of the input).
        hidden = F.linear(context, first.weight[:, :c], first.bias) + F.linear(z, first.weight[:, c:])
        out = self.net[1:](hidden).unflatten(-1, (self.pred_len, 4))
        loc, raw_scale = out[..., :2], out[..., 2:]
        mixing = self.mixing()
        return IntegratedGaussian(origin, loc, F.softplus(raw_scale) + self.min_scale,
                                  order=1 if mixing is not None else self.noise_order, mixing=mixing,
                                  validate_args=False)  # as diagonal_gaussian: not checked per call


class AutoregressiveGaussian(Distribution):
    """p(y|x,z) = prod_t N(d_t; loc_t(d_<t), scale_t(d_<t)) over displacements d_t, integrated from `origin`.

    Each step sees the displacement drawn before it, so a sampled future stays coherent; log_prob runs the
    same recursion on the true displacements (teacher forcing) and is the exact log-likelihood.
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, decoder: GRUTrajectoryDecoder, state: Tensor, origin: Tensor) -> None:
        self.decoder, self.state, self.origin = decoder, state, origin  # state (..., H), origin (..., 2)
        super().__init__(batch_shape=origin.shape[:-1], event_shape=(decoder.pred_len, 2), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        steps = torch.diff(torch.cat([self.origin.unsqueeze(-2), value], dim=-2), dim=-2)  # (..., T, 2)
        prev = torch.cat([torch.zeros_like(steps[..., :1, :]), steps[..., :-1, :]], dim=-2)
        loc, scale = self.decoder.unroll(self.state, prev)
        return Normal(loc, scale, validate_args=False).log_prob(steps).sum(dim=(-1, -2))

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        if sample_shape != torch.Size():
            raise ValueError("draw several futures through several z; sample_shape must be empty")
        with torch.no_grad():
            return self.from_noise(torch.randn(*self.batch_shape, *self.event_shape, dtype=self.origin.dtype,
                                               device=self.origin.device))

    def from_noise(self, eps: Tensor) -> Tensor:
        """The draw that standard normal noise `eps` (..., T_pred, 2) makes, step t using eps[..., t, :]."""
        return self.origin.unsqueeze(-2) + self.decoder.rollout(self.state, eps).cumsum(dim=-2)

    @property
    def mean(self) -> Tensor:
        """The noise-free rollout: each step's mean displacement fed to the next."""
        return self.origin.unsqueeze(-2) + self.decoder.rollout(self.state, None).cumsum(dim=-2)

    @property
    def mode(self) -> Tensor:
        return self.mean


class GRUTrajectoryDecoder(nn.Module):
    """An autoregressive GRU over displacements, started from (x, z), returning AutoregressiveGaussian."""

    def __init__(self, context_dim: int, latent_dim: int, pred_len: int, hidden_dim: int = 64,
                 min_scale: float = 0.01) -> None:
        super().__init__()
        self.pred_len, self.min_scale = pred_len, min_scale
        self.init_state = nn.Linear(context_dim + latent_dim, hidden_dim)
        self.cell = nn.GRUCell(2 + context_dim + latent_dim, hidden_dim)
        self.head = mlp(hidden_dim, hidden_dim, 4)
        self.hidden_dim = hidden_dim

    def forward(self, context: Tensor, z: Tensor, origin: Tensor) -> AutoregressiveGaussian:
        """As TrajectoryDecoder.forward: context (..., C) and origin (..., 2) broadcast against z (..., D)."""
        lead = torch.broadcast_shapes(context.shape[:-1], z.shape[:-1], origin.shape[:-1])
        xz = torch.cat([context.expand(*lead, -1), z.expand(*lead, -1)], dim=-1)  # (..., C + D)
        return AutoregressiveGaussian(self, xz, origin.expand(*lead, -1))

    def _start(self, xz: Tensor) -> tuple[Tensor, Tensor]:
        """The initial state and the part of the GRU's input gates that (x, z) gives, the same at every step:
        (N, H) and (N, 3H) for xz flattened to (N, C + D)."""
        gates_xz = F.linear(xz, self.cell.weight_ih[:, 2:], self.cell.bias_ih)  # the input is [prev (2), xz]
        return torch.tanh(self.init_state(xz)), gates_xz

    def _step(self, h: Tensor, prev: Tensor, gates_xz: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One GRUCell step on the input [prev, xz], with xz's share of the input gates computed once: only the
        2-d previous displacement is multiplied in here (nn.GRUCell's equations, in its parameters)."""
        gi = gates_xz + F.linear(prev, self.cell.weight_ih[:, :2])
        gh = F.linear(h, self.cell.weight_hh, self.cell.bias_hh)
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        reset, update = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        h = torch.lerp(torch.tanh(i_n + reset * h_n), h, update)  # (1 - update) * candidate + update * h
        out = self.head(h)
        return h, out[:, :2], F.softplus(out[:, 2:]) + self.min_scale

    def unroll(self, xz: Tensor, prev: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing: per-step (loc, scale) given the previous true displacements prev (..., T, 2)."""
        lead = xz.shape[:-1]
        flat_xz, flat_prev = xz.reshape(-1, xz.shape[-1]), prev.reshape(-1, self.pred_len, 2)
        h, gates_xz = self._start(flat_xz)
        locs, scales = [], []
        for t in range(self.pred_len):
            h, loc, scale = self._step(h, flat_prev[:, t], gates_xz)
            locs.append(loc)
            scales.append(scale)
        return (torch.stack(locs, 1).reshape(*lead, self.pred_len, 2),
                torch.stack(scales, 1).reshape(*lead, self.pred_len, 2))

    def rollout(self, xz: Tensor, noise: Tensor | None) -> Tensor:
        """Displacements (..., T, 2), each step fed its predecessor: loc + scale * noise[..., t, :], or the
        mean when noise is None."""
        lead = xz.shape[:-1]
        flat_xz = xz.reshape(-1, xz.shape[-1])
        flat_noise = None if noise is None else noise.reshape(-1, self.pred_len, 2)
        h, gates_xz = self._start(flat_xz)
        prev = flat_xz.new_zeros(flat_xz.shape[0], 2)
        steps = []
        for t in range(self.pred_len):
            h, loc, scale = self._step(h, prev, gates_xz)
            prev = loc if flat_noise is None else loc + scale * flat_noise[:, t]
            steps.append(prev)
        return torch.stack(steps, 1).reshape(*lead, self.pred_len, 2)
