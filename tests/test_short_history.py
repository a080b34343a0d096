"""Forecasts from an agent's second position: short pasts filled in and flagged, nothing before them read, training
cut short at random, and predict_futures / predict.py / the live forecaster taking min_history."""
import numpy as np
import pandas as pd
import pytest
import torch

from cvae_traj import LiveForecaster, NewcomerRouter, TrajectoryBatch, TrajectoryCVAE, load_model, predict_futures
from cvae_traj.data.current import FrameAgents, current_windows
from cvae_traj.data.tracks import validate_tracks
from cvae_traj.errors import InputError
from cvae_traj.models.history_encoder import backfill
from conftest import ROOT


@pytest.fixture(scope="module")
def short_model() -> TrajectoryCVAE:
    torch.manual_seed(0)
    return TrajectoryCVAE(hidden_dim=16, latent_dim=4, prior_components=2, min_history=2).eval()


def test_backfill_runs_a_short_track_backwards_at_its_mean_velocity():
    past = torch.randn(4, 8, 2).cumsum(1)
    past[1, :5] = float("nan")  # what is not observed may hold anything
    history = torch.tensor([8, 3, 2, 1])
    filled = backfill(past, history)
    assert torch.isfinite(filled).all()
    torch.testing.assert_close(filled[0], past[0])
    for i, h in enumerate(history.tolist()):
        torch.testing.assert_close(filled[i, 8 - h:], past[i, 8 - h:])  # observed steps untouched
    v = (past[1, 7] - past[1, 5]) / 2
    torch.testing.assert_close(filled[1, :5], past[1, 5] - torch.arange(5, 0, -1.0)[:, None] * v)
    torch.testing.assert_close(filled[2, :6], past[2, 6] - torch.arange(6, 0, -1.0)[:, None] * (past[2, 7] - past[2, 6]))
    torch.testing.assert_close(filled[3], past[3, 7].expand(8, 2))  # seen once: standing still


def _batch(past, history):
    b = past.shape[0]
    neighbours = torch.randn(b, 3, 8, 2).cumsum(2)
    return TrajectoryBatch(past, None, neighbours, torch.ones(b, 3, 8, dtype=torch.bool), history)


def test_futures_from_a_short_history_ignore_what_came_before_it(short_model):
    past = torch.randn(5, 8, 2).cumsum(1)
    history = torch.tensor([2, 3, 5, 8, 2])
    batch = _batch(past, history)
    moved = TrajectoryBatch(past.clone(), None, batch.neighbours.clone(), batch.neighbour_mask, history)
    for i, h in enumerate(history.tolist()):
        moved.past[i, :8 - h] += 50.0  # the agent's unobserved steps
        moved.neighbours[i, :, :8 - h] -= 30.0  # neighbours seen before the agent was
    moved.past[3, 0] += 50.0  # the first step of a whole history
    torch.manual_seed(1)
    a = short_model.sample(batch, num_samples=6)
    torch.manual_seed(1)
    b = short_model.sample(moved, num_samples=6)
    torch.testing.assert_close(a[:3], b[:3])
    torch.testing.assert_close(a[4], b[4])
    assert (a[3] - b[3]).abs().max() > 1e-2  # a full history is read whole
    # The same pasts read as whole histories give other futures: the length reaches the model.
    torch.manual_seed(1)
    whole = short_model.sample(batch.with_history(torch.full((5,), 8)), num_samples=6)
    assert (whole[0] - a[0]).abs().max() > 1e-3
    torch.testing.assert_close(whole[3], a[3])


def test_only_a_model_trained_on_short_histories_flags_its_steps(short_model):
    assert short_model.cvae.history_encoder.gru.input_size == 5
    assert TrajectoryCVAE().cvae.history_encoder.gru.input_size == 4  # checkpoints before the option load as they were
    shipped = load_model(ROOT / "checkpoints" / "eth_ucy" / "zara1.ckpt")
    assert shipped.cvae.min_history == shipped.hparams.obs_len == 8
    with pytest.raises(ValueError, match="min_history must be between 2 and obs_len"):
        TrajectoryCVAE(min_history=1)


