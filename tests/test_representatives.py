"""Learned representatives (cvae_traj.representatives): fitted with the model frozen, weighted by the draws nearest
each, kept in the checkpoint, faithful to the odds on a world whose odds are known, and a one-line CLI."""
import copy
import subprocess
import sys

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from cvae_traj import TrajectoryCVAE, load_model
from cvae_traj.clustering import cluster_futures
from cvae_traj.data import junction_tracks
from cvae_traj.odds import evaluate_odds
from cvae_traj.representatives import fit_representatives, write_represented_checkpoint
from conftest import ROOT


@pytest.fixture(scope="module")
def represented(synthetic_run):
    model, datamodule, ckpt = synthetic_run
    fitted = copy.deepcopy(model)
    fit = fit_representatives(fitted, datamodule.windows("train"), k=20, steps=1000, seed=0)
    return model, fitted, datamodule, ckpt, fit


def test_fitting_leaves_the_model_as_it_was_and_learns_to_cover(represented):
    model, fitted, datamodule, _, fit = represented
    batch = datamodule.windows("val").batch(np.arange(64))
    torch.manual_seed(0)
    before = model.sample(batch, 30)
    torch.manual_seed(0)
    torch.testing.assert_close(fitted.sample(batch, 30), before)  # faithful draws untouched
    assert all(torch.equal(a, b) for a, b in zip(model.cvae.state_dict().values(), fitted.cvae.state_dict().values()))
    # The learned futures cover the truth better than 20 draws do, and better than where they started.
    learned = fitted.cvae.learned_futures(batch)
    cover = lambda f: ((f - batch.future[:, None]).norm(dim=-1).mean(-1).min(1).values.mean().item())  # noqa: E731
    assert cover(learned) < cover(before[:, :20])
    start = copy.deepcopy(fitted)
    fit_representatives(start, datamodule.windows("train"), k=20, steps=1, seed=0)
    assert cover(learned) < 0.7 * cover(start.cvae.learned_futures(batch))
    assert fit.k == 20 and fit.steps == 1000 and fit.cover > 0


def test_weights_are_the_share_of_draws_nearest_each_and_other_k_are_clustered(represented):
    _, fitted, datamodule, _, _ = represented
    batch = datamodule.windows("val").batch(np.arange(16))
    torch.manual_seed(1)
    futures, weights = fitted.representatives(batch, 20, 100)
    torch.manual_seed(1)
    draws = fitted.cvae.representative_draws(batch, 100)
    torch.testing.assert_close(futures, fitted.cvae.learned_futures(batch))
    nearest = torch.cdist(draws[:, :, -1], futures[:, :, -1]).argmin(-1)
    torch.testing.assert_close(weights, torch.nn.functional.one_hot(nearest, 20).float().mean(1))
    torch.testing.assert_close(weights.sum(-1), torch.ones(16))
    torch.manual_seed(1)
    clustered = fitted.representatives(batch, 10, 100)
    torch.manual_seed(1)
    expected = cluster_futures(fitted.cvae.representative_draws(batch, 100), 10)
    for a, b in zip(clustered, expected):
        torch.testing.assert_close(a, b)


def test_the_onnx_sampler_gives_the_same_learned_representatives(represented):
    pytest.importorskip("onnxruntime")  # a dev dependency: CI installs it
    from cvae_traj.export import OnnxSampler

    _, fitted, datamodule, _, _ = represented
    batch = datamodule.windows("val").batch(np.arange(16))
    torch.manual_seed(2)
    expected = fitted.representatives(batch, 20, 100)
    torch.manual_seed(2)
    for a, b in zip(OnnxSampler(fitted).representatives(batch, 20, 100), expected):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_learned_weights_keep_the_odds_on_the_junction(represented):
    model, fitted, datamodule, _, _ = represented
    learned = evaluate_odds(fitted, datamodule, "val", draws=200, representative_draws=200).summary()
    clustered = evaluate_odds(model, datamodule, "val", draws=200, representative_draws=200).summary()
    # Every likely exit held with weight, and the exits' weights as near the truth as the clusters'.
    assert learned["coverage_representatives"] >= 0.95
    assert learned["tv_representatives"] <= clustered["tv_representatives"] + 0.02


def test_the_checkpoint_keeps_them_and_training_further_is_refused(represented, tmp_path):
    _, fitted, datamodule, ckpt, _ = represented
    out = write_represented_checkpoint(ckpt, fitted, tmp_path / "represented.ckpt")
    loaded = load_model(out)
    assert loaded.hparams.learned_representatives == 20 and load_model(ckpt).cvae.representative_net is None
    batch = datamodule.windows("val").batch(np.arange(8))
    torch.testing.assert_close(loaded.cvae.learned_futures(batch), fitted.cvae.learned_futures(batch))
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="not trained further"):
        trainer.fit(TrajectoryCVAE(learned_representatives=4), datamodule=datamodule)


def test_cli_fits_and_predict_writes_them_with_weights(synthetic_run, tmp_path):
    _, _, ckpt = synthetic_run
    junction_tracks(40, seed=3).drop(columns="branch").to_csv(tmp_path / "tracks.csv", index=False)
    run = lambda *args: subprocess.run([sys.executable, *map(str, args)], cwd=tmp_path, capture_output=True,  # noqa: E731
                                       text=True, timeout=300)
    result = run("-m", "cvae_traj.representatives", f"ckpt_path={ckpt}", f"input={tmp_path / 'tracks.csv'}",
                 f"output={tmp_path / 'r.ckpt'}", "k=5", "steps=20")
    assert result.returncode == 0, result.stderr[-3000:]
    result = run(ROOT / "predict.py", f"ckpt_path={tmp_path / 'r.ckpt'}", f"input={tmp_path / 'tracks.csv'}",
                 f"output={tmp_path / 'f.csv'}", "num_samples=5", "cluster_from=50")
    assert result.returncode == 0, result.stderr[-3000:]
    futures = pd.read_csv(tmp_path / "f.csv")
    per_agent = futures[futures["step"] == 1].groupby("agent_id")["weight"].sum()
    np.testing.assert_allclose(per_agent, 1.0, atol=1e-5)
    result = run("-m", "cvae_traj.representatives", f"ckpt_path={ckpt}", f"input={tmp_path / 'tracks.csv'}",
                 f"output={tmp_path / 'r.pt'}")
    assert result.returncode == 2 and result.stderr.strip() == (
        f"error: {tmp_path / 'r.pt'}: output must be a checkpoint ending in .ckpt")
