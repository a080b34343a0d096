"""LiveForecaster: frame by frame as predict_futures on the table so far, gaps bridged or restarted, bad frames
refused without a trace, and flat memory over a long stream."""
import numpy as np
import pandas as pd
import pytest
import torch

from cvae_traj import LiveForecaster, OnlineTemperature, TrajectoryCVAE, WidthOddsTemperature, predict_futures
from cvae_traj.data.synthetic import junction_tracks
from cvae_traj.errors import InputError


def stream(tracks: pd.DataFrame):
    for frame, rows in tracks.groupby("frame", sort=True):
        yield frame, rows[["agent_id", "x", "y"]]


def table_forecast(model, tracks, frame, **kw):
    """predict_futures on every row up to `frame`, or None where no agent can be forecast there."""
    torch.manual_seed(int(frame))
    try:
        return predict_futures(model, tracks[tracks["frame"] <= frame][["frame", "agent_id", "x", "y"]],
                               at_frame=frame, frame_step=1, **kw)
    except InputError as err:
        assert "consecutive positions" in str(err)
        return None


@pytest.mark.parametrize("cluster_from", [None, 12])
def test_each_frame_equals_predict_futures_on_the_table_so_far(synthetic_run, cluster_from):
    model = synthetic_run[0]
    tracks = junction_tracks(12, seed=3)
    live = LiveForecaster(model, num_samples=4, cluster_from=cluster_from)
    forecast_frames = 0
    for frame, rows in stream(tracks):
        torch.manual_seed(int(frame))
        out = live.update(frame, rows)
        expected = table_forecast(model, tracks, frame, num_samples=4, cluster_from=cluster_from)
        if expected is None:
            assert len(out) == 0, frame
            continue
        forecast_frames += 1
        pd.testing.assert_frame_equal(out, expected)
    assert forecast_frames > 10 and live.bridged == 0


def test_a_missed_frame_is_bridged_and_a_long_gap_starts_afresh(synthetic_run):
    model = synthetic_run[0]
    tracks = junction_tracks(1, seed=3).query("branch != 'post'")[["frame", "agent_id", "x", "y"]]
    first, last = tracks["frame"].min(), tracks["frame"].max()
    missed = last - 3  # inside the window of the last frame
    gap = tracks[tracks["frame"] != missed]
    live = LiveForecaster(model, num_samples=3, max_gap=1)
    for frame, rows in stream(gap):
        torch.manual_seed(int(frame))
        out = live.update(frame, rows)
    assert live.bridged == 1
    # The same as forecasting the table with the missed position put back halfway between its neighbours.
    filled = tracks.copy()
    filled.loc[filled["frame"] == missed, ["x", "y"]] = (
        (tracks[tracks["frame"] == missed - 1][["x", "y"]].to_numpy()
         + tracks[tracks["frame"] == missed + 1][["x", "y"]].to_numpy()) / 2)
    pd.testing.assert_frame_equal(out, table_forecast(model, filled, last, num_samples=3), check_exact=False,
                                  atol=1e-5)
    # Two missed frames with max_gap=1: the track starts again, and needs obs_len steps before a forecast.
    long_gap = tracks[~tracks["frame"].isin([first + 9, first + 10])]
    live = LiveForecaster(model, num_samples=3, max_gap=1)
    forecast = [frame for frame, rows in stream(long_gap) if len(live.update(frame, rows))]
    assert first + 8 in forecast and min(f for f in forecast if f > first + 10) == first + 11 + 7
    assert live.bridged == 0


def test_bad_frames_name_the_problem_and_change_nothing(synthetic_run):
    model = synthetic_run[0]
    tracks = junction_tracks(6, seed=4)
    frames = list(stream(tracks))
    live, twin = LiveForecaster(model, num_samples=2), LiveForecaster(model, num_samples=2)
    for frame, rows in frames[:12]:
        live.update(frame, rows)
        twin.update(frame, rows)
    frame, rows = frames[12]
    agent = rows["agent_id"].iloc[0]
    bad = [
        (frame, rows.assign(x=rows["x"].where(rows.index != rows.index[0], np.nan)), f"frame {frame}: column 'x' has NaN .*agent {agent}"),
        (frame, pd.concat([rows, rows.iloc[:1]]), f"frame {frame}: agent {agent} has more than one row"),
        (frame, rows.drop(columns="y"), f"frame {frame}: missing column"),
        (frame, rows.assign(x=rows["x"].astype(object).where(rows.index != rows.index[0], "near")), "non-numeric value 'near'"),
        (frames[5][0], rows, f"frame {frames[5][0]} is not after the last frame given"),
        (frame + 0.5, rows, "off the grid"),
        (frame, rows.assign(frame=frame + 1), "a row carries frame"),
    ]
    for f, r, message in bad:
        with pytest.raises(InputError, match=message):
            live.update(f, r)
    for frame, rows in frames[12:]:
        torch.manual_seed(int(frame))
        out = live.update(frame, rows)
        torch.manual_seed(int(frame))
        pd.testing.assert_frame_equal(out, twin.update(frame, rows))
    with pytest.raises(InputError, match="max_gap must be between 0 and 6"):
        LiveForecaster(model, max_gap=7)