def test_training_cuts_the_share_of_histories_asked_and_no_shorter_than_min_history(short_model, monkeypatch):
    torch.manual_seed(0)
    n = 20000
    batch = TrajectoryBatch.from_past(torch.randn(n, 8, 2).cumsum(1), torch.randn(n, 12, 2))
    history = short_model.shortened(batch).history
    cut = history < 8
    assert abs(cut.float().mean().item() - 0.5) < 0.02
    counts = torch.bincount(history[cut], minlength=8)[2:8].float() / cut.sum()
    assert counts.min() > 1 / 6 - 0.02 and counts.max() < 1 / 6 + 0.02 and history.min() == 2
    # A batch that brings its own histories keeps them as the longest.
    own = short_model.shortened(batch.with_history(torch.full((n,), 3))).history
    assert own.max() == 3 and (own == 2).any()
    assert TrajectoryCVAE(hidden_dim=8, latent_dim=2).shortened(batch) is batch
    # training_step trains on the shortened batch.
    seen = []
    cvae = short_model.cvae
    monkeypatch.setattr(cvae, "elbo_terms", lambda b, **kw: seen.append(b.history) or {
        "rec_nll": torch.zeros(len(b), requires_grad=True), "kl_per_dim": torch.zeros(len(b), 4),
        "kl_rest": torch.zeros(len(b))})
    short_model.training_step(batch, 0)
    assert seen[0] is not None and (seen[0] < 8).any()


def _table():
    """Agents 1 (12 steps), 2 (2 steps), 3 (5 steps), 4 (1 step), 5 (3 steps, a gap, then 2 steps): frames 0-11."""
    rows = [(f, 1, 0.4 * f, 0.0) for f in range(12)]
    rows += [(f, 2, 1.0, 0.3 * f) for f in (10, 11)]
    rows += [(f, 3, -1.0, 0.3 * f) for f in range(7, 12)]
    rows += [(11, 4, 2.0, 2.0)]
    rows += [(f, 5, 0.2 * f, -1.0) for f in (5, 6, 7, 10, 11)]
    return pd.DataFrame(rows, columns=["frame", "agent_id", "x", "y"])


def test_predict_futures_forecasts_every_agent_with_min_history_steps(short_model):
    table = _table()
    agents = lambda out: sorted(out["agent_id"].unique().tolist())  # noqa: E731
    assert agents(predict_futures(short_model, table, num_samples=2)) == [1, 2, 3, 5]
    assert agents(predict_futures(short_model, table, num_samples=2, min_history=3)) == [1, 3]
    assert agents(predict_futures(short_model, table, num_samples=2, min_history=8)) == [1]
    # The batch holds each agent's own run: its last positions, and how many there are.
    present = FrameAgents.current(validate_tracks(table), 8, 11, 2)
    batch = present.batch(np.arange(len(present)))
    assert batch.history.tolist() == [8, 2, 5, 2]
    torch.testing.assert_close(batch.past[1, -2:], torch.tensor([[1.0, 3.0], [1.0, 3.3]]))
    with pytest.raises(InputError, match="min_history=9 is beyond the 8 steps"):
        predict_futures(short_model, table, min_history=9)
    with pytest.raises(InputError, match="min_history=1 is too short for this model: it forecasts agents with at "
                                         "least 2"):
        predict_futures(short_model, table, min_history=1)
    full = TrajectoryCVAE(hidden_dim=8, latent_dim=2).eval()
    assert agents(predict_futures(full, table, num_samples=2)) == [1]
    with pytest.raises(InputError, match="only agents with all 8 observed steps"):
        predict_futures(full, table, min_history=2)
    with pytest.raises(InputError, match="no agent has 6 consecutive positions ending at frame 11"):
        predict_futures(short_model, table[table["agent_id"] != 1], min_history=6)


def test_full_histories_are_found_as_current_windows_find_them():
    table = validate_tracks(_table())
    windows = current_windows(table, 8, 11)
    fast, slow = FrameAgents.current(table, 8, 11, 8), FrameAgents.gather(windows)
    everyone = np.arange(len(slow))
    for name in ("past", "neighbours", "neighbour_mask"):
        torch.testing.assert_close(getattr(fast.batch(everyone), name), getattr(windows.batch(everyone), name))
    assert fast.batch(everyone).history is None and fast.agent.tolist() == slow.agent.tolist()


