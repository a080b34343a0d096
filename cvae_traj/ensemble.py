"""One forecaster from several models trained apart: the equal mixture of their futures.

    python -m cvae_traj.ensemble 'ckpt_paths=[seed0.ckpt,seed1.ckpt,seed2.ckpt]' output=ensemble.ckpt

Models of the same shape (the same options but for the seed) trained on the same data agree where their training
held the answer and disagree on what it did not show, so the mixture of their draws is wider on a new scene and
about as wide as each on a familiar one (models.ensemble.EnsembleVAE). The checkpoint written loads with
`load_model` and predicts, evaluates and calibrates as any other; `python train.py model.ensemble=3` trains the
members together instead, in one run.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import hydra
import lightning as L
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from cvae_traj.cli import checkpoint_output, run_or_exit
from cvae_traj.errors import InputError
from cvae_traj.forecast import load_model
from cvae_traj.io import atomic_path
from cvae_traj.system import TrajectoryCVAE

log = logging.getLogger(__name__)
# The options that shape a model's networks and draws: members must agree on each.
SHAPE_HPARAMS = ("obs_len", "pred_len", "dt", "hidden_dim", "latent_dim", "prior_components", "social",
                 "decoder_min_scale", "heading_frame", "speed_frame", "speed_floor", "prior_temperature", "min_history",
                 "prior_weight_net")


def combine(models: Sequence[TrajectoryCVAE]) -> TrajectoryCVAE:
    """An ensemble TrajectoryCVAE whose members are the networks of `models` (an ensemble among them gives all its
    members), in eval mode. InputError if there are fewer than two or they differ in an option of SHAPE_HPARAMS.
    Learned representatives are left out (an ensemble clusters its pooled draws); training-only options are the
    first model's."""
    members = [member for model in models for member in model.members]
    if len(members) < 2:
        raise InputError(f"an ensemble needs at least 2 models, got {len(members)}")
    first = models[0].hparams
    for i, model in enumerate(models[1:], start=1):
        differ = [f"{k}={model.hparams.get(k)!r} (model 0: {first.get(k)!r})" for k in SHAPE_HPARAMS
                  if model.hparams.get(k) != first.get(k)]
        if differ:
            raise InputError(f"model {i} differs from model 0 in {', '.join(differ)}: ensemble members must be "
                             f"trained with the same options but the seed")
    ensemble = TrajectoryCVAE(**(dict(first) | {"ensemble": len(members), "learned_representatives": None}))
    for target, source in zip(ensemble.members, members):
        state = {k: v for k, v in source.state_dict().items() if not k.startswith("representative_net.")}
        target.load_state_dict(state)
    return ensemble.eval()


def write_checkpoint(model: TrajectoryCVAE, output: str | Path, sources: Sequence[str | Path] = ()) -> Path:
    """`model` as a checkpoint that load_model reads (weights and options, nothing to resume training), written
    atomically; `sources` recorded beside them."""
    content = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
               "pytorch-lightning_version": L.__version__, "ensemble_of": [str(s) for s in sources]}
    with atomic_path(output) as tmp:
        torch.save(content, tmp)
    return Path(output)


def build(cfg: DictConfig) -> TrajectoryCVAE:
    """Read cfg.ckpt_paths, combine them and write the ensemble to cfg.output."""
    output = checkpoint_output(cfg.output)
    paths = list(cfg.ckpt_paths) if not isinstance(cfg.ckpt_paths, str) else [cfg.ckpt_paths]
    model = combine([load_model(p) for p in paths])
    write_checkpoint(model, output, paths)
    log.info("wrote %s: an ensemble of %d members from %s", output, len(model.members), ", ".join(map(str, paths)))
    return model


ConfigStore.instance().store(name="ensemble", node={
    "defaults": [{"override hydra/job_logging": "stdout"}, "_self_"],
    "ckpt_paths": "???",
    "output": "ensemble.ckpt",
    "hydra": {"run": {"dir": "."}, "output_subdir": None},
})


@hydra.main(version_base="1.3", config_path=None, config_name="ensemble")
def main(cfg: DictConfig) -> None:
    run_or_exit(lambda: build(cfg))


if __name__ == "__main__":
    main()
