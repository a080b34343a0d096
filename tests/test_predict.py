"""predict_futures and predict(cfg): which agents, what columns, and no output on bad input."""
import numpy as np
import pandas as pd
import pytest
import torch

from cvae_traj import TrajectoryCVAE, predict_futures
from cvae_traj.errors import CheckpointError, InputError
from cvae_traj.data.tracks import load_recent_tracks, validate_tracks
from cvae_traj.data.current import FrameAgents, current_windows
from cvae_traj.forecast import iter_futures, load_model, predict
from cvae_traj.io import write_futures
from conftest import compose_config

K, T_PRED = 4, 12


def scene() -> pd.DataFrame:
    """Agent 'a' has 8 consecutive positions ending at the last frame; 'b' a gap; 'c' ends early; 'd' too short."""
    rows = []
    for f in range(0, 100, 10):
        rows.append((f, "a", f / 10, 0.0))
        if f != 60:
            rows.append((f, "b", 0.0, f / 10))
        if f <= 80:
            rows.append((f, "c", -f / 10, 1.0))
        if f >= 50:
            rows.append((f, "d", 3.0, -f / 10))
    return pd.DataFrame(rows, columns=["frame", "agent_id", "x", "y"])


@pytest.fixture(scope="module")
def model() -> TrajectoryCVAE:
    torch.manual_seed(0)
    return TrajectoryCVAE(pred_len=T_PRED).eval()


def test_predicts_only_agents_with_full_history_at_last_frame(model):
    torch.manual_seed(0)
    out = predict_futures(model, scene(), num_samples=K)
    assert list(out.columns) == ["agent_id", "sample", "step", "frame", "x", "y", "weight"]
    assert set(out["agent_id"]) == {"a"}
    assert len(out) == K * T_PRED
    assert sorted(out["sample"].unique()) == list(range(K))
    first = out[out["sample"] == 0]
    np.testing.assert_array_equal(first["step"], np.arange(1, T_PRED + 1))
    np.testing.assert_array_equal(first["frame"], 90 + 10 * np.arange(1, T_PRED + 1))


def test_at_frame_ignores_rows_after_it(model):
    df = scene()
    torch.manual_seed(5)
    out = predict_futures(model, df, num_samples=K, at_frame=80)
    assert set(out["agent_id"]) == {"a", "c"}
    assert out["frame"].min() == 90
    later = df.assign(x=df["x"].where(df["frame"] <= 80, 1e3))
    torch.manual_seed(5)
    pd.testing.assert_frame_equal(predict_futures(model, later, num_samples=K, at_frame=80), out)
    earlier = df.assign(x=df["x"].where(df["frame"] != 80, 1e3))
    torch.manual_seed(5)
    assert not predict_futures(model, earlier, num_samples=K, at_frame=80).equals(out)


def test_no_agent_with_enough_history(model):
    df = scene()
    with pytest.raises(InputError, match="no agent has 8 consecutive positions ending at frame 30"):
        predict_futures(model, df, at_frame=30)
    with pytest.raises(InputError, match="at_frame 35 is not a frame of the table"):
        predict_futures(model, df, at_frame=35)


def test_timestamps_give_future_times(model):
    df = scene()
    df["frame"] = df["frame"] / 25.0  # seconds, 0.4 s apart
    out = predict_futures(model, df, num_samples=2, time_unit="seconds")
    np.testing.assert_allclose(out[out["sample"] == 0]["frame"], 3.6 + 0.4 * np.arange(1, T_PRED + 1))


@pytest.fixture
def predict_cfg(tmp_path, model):
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": "2.6.0"}, ckpt)
    scene().to_csv(tmp_path / "tracks.csv", index=False)
    return lambda **kw: compose_config("predict", [f"ckpt_path={ckpt}", f"input={tmp_path / 'tracks.csv'}",
                                                   f"output={tmp_path / 'out.csv'}", "num_samples=3"]
                                       + [f"{k}={v}" for k, v in kw.items()])


def test_predict_writes_csv_parquet_and_plot(predict_cfg, tmp_path):
    predict(predict_cfg(plot="true"))
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["agent_id", "sample", "step", "frame", "x", "y", "weight"] and len(out) == 3 * T_PRED
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"
    predict(predict_cfg(output=tmp_path / "out.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet")[["agent_id", "step"]],
                                  out[["agent_id", "step"]])