def test_live_forecasts_a_newcomer_from_its_second_frame_as_the_table_does(short_model):
    table = _table()
    live = LiveForecaster(short_model, num_samples=3, max_gap=0)
    forecast_at = {}
    for frame, rows in table.groupby("frame", sort=True):
        torch.manual_seed(int(frame))
        out = live.update(frame, rows[["agent_id", "x", "y"]])
        for agent in out["agent_id"].unique():
            forecast_at.setdefault(int(agent), []).append(int(frame))
        if frame == 0:
            assert len(out) == 0
            continue
        torch.manual_seed(int(frame))
        expected = predict_futures(short_model, table[table["frame"] <= frame], num_samples=3)
        pd.testing.assert_frame_equal(out, expected)
    # Agent 5 restarts after its gap (max_gap=0) and is forecast again from its second position.
    assert {a: f[0] for a, f in forecast_at.items()} == {1: 1, 2: 11, 3: 8, 5: 6} and forecast_at[5] == [6, 7, 11]
    assert len(live.update(12, table[table["frame"] == 11][["agent_id", "x", "y"]].query("agent_id == 4"))) > 0
    with pytest.raises(InputError, match="min_history=1 is too short"):
        LiveForecaster(short_model, min_history=1)


def test_a_newcomer_pair_keeps_the_whole_model_for_whole_histories_and_forecasts_the_rest(short_model):
    torch.manual_seed(3)
    whole = TrajectoryCVAE(hidden_dim=8, latent_dim=2).eval()
    router = NewcomerRouter(whole, short_model)
    past = torch.randn(5, 8, 2).cumsum(1)
    history = torch.tensor([8, 2, 8, 5, 3])
    batch = _batch(past, history)
    torch.manual_seed(4)
    mixed = router.sample(batch, num_samples=6)
    # Whole histories' noise first, then the newcomers': each part as its own model samples it.
    seen = history == 8
    torch.manual_seed(4)
    torch.testing.assert_close(mixed[seen], whole.sample(batch.select(seen).with_history(None), num_samples=6))
    torch.testing.assert_close(mixed[~seen], short_model.sample(batch.select(~seen), num_samples=6))
    torch.manual_seed(5)
    futures, weights = router.representatives(batch, num_samples=3, draws=12)
    assert futures.shape == (5, 3, 12, 2)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5))
    # Through predict_futures: every agent seen twice is forecast, and the one seen 8 times as the whole model does.
    table = _table()
    torch.manual_seed(6)
    paired = predict_futures(whole, table, num_samples=3, newcomer_model=short_model)
    assert sorted(paired["agent_id"].unique().tolist()) == [1, 2, 3, 5]
    torch.manual_seed(6)
    alone = predict_futures(whole, table, num_samples=3)
    pd.testing.assert_frame_equal(paired[paired["agent_id"] == 1].reset_index(drop=True), alone)
    assert sorted(predict_futures(whole, table, 2, min_history=3, newcomer_model=short_model)["agent_id"].unique()) \
        == [1, 3]
    with pytest.raises(InputError, match="the newcomer model was trained on whole histories only"):
        predict_futures(whole, table, newcomer_model=TrajectoryCVAE(hidden_dim=8, latent_dim=2))
    with pytest.raises(InputError, match="the newcomer model observes 8, forecasts 6 steps .* they must match"):
        NewcomerRouter(whole, TrajectoryCVAE(hidden_dim=8, latent_dim=2, pred_len=6, min_history=2))


def test_live_with_a_newcomer_model_forecasts_as_the_table_does(short_model):
    torch.manual_seed(3)
    whole = TrajectoryCVAE(hidden_dim=8, latent_dim=2).eval()
    table = _table()
    live = LiveForecaster(whole, num_samples=3, max_gap=0, newcomer_model=short_model)
    first = {}
    for frame, rows in table.groupby("frame", sort=True):
        torch.manual_seed(int(frame))
        out = live.update(frame, rows[["agent_id", "x", "y"]])
        for agent in out["agent_id"].unique():
            first.setdefault(int(agent), int(frame))
        torch.manual_seed(int(frame))
        if len(out):
            expected = predict_futures(whole, table[table["frame"] <= frame], num_samples=3,
                                       newcomer_model=short_model)
            pd.testing.assert_frame_equal(out, expected)
    assert first == {1: 1, 2: 11, 3: 8, 5: 6}
