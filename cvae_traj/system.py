"""The training system: a conditional VAE over future tracks, trained on the conditional ELBO.

    log p(y|x) >= E_{q(z|x,y)}[log p(y|x,z)] - KL(q(z|x,y) || p(z|x))

Batches are `cvae_traj.batch.TrajectoryBatch`es; any DataLoader that yields them can train this module.
"""
from __future__ import annotations

import logging

import lightning as L
import torch
from torch import Tensor
from torch.distributions import Distribution
from torchmetrics import MeanMetric, MetricCollection

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.clustering import cluster_futures
from cvae_traj.diagnostics import COLLAPSE_NATS, latent_diagnostics_from_sums, latent_sums
from cvae_traj.errors import TrainingDivergedError
from cvae_traj.metrics import constant_velocity, min_ade, min_fde
from cvae_traj.models import HistoryEncoder, PriorNet, RecognitionNet, SocialEncoder, TrajectoryDecoder
from cvae_traj.models.frame import heading_rotation, speed_scale, to_world
from cvae_traj.models.latent import prior_draw
from cvae_traj.objectives import elbo_terms, importance_weighted_bound

log = logging.getLogger(__name__)


class TrajectoryCVAE(L.LightningModule):
    """Multi-modal trajectory forecaster: K futures per agent from z ~ p(z|x), y ~ p(y|x,z).

    The defaults are the general recipe, chosen on the built-in worlds whose odds are known
    (benchmarks/known_odds.py): the plain ELBO with a mixture prior, so that the share of draws that take a
    mode is its probability. The ETH/UCY experiment adds its benchmark-specific pieces on top.

    Args:
        obs_len, pred_len, dt: observed and predicted steps, and the seconds between steps.
        prior_components: the prior p(z|x) is a mixture of this many diagonal Gaussians with weights that depend
            on x (1: one Gaussian), so that separate futures get separate lumps of prior mass with their own odds.
            Sampling then takes one more noise channel per draw (noise_dim), which picks the component. Its
            KL(q || p) enters the ELBO sampled, log q(z) - log p(z) at the reparameterised z
            (objectives.elbo_terms), so that the weights learn the odds.
        social: condition on the neighbours present in the observed frames through attention (SocialEncoder),
            not on the history alone.
        decoder_min_scale: floor of the decoder's per-step standard deviation (metres; units of observed speed
            with speed_frame), added to the learned softplus scale: how little noise a draw from p(y|x,z) can
            have, for example for an agent standing still.
        heading_frame: forecast in each agent's own frame (x along its observed heading), so the map's
            orientation does not matter; log-likelihoods are the same in either frame (a rigid motion).
        speed_frame: also measure lengths in units of each agent's observed speed (models.frame.speed_scale),
            so that a scene of faster or slower walkers looks the same; likelihoods are still reported in
            metres (the change of variables adds 2 * pred_len * log(scale) nats per agent).
        beta: weight of the KL term once annealing is over.
        kl_anneal_steps: optimiser steps over which the KL weight rises linearly from 0 to beta (0: none).
        variety_weight: weight of a best-of-many term added to the negative ELBO: the smallest average
            displacement (metres) among `variety_samples` decoder means at z ~ p(z|x), reparameterised. It
            trains the prior path that best-of-K evaluates (0: the plain ELBO).
        variety_samples: futures drawn from the prior path for that term.
        variety_noise: draw those futures from p(y|x,z) (reparameterised) as best-of-K evaluates them, rather
            than taking the decoder's mean for each z.
        variety_fde_weight: also add this many times the smallest final displacement among the same futures,
            each agent's best draw for it chosen on its own, as minFDE_K is scored apart from minADE_K (0: none).
        lr, lr_decay, lr_decay_steps: AdamW's learning rate, multiplied by lr_decay once per epoch, or, with
            lr_decay_steps, by lr_decay over every lr_decay_steps optimiser steps (a little each step), so that
            training sets of different sizes get the same schedule when trained for the same trainer.max_steps.
        num_eval_samples: K of the best-of-K metrics logged at validation and test.
        num_eval_importance: importance samples of the NLL bound logged at validation and test (0: skip).
    """

    def __init__(
        self,
        obs_len: int = 8,
        pred_len: int = 12,
        dt: float = 0.4,
        hidden_dim: int = 64,
        latent_dim: int = 32,
        prior_components: int = 8,
        social: bool = True,
        decoder_min_scale: float = 0.002,
        heading_frame: bool = True,
        speed_frame: bool = False,
        beta: float = 1.0,
        kl_anneal_steps: int = 2000,
        variety_weight: float = 0.0,
        variety_samples: int = 20,
        variety_noise: bool = False,
        variety_fde_weight: float = 0.0,
        lr: float = 2e-3,
        lr_decay: float = 0.85,
        lr_decay_steps: int | None = None,
        weight_decay: float = 0.0,
        num_eval_samples: int = 20,
        num_eval_importance: int = 10,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if lr_decay_steps is not None and not lr_decay_steps > 0:
            raise ValueError(f"lr_decay_steps must be a positive number of optimiser steps or None, got "
                             f"{lr_decay_steps!r}")
        self.history_encoder = HistoryEncoder(hidden_dim)
        context_dim = self.history_encoder.out_dim
        self.social_encoder = SocialEncoder(obs_len, hidden_dim, hidden_dim) if social else None
        if social:
            context_dim += self.social_encoder.out_dim
        self.prior_net = PriorNet(context_dim, latent_dim, hidden_dim, components=prior_components)
        self.recognition_net = RecognitionNet(context_dim, latent_dim, hidden_dim)
        if not decoder_min_scale > 0:
            raise ValueError(f"decoder_min_scale must be positive (the decoder's smallest standard deviation), got "
                             f"{decoder_min_scale!r}")
        self.generation_net = TrajectoryDecoder(context_dim, latent_dim, pred_len, hidden_dim,
                                                min_scale=decoder_min_scale)
        # Means over windows that stay right across processes: each holds a sum and a count, all-reduced
        # at epoch end, so unequal shards are weighted by their windows (not averaged per process).
        names = [f"min_ade_{num_eval_samples}", f"min_fde_{num_eval_samples}", "ml_ade", "ml_fde", "cv_ade", "cv_fde",
                 "nelbo"] + ([f"nll_iwae_{num_eval_importance}"] if num_eval_importance else [])
        self.val_metrics = MetricCollection({n: MeanMetric() for n in names}, prefix="val/")
        self.test_metrics = MetricCollection({n: MeanMetric() for n in names}, prefix="test/")

    def forward(self, batch: TrajectoryBatch | Tensor, num_samples: int = 20) -> Tensor:
        return self.sample(batch, num_samples=num_samples)

    def encode(self, batch: TrajectoryBatch) -> Tensor:
        """The context x that conditions all three nets."""
        if batch.past.shape[1] != self.hparams.obs_len:
            raise ValueError(f"this model observes {self.hparams.obs_len} steps, got past of shape "
                             f"{tuple(batch.past.shape)}")
        history = self.history_encoder(batch.past)  # (B, H)
        if self.social_encoder is None:
            return history
        social = self.social_encoder(history, batch.past, batch.neighbours, batch.neighbour_mask)  # (B, H)
        return torch.cat([history, social], dim=-1)  # (B, C)

    def elbo_terms(self, batch: TrajectoryBatch, variety_samples: int = 0) -> dict[str, Tensor]:
        """Unweighted ELBO terms per agent: reconstruction NLL (B,), KL per latent dimension (B, D) and the KL no
        dimension owns (B,), zero but for a mixture prior (objectives.elbo_terms).

        With variety_samples > 0 also "variety" (B,): the best-of-many average displacement of that many
        decoder means (draws, with variety_noise) at reparameterised z ~ p(z|x), differentiable through the
        prior net and the decoder; in metres, whatever the frame. And "variety_fde" (B,): the best-of-many
        final displacement of the same futures (each agent's best draw for it chosen on its own).
        """
        batch, _, scale = self._agent_frame(batch)
        context = self.encode(batch)
        prior = self.prior_net(context)
        rec_nll, kl_per_dim, kl_rest = elbo_terms(
            prior=prior,
            posterior=self.recognition_net(context, batch.past, batch.future),
            decode=lambda z: self.generation_net(context, z, batch.past[:, -1]),
            y=batch.future,
        )
        terms = {"rec_nll": rec_nll + self._frame_to_metres_nll(scale), "kl_per_dim": kl_per_dim, "kl_rest": kl_rest}
        if variety_samples > 0:
            z_noise = torch.randn(variety_samples, len(batch), self.noise_dim, device=context.device)
            decoded = self._decode(context, prior_draw(prior, z_noise), batch.past[:, -1])
            if self.hparams.variety_noise:
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
        y_noise = torch.randn(num_samples, b, self.hparams.pred_len, 2, device=device)
        return self.sample_from_noise(batch, z_noise, y_noise if decoder_noise else torch.zeros_like(y_noise))

    @torch.no_grad()
    def representatives(self, batch: TrajectoryBatch | Tensor, num_samples: int = 20,
                        draws: int = 200) -> tuple[Tensor, Tensor]:
        """K distinct futures per agent with the probability mass each stands for: futures (B, K, T_pred, 2)
        and weights (B, K) summing to 1 per agent.

        `draws` faithful futures are clustered by final position (cvae_traj.clustering); each cluster gives
        its draw nearest the centre, weighted by its share of the draws. Not independent draws: their
        best-of-K is reported apart from the faithful one (PROTOCOL.md).
        """
        if draws < num_samples:
            raise ValueError(f"draws must be at least num_samples ({num_samples}), got {draws}")
        return cluster_futures(self.sample(batch, num_samples=draws), num_samples)

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
        batch, m, scale = self._agent_frame(batch)
        context = self.encode(batch)
        z = prior_draw(self.prior_net(context), z_noise)  # (K, B, D)
        futures = self._decode(context, z, batch.past[:, -1]).from_noise(y_noise).transpose(0, 1)
        return futures if m is None else to_world(futures, m, origin, scale)

    @torch.no_grad()
    def importance_nll(self, batch: TrajectoryBatch, num_samples: int = 100) -> Tensor:
        """-log p(y|x) bounded with S importance samples from q(z|x,y), nats per agent: (B,). Tighter than -ELBO."""
        batch, _, scale = self._agent_frame(batch)
        context = self.encode(batch)
        bound = importance_weighted_bound(
            prior=self.prior_net(context),
            posterior=self.recognition_net(context, batch.past, batch.future),
            decode=lambda z: self._decode(context, z, batch.past[:, -1]),
            y=batch.future,
            num_samples=num_samples,
        )
        return -bound + self._frame_to_metres_nll(scale)

    @torch.no_grad()
    def posterior_mean(self, batch: TrajectoryBatch) -> Tensor:
        """E_q[z | x, y] per agent: (B, D)."""
        batch, _, _ = self._agent_frame(batch)
        context = self.encode(batch)
        return self.recognition_net(context, batch.past, batch.future).mean

    @torch.no_grad()
    def most_likely(self, batch: TrajectoryBatch | Tensor) -> Tensor:
        """One future per agent: z at the prior mean, then the decoder's mean: (B, T_pred, 2)."""
        if isinstance(batch, Tensor):
            batch = TrajectoryBatch.from_past(batch)
        origin = batch.past[:, -1]
        batch, m, scale = self._agent_frame(batch)
        context = self.encode(batch)
        future = self.generation_net(context, self.prior_net(context).mean, batch.past[:, -1]).mean  # (B, T, 2)
        return future if m is None else to_world(future, m, origin, scale)

    @property
    def noise_dim(self) -> int:
        """Standard normal channels per draw of z (sample_from_noise): the latent's, and one that picks a mixture
        prior's component."""
        return self.hparams.latent_dim + (1 if self.hparams.prior_components > 1 else 0)

    def kl_weight(self) -> float:
        """beta, ramped up linearly over the first kl_anneal_steps optimiser steps."""
        steps = self.hparams.kl_anneal_steps
        ramp = 1.0 if steps <= 0 else min(1.0, (self.global_step + 1) / steps)
        return self.hparams.beta * ramp

    def training_step(self, batch: TrajectoryBatch, batch_idx: int) -> Tensor:
        variety_weight = self.hparams.variety_weight
        terms = self.elbo_terms(batch, variety_samples=self.hparams.variety_samples if variety_weight else 0)
        rec_nll = terms["rec_nll"].mean()
        kl_per_dim = terms["kl_per_dim"].mean(dim=0)  # (D,)
        kl_rest = terms["kl_rest"].mean()
        kl = kl_per_dim.sum() + kl_rest
        beta = self.kl_weight()
        loss = rec_nll + beta * kl
        if variety_weight:
            variety = terms["variety"].mean()
            variety_fde = terms["variety_fde"].mean()
            loss = loss + variety_weight * (variety + self.hparams.variety_fde_weight * variety_fde)
            self.log_dict({"train/variety": variety, "train/variety_fde": variety_fde}, batch_size=len(batch))
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx}; "
                f"reconstruction NLL {rec_nll.item():.4g}, KL {kl.item():.4g}); lower model.lr or set "
                f"trainer.gradient_clip_val")
        self.log_dict({"train/loss": loss, "train/rec_nll": rec_nll, "train/kl": kl, "train/elbo": -(rec_nll + kl),
                       "train/beta": beta}, batch_size=len(batch), prog_bar=False)
        return loss

    def validation_step(self, batch: TrajectoryBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._latent_stats: list[Tensor] = []

    def on_validation_epoch_end(self) -> None:
        """KL per latent dimension and active units over the validation windows, with a collapse warning."""
        if not getattr(self, "_latent_stats", None):
            return
        sums = torch.stack(self._latent_stats).sum(0)
        if self._trainer is not None and getattr(self.trainer, "world_size", 1) > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")  # every process's windows
        stats = latent_diagnostics_from_sums(sums)
        self.latent_stats = stats  # the last validation's, for plots and reports
        self.log("val/active_units", float(stats["active_units"]))
        self.log_dict({f"val/kl_dim/{i}": v for i, v in enumerate(stats["kl_per_dim"].tolist())})
        if self.kl_weight() >= self.hparams.beta and stats["collapsed"] and not self.trainer.sanity_checking:
            log.warning("posterior collapse: the KL is below %.2f nats in every latent dimension, so z carries no "
                        "information about the future; try a longer model.kl_anneal_steps or a smaller "
                        "model.beta", COLLAPSE_NATS)

    def test_step(self, batch: TrajectoryBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        params = list(self.parameters())
        # The fused kernel updates every tensor in one pass (several times faster than the per-tensor loop on
        # the CPU, where many small tensors make the step overhead-bound); same algorithm, where it exists.
        fused = all(p.device.type in ("cpu", "cuda") for p in params) or None
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay,
                                      fused=fused)
        every = self.hparams.lr_decay_steps
        if every is None:  # once per epoch
            scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.hparams.lr_decay)
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        # A little every step: lr_decay over each `every` steps, whatever an epoch's length.
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.hparams.lr_decay ** (1.0 / every))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _agent_frame(self, batch: TrajectoryBatch) -> tuple[TrajectoryBatch, Tensor | None, Tensor | None]:
        """The batch in each agent's own frame, the rotation m (B, 2, 2) and the speed scale (B,) used:
        positions p become (p - last observed) @ m / scale. Without heading_frame m is the identity; without
        speed_frame the scale is None; with neither the batch is returned as is, m None."""
        heading, speed = self.hparams.heading_frame, self.hparams.speed_frame
        if not (heading or speed):
            return batch, None, None
        past = batch.past
        m = heading_rotation(past) if heading else torch.eye(2, dtype=past.dtype, device=past.device).expand(
            past.shape[0], 2, 2)
        scale = speed_scale(past, self.hparams.dt) if speed else None
        to_frame = m if scale is None else m / scale[:, None, None]
        return batch.transformed(to_frame, past[:, -1], keep_pivot=False), m, scale

    def _frame_to_metres_nll(self, scale: Tensor | None) -> Tensor | float:
        """Nats to add to an NLL of the future in the speed frame to get it in metres: -log |d frame / d world|
        = 2 * T_pred * log(scale) (each of the T_pred points shrinks by 1 / scale along both axes)."""
        return 0.0 if scale is None else 2 * self.hparams.pred_len * torch.log(scale)

    def _decode(self, context: Tensor, z: Tensor, origin: Tensor) -> Distribution:
        """p(y | x, z) for z with leading sample dimensions: z (..., B, D) -> event (T_pred, 2). The decoder
        broadcasts context (B, C) and origin (B, 2) against z itself."""
        return self.generation_net(context, z, origin)

    def _evaluate(self, batch: TrajectoryBatch, split: str) -> None:
        k = self.hparams.num_eval_samples
        samples = self.sample(batch, num_samples=k)
        cv = constant_velocity(batch.past, self.hparams.pred_len).unsqueeze(1)
        likely = self.most_likely(batch).unsqueeze(1)
        terms = self.elbo_terms(batch)
        if split == "val" and hasattr(self, "_latent_stats"):
            self._latent_stats.append(latent_sums(self.posterior_mean(batch), terms["kl_per_dim"]))
        per_window = {  # (B,) each
            f"min_ade_{k}": min_ade(samples, batch.future),
            f"min_fde_{k}": min_fde(samples, batch.future),
            "ml_ade": min_ade(likely, batch.future),
            "ml_fde": min_fde(likely, batch.future),
            "cv_ade": min_ade(cv, batch.future),
            "cv_fde": min_fde(cv, batch.future),
            "nelbo": terms["rec_nll"] + terms["kl_per_dim"].sum(-1) + terms["kl_rest"],
        }
        s = self.hparams.num_eval_importance
        if s:
            per_window[f"nll_iwae_{s}"] = self.importance_nll(batch, s)
        metrics = self.val_metrics if split == "val" else self.test_metrics
        for name, values in per_window.items():
            metrics[name].update(values)
        self.log_dict(metrics, batch_size=len(batch), prog_bar=split == "val")