def test_predict_writes_clustered_futures(predict_cfg, tmp_path):
    predict(predict_cfg(cluster_from=30))
    out = pd.read_csv(tmp_path / "out.csv")
    assert sorted(out["sample"].unique()) == [0, 1, 2] and len(out) == 3 * T_PRED
    # Each representative's weight is its cluster's share of the 30 draws, the same at every step.
    per_future = out.groupby("sample")["weight"]
    assert (per_future.nunique() == 1).all() and per_future.first().sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(per_future.first() * 30, (per_future.first() * 30).round(), atol=1e-4)
    with pytest.raises(InputError, match=r"cluster_from \(2\) must be at least num_samples \(3\)"):
        predict(predict_cfg(cluster_from=2, output=tmp_path / "other.csv"))
    assert not (tmp_path / "other.csv").exists()


@pytest.mark.parametrize("edit, error, message", [
    (lambda df: df.rename(columns={"x": "px"}), InputError, r"missing column\(s\) 'x'"),
    (lambda df: df.assign(x=df["x"].astype(object).where(df.index != 3, "abc")), InputError, "non-numeric value 'abc'"),
    (lambda df: df.assign(y=df["y"].where(df.index != 5, np.nan)), InputError, "column 'y' has NaN"),
    (lambda df: df.assign(x=df["x"].where(df.index != 5, np.inf)), InputError, "column 'x' has inf"),
    (lambda df: pd.concat([df, df.iloc[-1:]]), InputError, "duplicate rows for agent d at frame 90"),
    (lambda df: df.assign(frame=df["frame"].where(df.index != 4, 17)), InputError, "frame 17 of agent .* is off the grid"),
    (lambda df: df[df["frame"] < 40], InputError, "no agent has 8 consecutive positions"),
])
@pytest.mark.parametrize("chunk_rows", [1000000, 3])
def test_bad_tables_leave_no_output(predict_cfg, tmp_path, edit, error, message, chunk_rows):
    edit(scene()).to_csv(tmp_path / "tracks.csv", index=False)
    with pytest.raises(error, match=message):
        predict(predict_cfg(plot="true", chunk_rows=chunk_rows))
    assert not any(tmp_path.glob("out*"))


def test_bad_checkpoints_and_paths(predict_cfg, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        predict(predict_cfg(ckpt_path=tmp_path / "missing.ckpt"))
    (tmp_path / "corrupt.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        predict(predict_cfg(ckpt_path=tmp_path / "corrupt.ckpt"))
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {"latent_dim": 3},
                "pytorch-lightning_version": "2.6.0"}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="does not fit TrajectoryCVAE"):
        predict(predict_cfg(ckpt_path=tmp_path / "other.ckpt"))
    model = TrajectoryCVAE()
    state = model.state_dict()
    state["cvae.prior_net.net.0.weight"][0, 0] = float("nan")
    torch.save({"state_dict": state, "hyper_parameters": dict(model.hparams), "pytorch-lightning_version": "2.6.0"},
               tmp_path / "diverged.ckpt")
    with pytest.raises(CheckpointError, match=r"diverged.ckpt: non-finite weights in cvae.prior_net.net.0.weight$"):
        predict(predict_cfg(ckpt_path=tmp_path / "diverged.ckpt"))
    with pytest.raises(InputError, match="nope.csv: file not found"):
        predict(predict_cfg(input=tmp_path / "nope.csv"))
    with pytest.raises(InputError, match=r"output must end in \.csv or \.parquet"):
        predict(predict_cfg(output=tmp_path / "out.xlsx"))
    assert not any(tmp_path.glob("out*"))


