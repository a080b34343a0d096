"""Ensembles: the equal mixture of several models' futures, trained together or combined from checkpoints."""
from __future__ import annotations

import math
import subprocess
import sys

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cvae_traj import SyntheticDataModule, TrajectoryCVAE, load_model, predict_futures
from cvae_traj.batch import TrajectoryBatch
from cvae_traj.ensemble import combine, write_checkpoint
from cvae_traj.errors import InputError
from cvae_traj.export import export_onnx
from cvae_traj.models.ensemble import EnsembleVAE
from cvae_traj.representatives import fit_representatives
from tests.conftest import ROOT


class Constant(nn.Module):
    """A member whose every future is `value` everywhere, and whose bounds are given numbers."""

    def __init__(self, value: float, nll: float = 0.0, nelbo: float = 0.0) -> None:
        super().__init__()
        self.value, self.nll, self.nelbo = value, nll, nelbo
        self.obs_len, self.pred_len, self.dt, self.min_history, self.prior_temperature = 8, 12, 0.4, 8, 1.0

    def _futures(self, batch, n):
        return torch.full((len(batch), n, self.pred_len, 2), self.value)

    def sample(self, batch, n, decoder_noise=True):
        return self._futures(batch, n)

    def representative_draws(self, batch, n):
        return self._futures(batch, n)

    def importance_nll(self, batch, num_samples):
        return torch.full((len(batch),), self.nll)

    def elbo_terms(self, batch, variety_samples=0, variety_noise=False):
        return {"nelbo": torch.full((len(batch),), self.nelbo), "kl_per_dim": torch.zeros(len(batch), 2)}


def pasts(agents: int) -> TrajectoryBatch:
    return TrajectoryBatch.from_past(torch.zeros(agents, 8, 2))


def test_faithful_draws_pick_each_member_at_random_for_every_draw():
    torch.manual_seed(0)
    ensemble = EnsembleVAE([Constant(0.0), Constant(1.0), Constant(2.0)])
    # Which member drew each future, (calls, B, K): one agent's K draws take each member 1/3 of the time.
    member = torch.stack([ensemble.sample(pasts(20), 60)[..., 0, 0] for _ in range(100)])
    shares = torch.stack([(member == m).float().mean() for m in range(3)])
    assert torch.allclose(shares, torch.full((3,), 1 / 3), atol=0.02), shares
    # Not a fixed share per call (a stratified pick would be): the count of one agent's draws from member 0
    # varies as a binomial of 60 draws, variance 60 * 1/3 * 2/3 = 13.3.
    assert 8 < (member[:, 0] == 0).sum(-1).float().var() < 20
    # Shuffled per agent: the first draws are as mixed as the rest, so any of the K are a fair sample.
    first = member[..., :10]
    assert torch.allclose(torch.stack([(first == m).float().mean() for m in range(3)]), torch.full((3,), 1 / 3),
                          atol=0.03)
    assert not (member[:, :, :1] == member[:, :1, :1]).all()


def test_representatives_are_made_from_an_equal_share_of_each_member():
    torch.manual_seed(0)
    ensemble = EnsembleVAE([Constant(0.0), Constant(1.0), Constant(2.0)])
    for _ in range(5):
        member = ensemble.representative_draws(pasts(2), 200)[:, :, 0, 0]
        assert sorted((member[0] == m).sum().item() for m in range(3)) == [66, 67, 67]
    futures, weights = ensemble.representatives(pasts(2), 3, 200)
    np.testing.assert_allclose(sorted(futures[0, :, -1, 0].tolist()), [0.0, 1.0, 2.0])
    np.testing.assert_allclose(weights.sum(1), 1.0)
    np.testing.assert_allclose(sorted(weights[0].tolist()), [0.33, 0.335, 0.335])


def test_the_mixture_likelihood_is_the_mean_of_the_members_likelihoods():
    ensemble = EnsembleVAE([Constant(0.0, nll=1.0, nelbo=3.0), Constant(1.0, nll=4.0, nelbo=2.0)])
    batch = pasts(3)
    np.testing.assert_allclose(ensemble.importance_nll(batch), -math.log((math.exp(-1) + math.exp(-4)) / 2), rtol=1e-6)
    terms = ensemble.elbo_terms(batch)
    np.testing.assert_allclose(terms["nelbo"], -math.log((math.exp(-3) + math.exp(-2)) / 2), rtol=1e-6)
    assert terms["kl_per_dim"].shape == (3, 4)  # each member's latent dimensions side by side


def test_members_must_forecast_the_same_steps():
    short = Constant(0.0)
    short.pred_len = 8
    with pytest.raises(ValueError, match="same steps"):
        EnsembleVAE([Constant(0.0), short])
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleVAE([Constant(0.0)])


