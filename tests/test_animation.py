"""Pictures of forecasts: one colour per agent, futures shaded by their probability, and the replay animation
that predict.py animate=true writes."""
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgba
from PIL import Image

from cvae_traj import TrajectoryCVAE
from cvae_traj.data.tracks import validate_tracks
from cvae_traj.forecast import predict
from cvae_traj.live import replay
from cvae_traj.plotting import agent_colours, animation_frames, future_alpha, plot_futures
from conftest import compose_config


def walkers() -> pd.DataFrame:
    """'a' walks frames 0-110, 'b' 30-110 with frame 70 missed, 'c' 0-50: on a grid of 10."""
    rows = []
    for f in range(0, 120, 10):
        rows.append((f, "a", f / 10, 0.0))
        if f >= 30 and f != 70:
            rows.append((f, "b", 0.0, f / 10))
        if f <= 50:
            rows.append((f, "c", -f / 10, 2.0))
    return pd.DataFrame(rows, columns=["frame", "agent_id", "x", "y"])


@pytest.fixture(scope="module")
def model() -> TrajectoryCVAE:
    torch.manual_seed(0)
    return TrajectoryCVAE(hidden_dim=16, latent_dim=4).eval()


def future_lines(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() == "-" and line.get_marker() in ("None", None, "")
            and len(line.get_xdata()) == 12]


def test_the_picture_gives_each_agent_its_colour_and_each_future_its_probability(model):
    table = validate_tracks(walkers())
    futures = pd.DataFrame({
        "agent_id": np.repeat(["a", "a", "c"], 12), "sample": np.repeat([0, 1, 0], 12),
        "step": np.tile(np.arange(1, 13), 3), "frame": np.tile(np.arange(60, 180, 10), 3),
        "x": np.arange(36, dtype=float), "y": np.zeros(36), "weight": np.repeat([0.8, 0.2, 1.0], 12)})
    ax = plot_futures(table, futures, at_step=5, obs_len=8).axes[0]
    lines = future_lines(ax)
    colours = agent_colours(table.agent_ids)
    assert [to_rgba(line.get_color())[:3] for line in lines] == [to_rgba(colours[a])[:3] for a in ("a", "a", "c")]
    assert colours["a"] != colours["c"]
    np.testing.assert_allclose([line.get_alpha() for line in lines], future_alpha([0.8, 0.2, 1.0]))
    assert future_alpha([0.05])[0] < future_alpha([0.4])[0] <= 0.9


def test_a_replay_has_one_frame_per_step_from_the_first_forecast(model):
    table = validate_tracks(walkers())
    torch.manual_seed(0)
    forecasts = list(replay(model, table, num_samples=3))
    # 'a' and 'c' have 8 consecutive positions first at step 7 (frame 70); the table ends at step 11.
    assert [step for step, _ in forecasts] == [7, 8, 9, 10, 11]
    assert set(forecasts[0][1]["agent_id"]) == {"a"} and set(forecasts[-1][1]["agent_id"]) == {"a", "b"}
    figures = list(animation_frames(table, forecasts, obs_len=8))
    assert len(figures) == 5
    limits = {(fig.axes[0].get_xlim(), fig.axes[0].get_ylim()) for fig in figures}
    assert len(limits) == 1  # the same view throughout
    first, last = (future_lines(fig.axes[0]) for fig in (figures[0], figures[-1]))
    assert to_rgba(first[0].get_color()) == to_rgba(last[0].get_color())  # 'a' keeps its colour


def test_predict_animate_writes_a_gif_of_every_forecast_frame(model, tmp_path):
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": "2.6.0"}, ckpt)
    walkers().to_csv(tmp_path / "tracks.csv", index=False)
    predict(compose_config("predict", [f"ckpt_path={ckpt}", f"input={tmp_path / 'tracks.csv'}",
                                       f"output={tmp_path / 'out.csv'}", "num_samples=3", "animate=true", "at_frame=90"]))
    with Image.open(tmp_path / "out.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 5  # frames 70 to 110, though the forecast is at 90
    assert (tmp_path / "out.mp4").exists() == (shutil.which("ffmpeg") is not None)
    assert set(pd.read_csv(tmp_path / "out.csv")["agent_id"]) == {"a"}  # b has only 6 positions by frame 90