def crowd(agents: int = 40, end: int = 40) -> pd.DataFrame:
    """Agents entering a few frames apart, all walking straight until the last frame, rows shuffled: many
    current agents, and a long history before the frames a forecast at the last frame uses."""
    rows = [(10 * f, f"p{i}", 0.3 * (f - i), 0.1 * i) for i in range(agents) for f in range(i // 4, end)]
    return pd.DataFrame(rows, columns=["frame", "agent_id", "x", "y"]).sample(frac=1.0, random_state=0)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_prediction_equals_predicting_the_whole_table(predict_cfg, model, tmp_path, suffix):
    df = crowd()
    df.to_csv(tmp_path / "tracks.csv", index=False)
    torch.manual_seed(0)
    whole = predict_futures(model, df, num_samples=3, batch_size=6)  # the same batches draw the same noise
    assert whole["agent_id"].nunique() == 40
    out = tmp_path / f"out{suffix}"
    predict(predict_cfg(output=out, chunk_rows=7, batch_size=6))
    streamed = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    pd.testing.assert_frame_equal(streamed, whole, check_dtype=False)


def test_recent_tracks_keep_only_the_frames_a_forecast_uses(tmp_path):
    df = crowd()
    df.to_parquet(tmp_path / "tracks.parquet")
    last = df["frame"].max()
    for at, frame_step in [(None, None), (last - 100, None), (last - 100, 10), (last - 100, 5)]:
        table = load_recent_tracks(tmp_path / "tracks.parquet", 8, 12, at_frame=at, chunk_rows=50,
                                   frame_step=frame_step)
        at, step = (last if at is None else at), frame_step or 10
        kept = df[(df["frame"] > at - 8 * step) & (df["frame"] <= at + 12 * step)]
        assert len(table) == len(kept) < len(df)
        assert table.frames(table.step).min() == kept["frame"].min()
        assert set(np.diff(np.unique(table.step))) == {10 // step}


def test_streaming_reports_rows_of_every_chunk(tmp_path):
    df = crowd().reset_index(drop=True)
    df.loc[3, "y"] = np.nan  # far before the frames kept, in the first chunk
    df.to_csv(tmp_path / "tracks.csv", index=False)
    with pytest.raises(InputError, match=f"column 'y' has NaN at row 4 \\(agent {df.loc[3, 'agent_id']}\\)"):
        load_recent_tracks(tmp_path / "tracks.csv", 8, 12, chunk_rows=2)
    df.loc[3, "y"] = 0.0
    df["x"] = df["x"].astype(object)
    df.loc[len(df) - 2, "x"] = "east"  # in the last chunk
    df.to_csv(tmp_path / "tracks.csv", index=False)
    with pytest.raises(InputError, match=f"non-numeric value 'east' at row {len(df) - 1}$"):
        load_recent_tracks(tmp_path / "tracks.csv", 8, 12, chunk_rows=5)
    pd.DataFrame(columns=["frame", "agent_id", "x", "y"]).to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(InputError, match="the table has no rows"):
        load_recent_tracks(tmp_path / "empty.csv", 8, 12, chunk_rows=5)
    crowd().to_csv(tmp_path / "tracks.csv", index=False)
    with pytest.raises(InputError, match="no rows in the 8 steps up to frame 5000"):
        load_recent_tracks(tmp_path / "tracks.csv", 8, 12, at_frame=5000, frame_step=10)


def test_a_failing_stream_leaves_the_old_output(tmp_path):
    chunk = pd.DataFrame({c: [1] for c in ["agent_id", "sample", "step", "frame", "x", "y", "weight"]})

    def failing():
        yield chunk
        raise RuntimeError("sampler died")

    for name in ["out.csv", "out.parquet"]:
        assert write_futures(iter([chunk, chunk]), tmp_path / name) == 2
        before = (tmp_path / name).read_bytes()
        with pytest.raises(RuntimeError, match="sampler died"):
            write_futures(failing(), tmp_path / name)
        assert (tmp_path / name).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.parquet"]


def test_crowds_are_sampled_in_smaller_batches(model):
    df = crowd()  # 40 agents present: 39 neighbours each
    chunks = list(iter_futures(model, df, num_samples=2, batch_size=16, neighbour_budget=39 * 5))
    assert [c["agent_id"].nunique() for c in chunks] == [5] * 8
    assert [c["agent_id"].nunique() for c in iter_futures(model, df, num_samples=2, batch_size=16)] == [16, 16, 8]
    assert len(list(iter_futures(model, df, num_samples=2, neighbour_budget=1))) == 40


def test_a_frame_batch_equals_looking_neighbours_up_per_window():
    # Agents entering, leaving and missing a frame inside the observed steps: absent neighbour steps matter.
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        first, last = rng.integers(0, 14), rng.integers(6, 24)
        gap = rng.integers(0, 24)
        rows += [(10 * f, f"p{i}", rng.normal(), rng.normal()) for f in range(first, last + 1) if f != gap]
    table = validate_tracks(pd.DataFrame(rows, columns=["frame", "agent_id", "x", "y"]))
    for step in range(8, 20):
        windows = current_windows(table, 8, step)
        everyone = np.arange(len(windows))
        fast, slow = FrameAgents.gather(windows).batch(everyone), windows.batch(everyone)
        assert not slow.neighbour_mask.all(), "some neighbour should be absent at some step"
        for name in ("past", "future", "neighbours", "neighbour_mask"):
            torch.testing.assert_close(getattr(fast, name), getattr(slow, name), rtol=0, atol=0)
        picked = everyone[1::2]  # any subset of the windows, in order
        torch.testing.assert_close(FrameAgents.gather(windows).batch(picked).neighbours,
                                   windows.batch(picked).neighbours, rtol=0, atol=0)


@pytest.mark.parametrize("option, trained_with", [("prior_components", {"prior_components": 1}),
                                                   ("prior_weight_net", {"prior_weight_net": False})])
def test_a_checkpoint_older_than_an_option_loads_as_the_model_it_was(tmp_path, option, trained_with):
    """Checkpoints written before an option existed hold no such key, and the default has since changed: the
    mixture prior (they had one Gaussian), the mixture weights' own network (they shared a layer with the
    components). load_model and TrajectoryCVAE.load_from_checkpoint build them as they were trained, so their
    weights fit and they sample as before."""
    torch.manual_seed(0)
    model = TrajectoryCVAE(**trained_with).eval()
    hparams = {k: v for k, v in model.hparams.items() if k != option}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams, "pytorch-lightning_version": "2.6.0"},
               tmp_path / "old.ckpt")
    loaded = load_model(tmp_path / "old.ckpt")
    direct = TrajectoryCVAE.load_from_checkpoint(tmp_path / "old.ckpt").eval()
    assert loaded.hparams[option] == direct.hparams[option] == trained_with[option] != TrajectoryCVAE().hparams[option]
    past = torch.randn(3, 8, 2).cumsum(1)
    torch.manual_seed(1)
    expected = model.sample(past, 4)
    for restored in (loaded, direct):
        torch.manual_seed(1)
        torch.testing.assert_close(restored.sample(past, 4), expected)


def test_a_checkpoint_with_a_retired_option_loads_only_at_the_value_left(tmp_path):
    """Options retired after their screens are still named in older checkpoints: at the one value today's model
    builds (the shipped checkpoints' case) they load and sample as before; at another, load_model refuses with
    the option's name, rather than silently building a different model from the weights."""
    torch.manual_seed(0)
    model = TrajectoryCVAE(prior_components=1).eval()
    old = dict(model.hparams) | {"decoder": "mlp", "social_radius": None, "free_bits": 0.1, "mixture_kl": "bound"}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": old, "pytorch-lightning_version": "2.6.0"},
               tmp_path / "old.ckpt")
    past = torch.randn(3, 8, 2).cumsum(1)
    loaded = load_model(tmp_path / "old.ckpt")  # before seeding: building a model draws its initial weights
    torch.manual_seed(1)
    expected = model.sample(past, 4)
    torch.manual_seed(1)
    torch.testing.assert_close(loaded.sample(past, 4), expected)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": old | {"social_radius": 2.0},
                "pytorch-lightning_version": "2.6.0"}, tmp_path / "radius.ckpt")
    with pytest.raises(CheckpointError, match="social_radius=2.0"):
        load_model(tmp_path / "radius.ckpt")


