"""The conditional VAE over future tracks as a plain nn.Module: its networks, the agent frame, the ELBO terms,
sampling and the importance-weighted bound. Training (cvae_traj.system), export and inference all use it.

    log p(y|x) >= E_{q(z|x,y)}[log p(y|x,z)] - KL(q(z|x,y) || p(z|x))
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.clustering import cluster_futures
from cvae_traj.metrics import min_ade, min_fde
from cvae_traj.models.decoder import TrajectoryDecoder
from cvae_traj.models.frame import heading_rotation, speed_scale, to_world
from cvae_traj.models.history_encoder import HistoryEncoder, backfill, observed_steps
from cvae_traj.models.latent import PriorNet, RecognitionNet, RepresentativeNet, prior_draw, stratified_pick, temper
from cvae_traj.models.social_encoder import SocialEncoder
from cvae_traj.objectives import elbo_terms, importance_weighted_bound


class ConditionalVAE(nn.Module):
    """x (the past track and its neighbours) -> context; prior net p(z|x), recognition net q(z|x,y) and
    generation net p(y|x,z) on that context, in each agent's own frame. TrajectoryCVAE's docstring describes
    the arguments."""

    def __init__(self, obs_len: int = 8, pred_len: int = 12, dt: float = 0.4, hidden_dim: int = 64,
                 latent_dim: int = 32, prior_components: int = 8, social: bool = True,
                 decoder_min_scale: float = 0.002, heading_frame: bool = True, speed_frame: bool = False,
                 prior_temperature: float = 1.0, min_history: int | None = None,
                 learned_representatives: int | None = None, prior_weight_net: bool = True,
                 speed_floor: float = 0.5) -> None:
        super().__init__()
        min_history = obs_len if min_history is None else min_history
        if not 2 <= min_history <= obs_len:
            raise ValueError(f"min_history must be between 2 and obs_len ({obs_len}) observed steps, got "
                             f"{min_history!r}")
        if not prior_temperature > 0:
            raise ValueError(f"prior_temperature must be positive (it multiplies the prior's standard deviations), "
                             f"got {prior_temperature!r}")
        if not decoder_min_scale > 0:
            raise ValueError(f"decoder_min_scale must be positive (the decoder's smallest standard deviation), got "
                             f"{decoder_min_scale!r}")
        if not speed_floor > 0:
            raise ValueError(f"speed_floor must be a positive speed in m/s (the speed frame's scale for agents slower "
                             f"than it), got {speed_floor!r}")
        self.obs_len, self.pred_len, self.dt, self.latent_dim = obs_len, pred_len, dt, latent_dim
        self.speed_floor = speed_floor
        self.prior_components, self.heading_frame, self.speed_frame = prior_components, heading_frame, speed_frame
        self.prior_temperature, self.min_history = prior_temperature, min_history
        # Divides the prior's mixture logits when sampling (latent.temper); 1 as trained. Not a hyper-parameter:
        # online calibration (cvae_traj.calibration) moves it while forecasting.
        self.prior_odds = 1.0
        self.history_encoder = HistoryEncoder(hidden_dim, observed_flag=min_history < obs_len)
        context_dim = self.history_encoder.out_dim
        self.social_encoder = SocialEncoder(obs_len, hidden_dim, hidden_dim) if social else None
        if social:
            context_dim += self.social_encoder.out_dim
        self.prior_net = PriorNet(context_dim, latent_dim, hidden_dim, components=prior_components,
                                  weight_net=prior_weight_net)
        self.recognition_net = RecognitionNet(context_dim, latent_dim, hidden_dim)
        self.generation_net = TrajectoryDecoder(context_dim, latent_dim, pred_len, hidden_dim,
                                                min_scale=decoder_min_scale)
        self.representative_net = None if learned_representatives is None else RepresentativeNet(
            context_dim, latent_dim, learned_representatives)

    def forward(self, batch: TrajectoryBatch | Tensor, num_samples: int = 20) -> Tensor:
        return self.sample(batch, num_samples=num_samples)

    @property
    def noise_dim(self) -> int:
        """Standard normal channels per draw of z (sample_from_noise): the latent's, and one that picks a mixture
        prior's component."""
        return self.latent_dim + (1 if self.prior_components > 1 else 0)

    def encode(self, batch: TrajectoryBatch) -> Tensor:
        """The context x that conditions all three nets: (B, C)."""
        if batch.past.shape[1] != self.obs_len:
            raise ValueError(f"this model observes {self.obs_len} steps, got past of shape {tuple(batch.past.shape)}")
        observed = None if batch.history is None else observed_steps(batch.history, self.obs_len)
        history = self.history_encoder(batch.past, observed)  # (B, H)
        if self.social_encoder is None:
            return history
        social = self.social_encoder(history, batch.past, batch.neighbours, batch.neighbour_mask)  # (B, H)
        return torch.cat([history, social], dim=-1)  # (B, C)

    @staticmethod
    def filled(batch: TrajectoryBatch) -> TrajectoryBatch:
        """A batch whose agents have short histories (batch.history) with the steps before them backfilled
        (models.history_encoder.backfill) and the neighbours at those steps unseen, as the target's position there
        is a guess; the batch as is when every step was observed."""
        if batch.history is None:
            return batch
        observed = observed_steps(batch.history, batch.past.shape[1])  # (B, T_obs)
        mask = batch.neighbour_mask & observed[:, None, :]
        return replace(batch, past=backfill(batch.past, batch.history), neighbour_mask=mask,
                       neighbours=batch.neighbours * mask.unsqueeze(-1).to(batch.neighbours.dtype))

    def agent_frame(self, batch: TrajectoryBatch) -> tuple[TrajectoryBatch, Tensor | None, Tensor | None]:
        """The batch (filled in where histories are short) in each agent's own frame, the rotation m (B, 2, 2)
        and the speed scale (B,) used: positions p become (p - last observed) @ m / scale. Without heading_frame
        m is the identity; without speed_frame the scale is None; with neither the batch is returned as is, m
        None."""
        batch = self.filled(batch)
        if not (self.heading_frame or self.speed_frame):
            return batch, None, None
        past = batch.past
        m = heading_rotation(past) if self.heading_frame else torch.eye(
            2, dtype=past.dtype, device=past.device).expand(past.shape[0], 2, 2)
        scale = speed_scale(past, self.dt, self.speed_floor) if self.speed_frame else None
        to_frame = m if scale is None else m / scale[:, None, None]
        return batch.transformed(to_frame, past[:, -1], keep_pivot=False), m, scale

    def prior(self, context: Tensor) -> Distribution:
        """p(z | x) as the model samples it: the prior net's, every standard deviation times prior_temperature
        (1 as trained; cvae_traj.calibration fits another on recorded tracks), the mixture logits divided by
        prior_odds (1 as trained: the odds unchanged; online calibration moves it)."""
        return temper(self.prior_net(context), self.prior_temperature, self.prior_odds)

    def frame_to_metres_nll(self, scale: Tensor | None) -> Tensor | float:
        """Nats to add to an NLL of the future in the speed frame to get it in metres: -log |d frame / d world|
        = 2 * T_pred * log(scale) (each of the T_pred points shrinks by 1 / scale along both axes)."""
        return 0.0 if scale is None else 2 * self.pred_len * torch.log(scale)

    def decode(self, context: Tensor, z: Tensor, origin: Tensor) -> Distribution:
        """p(y | x, z) for z with leading sample dimensions: z (..., B, D) -> event (T_pred, 2). The decoder
        broadcasts context (B, C) and origin (B, 2) against z itself."""
        return self.generation_net(context, z, origin)

    def elbo_terms(self, batch: TrajectoryBatch, variety_samples: int = 0,
                   variety_noise: bool = False) -> dict[str, Tensor]:
        """Unweighted ELBO terms per agent, in metres whatever the frame: reconstruction NLL (B,), KL per latent
        dimension (B, D) and the KL no dimension owns (B,), zero but for a mixture prior (objectives.elbo_terms).
        Their sum is the negative ELBO (nelbo).

        With variety_samples > 0 also "variety" (B,): the best-of-many average displacement of that many
        decoder means (draws, with variety_noise) at reparameterised z ~ p(z|x), differentiable through the
        prior net and the decoder; in metres, whatever the frame. And "variety_fde" (B,): the best-of-many
        final displacement of the same futures (each agent's best draw for it chosen on its own).
        """
        batch, _, scale = self.agent_frame(batch)
        context = self.encode(batch)
        prior = self.prior(context)
        rec_nll, kl_per_dim, kl_rest = elbo_terms(
            prior=prior,
            posterior=self.recognition_net(context, batch.past, batch.future),
            decode=lambda z: self.generation_net(context, z, batch.past[:, -1]),
            y=batch.future,
        )
        terms = {"rec_nll": rec_nll + self.frame_to_metres_nll(scale), "kl_per_dim": kl_per_dim, "kl_rest": kl_rest}
        terms["nelbo"] = terms["rec_nll"] + kl_per_dim.sum(-1) + kl_rest
        if variety_samples > 0:
            z_noise = torch.randn(variety_samples, len(batch), self.noise_dim, device=context.device)
            decoded = self.decode(context, prior_draw(prior, z_noise), batch.past[:, -1])
            if variety_noise:
                futures = decoded.from_noise(torch.randn_like(batch.future.expand(variety_samples, -1, -1, -1)))
            else:
                futures = decoded.mean  # (K, B, T, 2)
            variety = min_ade(futures.transpose(0, 1), batch.future)
            variety_fde = min_fde(futures.transpose(0, 1), batch.future)
            terms["variety"] = variety if scale is None else variety * scale  # metres
            terms["variety_fde"] = variety_fde if scale is None else variety_fde * scale
        return terms

    @torch.no_grad()
    def sample(self, batch: TrajectoryBatch | Tensor, num_samples: int = 20, decoder_noise: bool = True) -> Tensor:
        """K faithful futures per agent in absolute positions: (B, K, T_pred, 2). Seed with torch.manual_seed.

        Each is an independent draw z ~ p(z|x), y ~ p(y|x,z), so the share of draws that do something
        estimates its probability. `batch` is a TrajectoryBatch or a past tensor (B, T_obs, 2). With
        decoder_noise=False each future is the decoder's mean for its z, rather than a draw from p(y|x,z).
        """
        if isinstance(batch, Tensor):
            batch = TrajectoryBatch.from_past(batch)
        b, device = len(batch), batch.past.device
        z_noise = torch.randn(num_samples, b, self.noise_dim, device=device)
        y_noise = torch.randn(num_samples, b, self.pred_len, 2, device=device)
        return self.sample_from_noise(batch, z_noise, y_noise if decoder_noise else torch.zeros_like(y_noise))

    @torch.no_grad()
    def representatives(self, batch: TrajectoryBatch | Tensor, num_samples: int = 20,
                        draws: int = 200) -> tuple[Tensor, Tensor]:
        """K distinct futures per agent with the probability mass each stands for: futures (B, K, T_pred, 2)
        and weights (B, K) summing to 1 per agent.

        With learned representatives (representative_net, fitted by cvae_traj.representatives) and K their
        number, the futures are the decoder's means at the K learned latent codes, each weighted by the share
        of `draws` futures (representative_draws) whose final position lies nearest its own. Otherwise those
        futures are clustered by final position (cvae_traj.clustering); each cluster gives its members' mean
        future, weighted by its share of the draws. Not independent draws: their best-of-K is reported apart
        from the faithful one (PROTOCOL.md).
        """
        if draws < num_samples:
            raise ValueError(f"draws must be at least num_samples ({num_samples}), got {draws}")
        if isinstance(batch, Tensor):
            batch = TrajectoryBatch.from_past(batch)
        samples = self.representative_draws(batch, draws)
        if self.representative_net is None or self.representative_net.k != num_samples:
            return cluster_futures(samples, num_samples)
        futures = self.learned_futures(batch)
        return futures, nearest_shares(samples, futures)

    def representative_draws(self, batch: TrajectoryBatch, draws: int) -> Tensor:
        """The futures representatives are made from and weighed by: (B, draws, T_pred, 2). Faithful draws,
        except that with a mixture prior the component each comes from is stratified over the draws
        (models.latent.stratified_pick), so each mode's share of them, a representative's weight, carries
        less sampling noise. Seed with torch.manual_seed; representative_noise gives the noise."""
        z_noise, y_noise = representative_noise(draws, len(batch), self.noise_dim, self.pred_len,
                                                self.prior_components > 1, batch.past.device)
        return self.sample_from_noise(batch, z_noise, y_noise)

    def learned_futures(self, batch: TrajectoryBatch) -> Tensor:
        """The decoder's mean futures at the K learned latent codes, in absolute positions: (B, K, T_pred, 2)."""
        origin = batch.past[:, -1]
        batch, m, scale = self.agent_frame(batch)
        context = self.encode(batch)
        futures = self.decode(context, self.representative_net(context), batch.past[:, -1]).mean.transpose(0, 1)
        return futures if m is None else to_world(futures, m, origin, scale)

    def representative_terms(self, batch: TrajectoryBatch) -> dict[str, Tensor]:
        """What fitting the learned representatives minimises, per agent (B,), with only representative_net
        receiving gradients: "cover", the best of the K futures' ADE + FDE in metres, and "prior", the mean over
        the K codes of -log p(z_k | x), which keeps them where the prior holds mass."""
        origin, future = batch.past[:, -1], batch.future
        batch, m, scale = self.agent_frame(batch)
        with torch.no_grad():
            context = self.encode(batch)
            prior = self.prior(context)
        z = self.representative_net(context)  # (K, B, D)
        frozen = {name: p.detach() for name, p in self.generation_net.named_parameters()}
        decoded = torch.func.functional_call(self.generation_net, frozen, (context, z, batch.past[:, -1]))
        futures = decoded.mean.transpose(0, 1)
        futures = futures if m is None else to_world(futures, m, origin, scale)
        error = (futures - future[:, None]).norm(dim=-1)  # (B, K, T_pred)
        return {"cover": (error.mean(-1) + error[..., -1]).min(1).values, "prior": -prior.log_prob(z).mean(0)}

    def sample_from_noise(self, batch: TrajectoryBatch, z_noise: Tensor, y_noise: Tensor) -> Tensor:
        """The futures that standard normal noise makes, deterministically: (B, K, T_pred, 2).

        z = mean + std * z_noise (K, B, D) under p(z|x) (with a mixture prior z_noise has D + 1 channels, the last
        picking the component: models.latent.prior_draw; noise_dim says how many); y_noise (K, B, T_pred, 2)
        drives the decoder's per-step draws (zeros give its mean). `sample` is this with fresh noise; the
        exported sampler (cvae_traj.export) is this as a graph.
        """
        if z_noise.shape[-1] != self.noise_dim:
            raise ValueError(f"z_noise needs {self.noise_dim} channels (noise_dim) for this model, got shape "
                             f"{tuple(z_noise.shape)}")
        origin = batch.past[:, -1]  # (B, 2)
        batch, m, scale = self.agent_frame(batch)
        context = self.encode(batch)
        z = prior_draw(self.prior(context), z_noise)  # (K, B, D)
        futures = self.decode(context, z, batch.past[:, -1]).from_noise(y_noise).transpose(0, 1)
        return futures if m is None else to_world(futures, m, origin, scale)

    @torch.no_grad()
    def importance_nll(self, batch: TrajectoryBatch, num_samples: int = 100) -> Tensor:
        """-log p(y|x) bounded with S importance samples from q(z|x,y), nats per agent: (B,). Tighter than -ELBO."""
        batch, _, scale = self.agent_frame(batch)
        context = self.encode(batch)
        bound = importance_weighted_bound(
            prior=self.prior(context),
            posterior=self.recognition_net(context, batch.past, batch.future),
            decode=lambda z: self.decode(context, z, batch.past[:, -1]),
            y=batch.future,
            num_samples=num_samples,
        )
        return -bound + self.frame_to_metres_nll(scale)

    @torch.no_grad()
    def posterior_mean(self, batch: TrajectoryBatch) -> Tensor:
        """E_q[z | x, y] per agent: (B, D)."""
        batch, _, _ = self.agent_frame(batch)
        context = self.encode(batch)
        return self.recognition_net(context, batch.past, batch.future).mean

    @torch.no_grad()
    def most_likely(self, batch: TrajectoryBatch | Tensor) -> Tensor:
        """One future per agent: z at the prior mean, then the decoder's mean: (B, T_pred, 2)."""
        if isinstance(batch, Tensor):
            batch = TrajectoryBatch.from_past(batch)
        origin = batch.past[:, -1]
        batch, m, scale = self.agent_frame(batch)
        context = self.encode(batch)
        future = self.generation_net(context, self.prior_net(context).mean, batch.past[:, -1]).mean  # (B, T, 2)
        return future if m is None else to_world(future, m, origin, scale)


def representative_noise(draws: int, agents: int, noise_dim: int, pred_len: int, mixture: bool,
                         device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Standard normal z_noise (draws, agents, noise_dim) and y_noise (draws, agents, pred_len, 2) for
    sample_from_noise, with a mixture's component channel stratified (stratified_pick): the draws that
    representatives are made from, by the model and by the exported sampler alike."""
    z_noise = torch.randn(draws, agents, noise_dim, device=device)
    y_noise = torch.randn(draws, agents, pred_len, 2, device=device)
    return (stratified_pick(z_noise) if mixture else z_noise), y_noise


def nearest_shares(samples: Tensor, futures: Tensor) -> Tensor:
    """The share of the draws (B, M, T, 2) whose final position lies nearest each future's (B, K, T, 2): (B, K)."""
    nearest = torch.cdist(samples[:, :, -1], futures[:, :, -1]).argmin(-1)  # (B, M)
    count = torch.zeros(futures.shape[:2], dtype=samples.dtype, device=samples.device).scatter_add_(
        1, nearest, torch.ones_like(nearest, dtype=samples.dtype))
    return count / samples.shape[1]
