"""train.py and predict.py as a user runs them: end to end, and one-line errors without tracebacks."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cvae_traj.data import junction_tracks
from conftest import ROOT

TINY = ["experiment=smoke", "logger=none", "data.num_train_agents=60", "data.num_val_agents=20",
        "data.num_test_agents=20"]


def run(script: str, *args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_train_then_predict_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    result = run("train.py", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "const.vel" in result.stdout and "min_ade_20" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_checkpoint"] == "checkpoints/best.ckpt"
    assert metrics["windows"] == {"train": 300, "val": 100, "test": 100}
    assert {"test/min_ade_20", "test/min_fde_20", "test/cv_ade"} <= set(metrics["test"])
    assert "hidden_dim: 64" in (run_dir / "config.yaml").read_text()
    assert (run_dir / "kl_per_dim.png").read_bytes()[:4] == b"\x89PNG"

    tracks = junction_tracks(20, seed=9).drop(columns="branch")
    tracks.to_csv(tmp_path / "tracks.csv", index=False)
    result = run("predict.py", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", f"input={tmp_path / 'tracks.csv'}",
                 f"output={tmp_path / 'futures.csv'}", "num_samples=5", "plot=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    futures = pd.read_csv(tmp_path / "futures.csv")
    assert list(futures.columns) == ["agent_id", "sample", "step", "frame", "x", "y", "weight"]
    # Faithful draws: each of the 5 stands for a fifth of the agent's probability.
    assert np.allclose(futures["weight"], 0.2)
    assert np.allclose(futures.groupby(["agent_id", "step"])["weight"].sum(), 1.0)
    last = tracks["frame"].max()
    current = tracks[tracks["frame"] > last - 8].groupby("agent_id").size()
    assert set(futures["agent_id"]) == set(current[current == 8].index)
    assert futures["frame"].min() == last + 1 and futures["step"].max() == 12
    assert (tmp_path / "futures.png").stat().st_size > 1000
    # This model was trained on whole histories: asking for shorter is one line, and nothing is written.
    result = run("predict.py", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", f"input={tmp_path / 'tracks.csv'}",
                 f"output={tmp_path / 'short.csv'}", "min_history=2", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip() == ("error: min_history=2 is too short for this model: it forecasts only agents with "
                                     "all 8 observed steps (it was trained on full histories; one trained with "
                                     "model.min_history=2 forecasts from 2)")
    assert not (tmp_path / "short.csv").exists()


def test_a_model_trained_on_short_histories_forecasts_every_agent_seen_twice(tmp_path):
    run_dir = tmp_path / "run"
    result = run("train.py", *TINY, "test=false", "model.min_history=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    tracks = junction_tracks(20, seed=9).drop(columns="branch")
    tracks.to_csv(tmp_path / "tracks.csv", index=False)
    last = tracks["frame"].max()
    recent = tracks[tracks["frame"] > last - 8]
    # Consecutive positions ending at the last frame (the junction's tracks have no gaps).
    run_length = recent[recent["agent_id"].isin(recent.loc[recent["frame"] == last, "agent_id"])].groupby(
        "agent_id").size()
    assert (run_length < 8).any() and (run_length == 8).any()
    for min_history, expected in ((None, run_length[run_length >= 2]), (5, run_length[run_length >= 5])):
        option = [] if min_history is None else [f"min_history={min_history}"]
        result = run("predict.py", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
                     f"input={tmp_path / 'tracks.csv'}", f"output={tmp_path / 'futures.csv'}", "num_samples=3",
                     *option, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert set(pd.read_csv(tmp_path / "futures.csv")["agent_id"]) == set(expected.index)


def test_a_newcomer_checkpoint_forecasts_the_agents_the_whole_history_one_cannot(tmp_path):
    shipped = ROOT / "checkpoints"
    junction_tracks(20, seed=9).drop(columns="branch").to_csv(tmp_path / "tracks.csv", index=False)
    common = [f"ckpt_path={shipped / 'eth_ucy' / 'zara1.ckpt'}", f"input={tmp_path / 'tracks.csv'}", "num_samples=3"]
    assert run("predict.py", *common, f"output={tmp_path / 'whole.csv'}", cwd=tmp_path).returncode == 0
    result = run("predict.py", *common, f"newcomer_ckpt_path={shipped / 'eth_ucy_short' / 'zara1.ckpt'}",
                 f"output={tmp_path / 'pair.csv'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    whole, pair = pd.read_csv(tmp_path / "whole.csv"), pd.read_csv(tmp_path / "pair.csv")
    assert set(pair["agent_id"]) > set(whole["agent_id"])  # newcomers forecast too
    # Agents seen 8 times keep the whole-history model's futures (their noise is drawn first).
    kept = pair[pair["agent_id"].isin(whole["agent_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, whole)
    result = run("predict.py", *common, f"newcomer_ckpt_path={shipped / 'eth_ucy' / 'zara2.ckpt'}",
                 f"output={tmp_path / 'bad.csv'}", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: the newcomer model was trained on whole histories only (8 steps): train it with model.min_history=2 "
        "to forecast newcomers")
    assert not (tmp_path / "bad.csv").exists()


def test_unknown_scene_is_one_line(tmp_path):
    result = run("train.py", "data=eth_ucy", "data.scene=atlantis", "logger=none", f"hydra.run.dir={tmp_path}",
                 cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == ("error: unknown ETH/UCY scene 'atlantis'; choose one of "
                                                      "eth, hotel, univ, zara1, zara2")
    assert "Traceback" not in result.stdout + result.stderr


def test_bad_csv_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "tracks.csv").write_text("frame,agent_id,x,y\n0,1,0.0,0.0\n10,1,nan,0.0\n")
    result = run("predict.py", f"ckpt_path={tmp_path / 'missing.ckpt'}", f"input={tmp_path / 'tracks.csv'}",
                 f"output={tmp_path / 'out.csv'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.ckpt'}: checkpoint not found"
    assert "Traceback" not in result.stdout + result.stderr and not (tmp_path / "out.csv").exists()


def test_multirun_sweep_writes_one_run_folder_per_value(tmp_path):
    result = run("train.py", "-m", *TINY, "test=false", "model.latent_dim=4,8", f"hydra.sweep.dir={tmp_path}",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for job, latent_dim in ((0, 4), (1, 8)):
        assert f"latent_dim: {latent_dim}" in (tmp_path / str(job) / "config.yaml").read_text()
        metrics = json.loads((tmp_path / str(job) / "metrics.json").read_text())
        assert "test" not in metrics and metrics["val"]["val/min_ade_20"] > 0


def test_train_in_a_relative_run_folder(tiny_train_cfg, tmp_path, monkeypatch):
    """A relative paths.output_dir (as the benchmark uses) still names the chosen checkpoint relative to it."""
    from omegaconf import open_dict

    from cvae_traj.training import train

    monkeypatch.chdir(tmp_path)
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.paths.output_dir = "runs/one"
        tiny_train_cfg.test = False
    metrics = train(tiny_train_cfg)
    assert metrics["best_checkpoint"] == "checkpoints/best.ckpt"
    assert (tmp_path / "runs/one" / metrics["best_checkpoint"]).is_file()
    assert (tmp_path / "runs/one/metrics.json").is_file()


def test_non_finite_loss_stops_training_naming_the_step(tiny_train_cfg, tmp_path, monkeypatch):
    from cvae_traj.errors import TrainingDivergedError
    from cvae_traj.models.cvae import ConditionalVAE
    from cvae_traj.training import train

    real, training_calls = ConditionalVAE.elbo_terms, []

    def poisoned(self, batch, **kwargs):
        terms = real(self, batch, **kwargs)
        if self.training:  # once per training step; validation runs in eval mode
            training_calls.append(1)
            if len(training_calls) == 4:  # step 3
                terms["rec_nll"] = terms["rec_nll"] * float("nan")
        return terms

    monkeypatch.setattr(ConditionalVAE, "elbo_terms", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at step 3 \(epoch 0, batch 3"):
        train(tiny_train_cfg)
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing saved from the broken run


def test_a_required_option_left_out_is_a_one_line_error(tmp_path):
    """predict.py and the export command without ckpt_path name the missing option on one line, no traceback."""
    for command in (["predict.py", f"input={tmp_path / 'tracks.csv'}"], ["-m", "cvae_traj.export"]):
        done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2, done.stderr[-1000:]
        assert done.stderr.strip() == "error: missing option ckpt_path=... (give it on the command line)"