def test_a_checkpoint_from_before_the_model_module_loads_its_networks(tmp_path):
    """Checkpoints written before the networks moved into ConditionalVAE (the shipped ones among them) name them
    without the `cvae.` prefix; they load into the same networks and sample the same futures."""
    torch.manual_seed(0)
    model = TrajectoryCVAE(prior_components=3).eval()
    old_names = {k.removeprefix("cvae."): v for k, v in model.state_dict().items()}
    assert "prior_net.net.0.weight" in old_names
    torch.save({"state_dict": old_names, "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": "2.6.0"}, tmp_path / "old.ckpt")
    past = torch.randn(3, 8, 2).cumsum(1)
    loaded = load_model(tmp_path / "old.ckpt")
    torch.manual_seed(1)
    expected = model.sample(past, 4)
    torch.manual_seed(1)
    torch.testing.assert_close(loaded.sample(past, 4), expected)


def test_the_old_module_name_still_imports_with_a_warning():
    """Code written against cvae_traj.inference keeps working after the move, and is told where things went."""
    import importlib
    import sys

    sys.modules.pop("cvae_traj.inference", None)
    with pytest.warns(DeprecationWarning, match="cvae_traj.forecast"):
        old = importlib.import_module("cvae_traj.inference")
    assert old.load_model is load_model and old.write_futures is write_futures
