"""Several conditional VAEs as one model of p(y | x): the equal mixture of the members' distributions.

On scenes like its training scenes one model's draws are calibrated, but on a new scene they are too narrow
(benchmarks/HISTORY.md: ETH's 50% regions hold the truth about a quarter of the time). Members trained from
different starting weights agree where training held the answer and disagree where it did not, so the mixture
of their draws widens where a single model is wrongly sure, and only there (a deep ensemble: Lakshminarayanan
et al., 2017). Each faithful draw comes from a member picked at random, so the draws are independent draws of
the mixture and their shares are still probabilities.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.clustering import cluster_futures
from cvae_traj.models.cvae import ConditionalVAE


class EnsembleVAE(nn.Module):
    """The equal mixture of `members` (ConditionalVAEs of the same shape): p(y|x) = mean_m p_m(y|x).

    Samples as a ConditionalVAE does (sample, representatives, most_likely, importance_nll), so a TrajectoryCVAE
    built with `ensemble` > 1 predicts, evaluates and calibrates as any other. Learned representatives, the
    exported sampler and sample_from_noise belong to one member's latent and are not offered.
    """

    representative_net = None  # learned representatives live in one member's latent

    def __init__(self, members: list[ConditionalVAE]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        shapes = {(m.obs_len, m.pred_len, m.dt) for m in members}
        if len(shapes) > 1:
            raise ValueError(f"ensemble members must observe and forecast the same steps, got {sorted(shapes)}")
        self.members = nn.ModuleList(members)
        first = members[0]
        self.obs_len, self.pred_len, self.dt = first.obs_len, first.pred_len, first.dt
        self.min_history = max(m.min_history for m in members)

    @property
    def prior_temperature(self) -> float:
        return self.members[0].prior_temperature

    @prior_temperature.setter
    def prior_temperature(self, value: float) -> None:
        for member in self.members:
            member.prior_temperature = value

    @property
    def prior_odds(self) -> float:
        return self.members[0].prior_odds

    @prior_odds.setter
    def prior_odds(self, value: float) -> None:
        for member in self.members:
            member.prior_odds = value

    def forward(self, batch: TrajectoryBatch | Tensor, num_samples: int = 20) -> Tensor:
        return self.sample(batch, num_samples=num_samples)

    @torch.no_grad()
    def sample(self, batch: TrajectoryBatch | Tensor, num_samples: int = 20, decoder_noise: bool = True) -> Tensor:
        """K faithful futures per agent, (B, K, T_pred, 2): independent draws of the mixture.

        How many of the K come from each member is multinomial (one draw of counts per batch), and each agent's K
        futures are shuffled, so for every agent they are K independent draws from a member picked at random.
        """
        batch = _as_batch(batch)
        counts = torch.distributions.Multinomial(num_samples, probs=torch.ones(len(self.members))).sample().long()
        futures = self._pooled(batch, counts, lambda member, n: member.sample(batch, n, decoder_noise))
        order = torch.rand(len(batch), num_samples, device=futures.device).argsort(1)
        return futures.gather(1, order[..., None, None].expand_as(futures))

    def representative_draws(self, batch: TrajectoryBatch, draws: int) -> Tensor:
        """The futures representatives are made from, (B, draws, T_pred, 2): each member's representative_draws,
        the members' shares stratified (draws // M each, the rest to members picked at random), as a member
        stratifies its components, so each member's share carries less sampling noise."""
        m = len(self.members)
        counts = torch.full((m,), draws // m, dtype=torch.long)
        counts[torch.randperm(m)[:draws % m]] += 1
        return self._pooled(batch, counts, lambda member, n: member.representative_draws(batch, n))

    @torch.no_grad()
    def representatives(self, batch: TrajectoryBatch | Tensor, num_samples: int = 20,
                        draws: int = 200) -> tuple[Tensor, Tensor]:
        """K representatives of `draws` pooled draws, clustered by final position, with the share of the draws
        each stands for (ConditionalVAE.representatives without learned ones)."""
        if draws < num_samples:
            raise ValueError(f"draws must be at least num_samples ({num_samples}), got {draws}")
        return cluster_futures(self.representative_draws(_as_batch(batch), draws), num_samples)

    @torch.no_grad()
    def most_likely(self, batch: TrajectoryBatch | Tensor) -> Tensor:
        """One future per agent, (B, T_pred, 2): the mean of the members' most likely futures."""
        batch = _as_batch(batch)
        return torch.stack([member.most_likely(batch) for member in self.members]).mean(0)

    @torch.no_grad()
    def importance_nll(self, batch: TrajectoryBatch, num_samples: int = 100) -> Tensor:
        """-log p(y|x) of the mixture, nats per agent (B,): -log mean_m exp(-nll_m), each member's own bound with
        S importance samples; still a bound, as each member's estimate of p_m(y|x) is unbiased."""
        return -_log_mean_exp(torch.stack([-member.importance_nll(batch, num_samples) for member in self.members]))

    def elbo_terms(self, batch: TrajectoryBatch, variety_samples: int = 0,
                   variety_noise: bool = False) -> dict[str, Tensor]:
        """Each member's ELBO terms (ConditionalVAE.elbo_terms) under "members"; "nelbo" (B,), the mixture's bound
        -log mean_m exp(ELBO_m) (each p_m(y|x) >= exp(ELBO_m)); and "kl_per_dim" (B, M * D), the members' KL per
        latent dimension side by side, for the latent diagnostics."""
        members = [member.elbo_terms(batch, variety_samples, variety_noise) for member in self.members]
        return {"members": members,
                "nelbo": -_log_mean_exp(torch.stack([-terms["nelbo"] for terms in members])),
                "kl_per_dim": torch.cat([terms["kl_per_dim"] for terms in members], dim=-1)}

    @torch.no_grad()
    def posterior_mean(self, batch: TrajectoryBatch) -> Tensor:
        """The members' E_q[z | x, y] side by side: (B, M * D), as elbo_terms lays out kl_per_dim."""
        return torch.cat([member.posterior_mean(batch) for member in self.members], dim=-1)

    def _pooled(self, batch: TrajectoryBatch, counts: Tensor, draw) -> Tensor:
        parts = [draw(member, int(n)) for member, n in zip(self.members, counts.tolist()) if n]
        return torch.cat(parts, dim=1)


def _as_batch(batch: TrajectoryBatch | Tensor) -> TrajectoryBatch:
    return TrajectoryBatch.from_past(batch) if isinstance(batch, Tensor) else batch


def _log_mean_exp(values: Tensor) -> Tensor:
    """log mean exp over the first dimension."""
    return torch.logsumexp(values, dim=0) - math.log(values.shape[0])