def test_memory_stays_flat_over_a_long_stream():
    torch.manual_seed(0)
    live = LiveForecaster(TrajectoryCVAE(hidden_dim=8, latent_dim=2, prior_components=2), num_samples=1)
    rng = np.random.default_rng(0)
    held = []
    for frame in range(3000):
        # Agents come and go: each lives 30 frames; about 10 are present at any frame, a few missed now and then.
        ids = [a for a in range(frame // 3 - 10, frame // 3 + 1) if a >= 0 and rng.random() > 0.05]
        rows = pd.DataFrame({"agent_id": ids, "x": [0.3 * (frame - 3 * a) for a in ids], "y": [float(a) for a in ids]})
        live.update(frame, rows)
        held.append(len(live.agents))
    assert max(held) <= 14 and len(live._pos) == len(live._seen) == held[-1]
    assert live.bridged > 0


def test_onnxruntime_draws_the_futures_torch_draws():
    pytest.importorskip("onnxruntime")  # a dev dependency: CI installs it
    torch.manual_seed(0)
    model = TrajectoryCVAE(hidden_dim=16, latent_dim=4, prior_components=2, min_history=2).eval()
    whole = TrajectoryCVAE(hidden_dim=8, latent_dim=2).eval()
    pairs = [(LiveForecaster(model, num_samples=5), LiveForecaster(model, num_samples=5, runtime="onnxruntime")),
             (LiveForecaster(whole, num_samples=5, newcomer_model=model),  # whole histories with the other model
              LiveForecaster(whole, num_samples=5, newcomer_model=model, runtime="onnxruntime"))]
    forecast = 0
    for frame, rows in stream(junction_tracks(6, seed=5)):
        for on_torch, on_onnx in pairs:
            torch.manual_seed(int(frame))
            expected = on_torch.update(frame, rows)
            torch.manual_seed(int(frame))
            pd.testing.assert_frame_equal(on_onnx.update(frame, rows), expected, check_exact=False, atol=1e-4)
            forecast += len(expected) > 0
    assert forecast > 20
    with pytest.raises(InputError, match="runtime must be 'torch' or 'onnxruntime'"):
        LiveForecaster(model, runtime="tensorflow")


def test_live_odds_calibration_moves_the_standers_odds_by_standers_alone_and_leaves_the_model_as_it_was(
        synthetic_run):
    model = synthetic_run[0]
    walkers = junction_tracks(40, seed=5)
    rng = np.random.default_rng(1)
    frames = np.sort(walkers["frame"].unique())
    standers = []
    for i in range(40):  # stand 8 steps, then wander off 0.6 m a step in a random direction, one after another
        start = frames[(3 * i) % max(1, len(frames) - 20)]
        xy = np.zeros((20, 2)) + rng.uniform(-5, 5, size=2)
        xy[8:] += np.cumsum(rng.normal(0, 0.6, size=(12, 2)), axis=0)
        standers.append(pd.DataFrame({"frame": start + np.arange(20), "agent_id": 10_000 + i, "x": xy[:, 0],
                                      "y": xy[:, 1]}))
    tracks = pd.concat([walkers, *standers], ignore_index=True)
    tracker = WidthOddsTemperature()
    live = LiveForecaster(model, num_samples=20, calibration=tracker)
    torch.manual_seed(0)
    for frame, rows in stream(tracks):
        live.update(frame, rows)
        assert model.cvae.prior_odds == 1.0 and model.cvae.prior_temperature == 1.0  # given back after each
    (standing_width, standing), (walking, no_odds) = tracker.trackers
    assert no_odds is None and standing.observed == standing_width.observed >= 20 and walking.observed > 100
    assert standing.temperature > 2.0  # the standers set off far more often, and further, than the model thinks
    assert standing_width.temperature > 1.0  # and go further than their modes' spread: the same levels widen it
    assert walking.temperature < 1.5  # the junction's walkers are as trained: their levels do not move the width


class DeparturesSeen(WidthOddsTemperature):
    """The package's tracker, keeping the (classes, departures) of everything it observes."""

    def observe(self, levels, classes, departures=None):
        self.seen = getattr(self, "seen", []) + [(np.asarray(classes), departures)]
        return super().observe(levels, classes, departures)


def test_live_hands_the_tracker_who_set_off_and_the_share_of_its_own_draws_that_did(synthetic_run):
    model = synthetic_run[0]
    rng = np.random.default_rng(2)
    standers, went = [], {}
    for i in range(30):  # stand 8 steps; then half walk off along +x at 0.5 m a step and half stay, one after another
        went[10_000 + i] = i % 2 == 0
        xy = np.zeros((20, 2)) + rng.uniform(-50, 50, size=2)
        xy[8:, 0] += 0.5 * np.arange(1, 13) * went[10_000 + i]
        xy[8:] += rng.normal(0, 0.01, size=(12, 2))
        standers.append(pd.DataFrame({"frame": 5 * i + np.arange(20), "agent_id": 10_000 + i, "x": xy[:, 0],
                                      "y": xy[:, 1]}))
    tracks = pd.concat(standers, ignore_index=True)
    tracker = DeparturesSeen(set_off=0.5)
    live = LiveForecaster(model, num_samples=20, calibration=tracker)
    torch.manual_seed(0)
    expected = []
    for frame, rows in stream(tracks):
        futures = live.update(frame, rows)
        for agent, (x0, y0) in zip(rows["agent_id"], rows[["x", "y"]].to_numpy()):
            start = tracks[tracks["agent_id"] == agent]["frame"].min()
            if frame == start + 7:  # its one forecast that completes within its track: at its last standing step
                finals = futures[(futures["agent_id"] == agent) & (futures["step"] == 12)][["x", "y"]].to_numpy()
                share = np.mean(np.linalg.norm(finals - [x0, y0], axis=1) > 0.5)
                expected.append((float(went[agent]), share))
    seen = np.concatenate([d[c == 0] for c, d in tracker.seen if d is not None])
    assert len(expected) == 30 and sorted(map(tuple, seen.tolist())) == sorted(expected)
    assert np.mean([w for w, _ in expected]) == 0.5


def test_online_calibration_widens_the_draws_on_walkers_wider_than_trained_and_leaves_the_model_as_it_was(
        synthetic_run):
    model = synthetic_run[0]
    clean = junction_tracks(60, seed=5)
    rng = np.random.default_rng(0)
    wide = clean.sort_values(["agent_id", "frame"]).copy()
    for col in ("x", "y"):  # a random walk of 0.15 m a step along each agent's track
        wide[col] += pd.Series(rng.normal(0, 0.15, len(wide)), index=wide.index).groupby(wide["agent_id"]).cumsum()
    factors = {}
    for name, tracks in (("clean", clean), ("wide", wide)):
        tracker = OnlineTemperature(rate=0.2, bounds=(0.25, 8.0))
        live = LiveForecaster(model, num_samples=20, calibration=tracker)
        torch.manual_seed(0)
        for frame, rows in stream(tracks):
            live.update(frame, rows)
            assert model.cvae.prior_temperature == 1.0  # given back after each forecast
        assert tracker.observed > 200, tracker
        factors[name] = tracker.temperature
    assert factors["wide"] > 1.5 and factors["wide"] > 1.5 * factors["clean"], factors

    # At rate 0 the factor stays 1 and the futures are those of a forecaster without calibration.
    plain, still = LiveForecaster(model, num_samples=5), LiveForecaster(model, num_samples=5,
                                                                      calibration=OnlineTemperature(rate=0))
    for frame, rows in list(stream(clean))[:40]:
        torch.manual_seed(int(frame))
        expected = plain.update(frame, rows)
        torch.manual_seed(int(frame))
        pd.testing.assert_frame_equal(still.update(frame, rows), expected)
    odds_still = LiveForecaster(model, num_samples=5, calibration=WidthOddsTemperature(
        width=OnlineTemperature(rate=0), odds=OnlineTemperature(rate=0)))
    plain = LiveForecaster(model, num_samples=5)
    for frame, rows in list(stream(clean))[:40]:
        torch.manual_seed(int(frame))
        expected = plain.update(frame, rows)
        torch.manual_seed(int(frame))
        pd.testing.assert_frame_equal(odds_still.update(frame, rows), expected)
    with pytest.raises(InputError, match="online calibration needs faithful draws"):
        LiveForecaster(model, num_samples=5, cluster_from=20, calibration=OnlineTemperature())
    with pytest.raises(InputError, match="live calibration takes a WidthOddsTemperature or an OnlineTemperature, got float"):
        LiveForecaster(model, num_samples=5, calibration=0.2)
