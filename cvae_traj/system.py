"""The training system: the conditional VAE (models.cvae.ConditionalVAE) trained on the conditional ELBO, with
its schedules, validation metrics and optimiser.

Batches are `cvae_traj.batch.TrajectoryBatch`es; any DataLoader that yields them can train this module.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.diagnostics import COLLAPSE_NATS, latent_diagnostics_from_sums, latent_sums
from cvae_traj.errors import InputError, TrainingDivergedError
from cvae_traj.metrics import constant_velocity, min_ade, min_fde
from cvae_traj.models.cvae import ConditionalVAE
from cvae_traj.models.ensemble import EnsembleVAE

log = logging.getLogger(__name__)
# The networks' names in checkpoints written before they moved into ConditionalVAE (the `cvae.` prefix).
_NETWORKS = ("history_encoder.", "social_encoder.", "prior_net.", "recognition_net.", "generation_net.")
# Options whose default changed after checkpoints were written without them: the value those were trained with.
LEGACY_HPARAMS = {"prior_components": 1, "prior_weight_net": False}


class TrajectoryCVAE(L.LightningModule):
    """Multi-modal trajectory forecaster: K futures per agent from z ~ p(z|x), y ~ p(y|x,z).

    The defaults are the general recipe, chosen on the built-in worlds whose odds are known
    (benchmarks/known_odds.py): the plain ELBO with a mixture prior, so that the share of draws that take a
    mode is its probability. The ETH/UCY experiment adds its benchmark-specific pieces on top.

    The networks live in `self.cvae` (models.cvae.ConditionalVAE, a plain nn.Module, which export and inference
    use); this class adds the training: the loss and its schedules, the validation metrics and the optimiser.

    Args:
        obs_len, pred_len, dt: observed and predicted steps, and the seconds between steps.
        prior_components: the prior p(z|x) is a mixture of this many diagonal Gaussians with weights that depend
            on x (1: one Gaussian), so that separate futures get separate lumps of prior mass with their own odds.
            Sampling then takes one more noise channel per draw (noise_dim), which picks the component. Its
            KL(q || p) enters the ELBO sampled, log q(z) - log p(z) at the reparameterised z
            (objectives.elbo_terms), so that the weights learn the odds.
        prior_weight_net: with a mixture, compute its weights with a network of their own (two hidden layers on
            the context) rather than with the layer that also gives the components' means and spreads. Sharing
            it, the odds followed a few centimetres of tracking noise and stayed soft after a turn had begun
            (benchmarks/HISTORY.md). False builds checkpoints from before the option.
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
        speed_floor: with speed_frame, agents observed slower than this (m/s), people standing among them, are
            scaled as if they walked at it: the smaller, the larger a stander's small moves are in the frame.
        prior_temperature: multiplies the standard deviation of every component of p(z|x) when sampling and
            scoring, leaving the mixture weights, each mode's odds, as they are: above 1 the draws spread wider
            within each mode. Trained at 1; `python -m cvae_traj.calibration` fits it on recorded tracks of a new
            site (cvae_traj.calibration) and writes a checkpoint that holds it.
        min_history: the fewest observed steps an agent needs to be forecast (None: obs_len). Below obs_len, the
            model is trained on histories cut short at random (short_history_share of the training windows, each
            to a length uniform in min_history .. obs_len - 1); the steps before a short history are filled in by
            running it backwards at its mean velocity, and the history encoder is told which steps were seen.
        short_history_share: the share of training windows whose history is cut short, with min_history below
            obs_len; the rest train on full histories, the case of every agent that has been around a while.
        learned_representatives: K, for a model whose `representatives(batch, K)` are the decoder's futures at K
            latent codes learned to cover where agents go (models.latent.RepresentativeNet), rather than clusters
            of draws. Fitted after training, the rest of the model frozen: `python -m cvae_traj.representatives`
            (None: none; other K are clustered as without).
        ensemble: train this many members from different starting weights, each on its own ELBO, and forecast
            with the equal mixture of them (models.ensemble.EnsembleVAE; 1: one model). Members agree where the
            training scenes held the answer and disagree on a new scene, so the mixture's draws widen there (costs
            `ensemble` times the training and the same per draw). `python -m cvae_traj.ensemble` builds one from
            models trained apart.
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
        speed_floor: float = 0.5,
        prior_temperature: float = 1.0,
        min_history: int | None = None,
        short_history_share: float = 0.5,
        learned_representatives: int | None = None,
        prior_weight_net: bool = True,
        ensemble: int = 1,
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
        if not 0 <= short_history_share <= 1:
            raise ValueError(f"short_history_share must be a share of the training windows, in [0, 1], got "
                             f"{short_history_share!r}")
        if lr_decay_steps is not None and not lr_decay_steps > 0:
            raise ValueError(f"lr_decay_steps must be a positive number of optimiser steps or None, got "
                             f"{lr_decay_steps!r}")
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
            raise ValueError(f"ensemble must be a whole number of members, at least 1, got {ensemble!r}")
        if ensemble > 1 and learned_representatives is not None:
            raise ValueError("learned_representatives live in one model's latent: an ensemble clusters its pooled "
                             "draws instead (leave learned_representatives unset)")
        members = [ConditionalVAE(obs_len, pred_len, dt, hidden_dim, latent_dim, prior_components, social,
                                  decoder_min_scale, heading_frame, speed_frame, prior_temperature, min_history,
                                  learned_representatives, prior_weight_net, speed_floor) for _ in range(ensemble)]
        self.cvae = members[0] if ensemble == 1 else EnsembleVAE(members)
        # Means over windows that stay right across processes: each holds a sum and a count, all-reduced
        # at epoch end, so unequal shards are weighted by their windows (not averaged per process).
        names = [f"min_ade_{num_eval_samples}", f"min_fde_{num_eval_samples}", "ml_ade", "ml_fde", "cv_ade", "cv_fde",
                 "nelbo"] + ([f"nll_iwae_{num_eval_importance}"] if num_eval_importance else [])
        self.val_metrics = MetricCollection({n: MeanMetric() for n in names}, prefix="val/")
        self.test_metrics = MetricCollection({n: MeanMetric() for n in names}, prefix="test/")

    def forward(self, batch: TrajectoryBatch | Tensor, num_samples: int = 20) -> Tensor:
        return self.cvae.sample(batch, num_samples=num_samples)

    # The model's sampling API, so that a loaded checkpoint samples as the module does (models.cvae).
    def sample(self, batch: TrajectoryBatch | Tensor, num_samples: int = 20, decoder_noise: bool = True) -> Tensor:
        """ConditionalVAE.sample: K faithful futures per agent, (B, K, T_pred, 2)."""
        return self.cvae.sample(batch, num_samples, decoder_noise)

    def representatives(self, batch: TrajectoryBatch | Tensor, num_samples: int = 20,
                        draws: int = 200) -> tuple[Tensor, Tensor]:
        """ConditionalVAE.representatives: K futures (B, K, T_pred, 2) with their weights (B, K)."""
        return self.cvae.representatives(batch, num_samples, draws)

    def most_likely(self, batch: TrajectoryBatch | Tensor) -> Tensor:
        """ConditionalVAE.most_likely: one future per agent, (B, T_pred, 2)."""
        return self.cvae.most_likely(batch)

    def importance_nll(self, batch: TrajectoryBatch, num_samples: int = 100) -> Tensor:
        """ConditionalVAE.importance_nll: the bound on -log p(y|x), nats per agent (B,)."""
        return self.cvae.importance_nll(batch, num_samples)

    def sample_from_noise(self, batch: TrajectoryBatch, z_noise: Tensor, y_noise: Tensor) -> Tensor:
        """ConditionalVAE.sample_from_noise: the futures that standard normal noise makes."""
        return self.single_model("sample_from_noise").sample_from_noise(batch, z_noise, y_noise)

    @property
    def noise_dim(self) -> int:
        return self.single_model("noise_dim").noise_dim

    @property
    def members(self) -> list[ConditionalVAE]:
        """The networks trained: the one ConditionalVAE, or an ensemble's members."""
        return list(self.cvae.members) if isinstance(self.cvae, EnsembleVAE) else [self.cvae]

    def single_model(self, what: str) -> ConditionalVAE:
        """self.cvae, or InputError naming `what` for an ensemble, whose draws come from several latents."""
        if isinstance(self.cvae, EnsembleVAE):
            raise InputError(f"{what} belongs to one model's latent, and this is an ensemble of "
                             f"{len(self.cvae.members)}: use one member (model.cvae.members[i])")
        return self.cvae

    def kl_weight(self) -> float:
        """beta, ramped up linearly over the first kl_anneal_steps optimiser steps."""
        steps = self.hparams.kl_anneal_steps
        ramp = 1.0 if steps <= 0 else min(1.0, (self.global_step + 1) / steps)
        return self.hparams.beta * ramp

    def shortened(self, batch: TrajectoryBatch) -> TrajectoryBatch:
        """A training batch with short_history_share of its agents' histories cut to a length uniform in
        min_history .. obs_len - 1 (the batch as is when the model needs full histories)."""
        shortest, obs_len = self.cvae.min_history, self.hparams.obs_len
        if shortest >= obs_len:
            return batch
        b, device = len(batch), batch.past.device
        cut = torch.rand(b, device=device) < self.hparams.short_history_share
        length = torch.randint(shortest, obs_len, (b,), device=device)
        history = torch.where(cut, length, torch.full_like(length, obs_len))
        if batch.history is not None:
            history = torch.minimum(history, batch.history)
        return batch.with_history(history)

    def on_fit_start(self) -> None:
        if any(member.representative_net is not None for member in self.members):
            raise ValueError("a model with learned_representatives is not trained further: train it without them, "
                             "then fit them with python -m cvae_traj.representatives")

    def training_step(self, batch: TrajectoryBatch, batch_idx: int) -> Tensor:
        """The negative ELBO (plus the best-of-many term, if weighted) averaged over the batch; an ensemble's
        members each on their own, the mean of their losses (each member's gradient is its own loss's)."""
        batch = self.shortened(batch)
        variety_weight = self.hparams.variety_weight
        terms = [member.elbo_terms(batch, variety_samples=self.hparams.variety_samples if variety_weight else 0,
                                   variety_noise=self.hparams.variety_noise) for member in self.members]
        mean = lambda name: torch.stack([t[name].mean() for t in terms]).mean()  # noqa: E731 - over agents, members
        rec_nll = mean("rec_nll")
        kl = torch.stack([t["kl_per_dim"].mean(0).sum() + t["kl_rest"].mean() for t in terms]).mean()
        beta = self.kl_weight()
        loss = rec_nll + beta * kl
        if variety_weight:
            variety = mean("variety")
            variety_fde = mean("variety_fde")
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

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> TrajectoryCVAE:
        """Lightning's load_from_checkpoint, with each option a checkpoint file predates (LEGACY_HPARAMS) set to
        the value it was trained with rather than today's default, so that its weights fit the networks built.
        cvae_traj.load_model reads checkpoints this way and checks them first."""
        missing = [k for k in LEGACY_HPARAMS if k not in kwargs]
        if missing and isinstance(checkpoint_path, (str, Path)) and Path(checkpoint_path).is_file():
            stored = torch.load(checkpoint_path, map_location="cpu", weights_only=True).get("hyper_parameters", {})
            kwargs |= {k: LEGACY_HPARAMS[k] for k in missing if k not in stored}
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints written before the networks moved into ConditionalVAE name them without `cvae.`."""
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(_NETWORKS)]:
            state[f"cvae.{key}"] = state.pop(key)

    def _evaluate(self, batch: TrajectoryBatch, split: str) -> None:
        k = self.hparams.num_eval_samples
        samples = self.cvae.sample(batch, num_samples=k)
        cv = constant_velocity(batch.past, self.hparams.pred_len).unsqueeze(1)
        likely = self.cvae.most_likely(batch).unsqueeze(1)
        terms = self.cvae.elbo_terms(batch)
        if split == "val" and hasattr(self, "_latent_stats"):
            self._latent_stats.append(latent_sums(self.cvae.posterior_mean(batch), terms["kl_per_dim"]))
        per_window = {  # (B,) each
            f"min_ade_{k}": min_ade(samples, batch.future),
            f"min_fde_{k}": min_fde(samples, batch.future),
            "ml_ade": min_ade(likely, batch.future),
            "ml_fde": min_fde(likely, batch.future),
            "cv_ade": min_ade(cv, batch.future),
            "cv_fde": min_fde(cv, batch.future),
            "nelbo": terms["nelbo"],
        }
        s = self.hparams.num_eval_importance
        if s:
            per_window[f"nll_iwae_{s}"] = self.cvae.importance_nll(batch, s)
        metrics = self.val_metrics if split == "val" else self.test_metrics
        for name, values in per_window.items():
            metrics[name].update(values)
        self.log_dict(metrics, batch_size=len(batch), prog_bar=split == "val")