def test_training_an_ensemble_trains_every_member_on_its_own_loss():
    L.seed_everything(0)
    model = TrajectoryCVAE(ensemble=2)
    first, second = model.members
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))  # started apart
    before = [p.detach().clone() for p in second.parameters()]
    datamodule = SyntheticDataModule(num_train_agents=60, num_val_agents=20, num_test_agents=20)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    assert any(not torch.equal(b, p) for b, p in zip(before, second.parameters()))
    # Each member's gradient is its own loss's: a member's loss does not reach the other's weights.
    batch = next(iter(datamodule.train_dataloader()))
    model.zero_grad()
    first.elbo_terms(batch)["nelbo"].mean().backward()
    assert all(p.grad is None or not p.grad.any() for p in second.parameters())
    assert any(p.grad is not None and p.grad.any() for p in first.parameters())


def test_a_combined_checkpoint_loads_and_predicts_as_the_combination(synthetic_run, tmp_path):
    model, datamodule, ckpt = synthetic_run
    L.seed_everything(1)
    other = TrajectoryCVAE()  # another seed's weights (untrained: only the plumbing is tested here)
    write_checkpoint(other, tmp_path / "other.ckpt")
    ensemble = combine([load_model(ckpt), load_model(tmp_path / "other.ckpt")])
    for member, source in zip(ensemble.members, (model, other)):
        for name, value in source.cvae.state_dict().items():
            assert torch.equal(member.state_dict()[name], value), name
    write_checkpoint(ensemble, tmp_path / "ensemble.ckpt", [ckpt, tmp_path / "other.ckpt"])
    loaded = load_model(tmp_path / "ensemble.ckpt")
    assert loaded.hparams.ensemble == 2 and isinstance(loaded.cvae, EnsembleVAE)
    batch = datamodule.windows("test").batch(np.arange(5))
    torch.manual_seed(0)
    expected = ensemble.sample(batch, 10)
    torch.manual_seed(0)
    assert torch.equal(loaded.sample(batch, 10), expected)
    # predict_futures takes the loaded ensemble as any model: K futures per agent, each weighted 1/K.
    tracks = pd.DataFrame({"frame": np.repeat(np.arange(8), 2), "agent_id": np.tile([1, 2], 8),
                           "x": np.repeat(np.arange(8) * 0.5, 2), "y": np.tile([0.0, 3.0], 8)})
    out = predict_futures(loaded, tracks, num_samples=6)
    assert len(out) == 2 * 6 * 12 and np.allclose(out["weight"], 1 / 6) and np.isfinite(out[["x", "y"]]).all().all()


def test_combine_refuses_one_model_and_models_of_another_shape(synthetic_run, tmp_path):
    model, _, ckpt = synthetic_run
    with pytest.raises(InputError, match="at least 2 models"):
        combine([model])
    with pytest.raises(InputError, match="latent_dim=8 .model 0: 32."):
        combine([model, TrajectoryCVAE(latent_dim=8)])
    write_checkpoint(TrajectoryCVAE(latent_dim=8), tmp_path / "small.ckpt")
    done = subprocess.run([sys.executable, "-m", "cvae_traj.ensemble", f"ckpt_paths=[{ckpt},{tmp_path / 'small.ckpt'}]",
                           f"output={tmp_path / 'out.ckpt'}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: ") and \
        "latent_dim" in done.stderr
    assert not (tmp_path / "out.ckpt").exists()


def test_what_belongs_to_one_latent_is_refused_for_an_ensemble(tmp_path, synthetic_run):
    _, datamodule, _ = synthetic_run
    ensemble = TrajectoryCVAE(ensemble=2)
    with pytest.raises(InputError, match="exported sampler .* ensemble of 2"):
        export_onnx(ensemble, tmp_path / "x.onnx")
    with pytest.raises(InputError, match="learned representatives .* ensemble"):
        fit_representatives(ensemble, datamodule.windows("val"), steps=1)
    with pytest.raises(ValueError, match="ensemble must be a whole number"):
        TrajectoryCVAE(ensemble=0)
    assert not (tmp_path / "x.onnx").exists()


def test_an_ensemble_checkpoint_is_validated_and_tested_as_a_trained_run_is(tiny_train_cfg, tmp_path):
    from cvae_traj.training import score

    L.seed_everything(0)
    ensemble = TrajectoryCVAE(ensemble=2, num_eval_importance=4)
    write_checkpoint(ensemble, tmp_path / "ensemble.ckpt")
    metrics = score(tiny_train_cfg, tmp_path / "ensemble.ckpt")
    val, test = metrics["val"], metrics["test"]
    assert all(np.isfinite(v) for v in (val["val/nelbo"], val["val/nll_iwae_4"], test["test/min_ade_20"]))
    assert metrics["windows"]["test"] > 0 and metrics["trainable_parameters"] == sum(
        p.numel() for p in ensemble.parameters())
    batch = next(iter(SyntheticDataModule(num_train_agents=20, num_val_agents=20, num_test_agents=20).val_dataloader()))
    terms = ensemble.cvae.elbo_terms(batch)
    # Each agent's mixture bound lies within log 2 of its better member's (-log mean exp(-n_m) over 2 members).
    best = torch.stack([t["nelbo"] for t in terms["members"]]).min(0).values
    assert ((terms["nelbo"] >= best - 1e-4) & (terms["nelbo"] <= best + math.log(2) + 1e-4)).all()
