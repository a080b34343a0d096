"""Windowing against a brute-force reference: which windows exist, their contents, and their neighbours."""
import numpy as np
import pandas as pd
import pytest

from cvae_traj.data.tracks import validate_tracks
from cvae_traj.data.windows import Windows, make_windows

OBS, PRED = 3, 2


def random_table(seed: int) -> pd.DataFrame:
    """Agents with gaps in their tracks, overlapping in time."""
    rng = np.random.default_rng(seed)
    rows = []
    for agent in range(12):
        start = rng.integers(0, 15)
        frames = np.arange(start, start + rng.integers(1, 14))
        frames = frames[rng.random(len(frames)) > 0.15]  # random gaps
        for f in frames:
            rows.append((int(f) * 10, agent * 7 + 3, rng.normal(), rng.normal()))
    return pd.DataFrame(rows, columns=["frame", "agent_id", "x", "y"])


def brute_force(df: pd.DataFrame):
    """Every (agent, last observed frame) with OBS + PRED consecutive frames, and its neighbours by loops."""
    pos = {(r.agent_id, r.frame): (r.x, r.y) for r in df.itertuples()}
    windows = {}
    for (agent, frame) in pos:
        frames = [frame + 10 * k for k in range(OBS + PRED)]
        if all((agent, f) in pos for f in frames):
            obs = frames[:OBS]
            others = sorted({a for (a, f) in pos if f in obs and a != agent})
            neigh = np.array([[pos.get((a, f), (np.nan, np.nan)) for f in obs] for a in others]).reshape(-1, OBS, 2)
            windows[(agent, frames[OBS - 1])] = (np.array([pos[(agent, f)] for f in frames]), neigh)
    return windows


@pytest.mark.parametrize("seed", range(5))
def test_windows_match_brute_force(seed):
    df = random_table(seed)
    table = validate_tracks(df, frame_step=10)
    w = make_windows(table, OBS, PRED)
    expected = brute_force(df)
    got_keys = list(zip(table.agent_ids[w.agent], table.frames(w.last_step)))
    assert sorted(got_keys) == sorted(expected)
    for i, key in enumerate(got_keys):
        track, neigh = expected[key]
        np.testing.assert_allclose(np.concatenate([w.past[i], w.future[i]]), track, rtol=1e-6)
        np.testing.assert_allclose(w.neighbour_tracks(i), neigh, rtol=1e-6)
    # A batch of every window, gathered at once, holds the same tracks and neighbours (zero where masked).
    b = w.batch(np.arange(len(w)))
    for i, key in enumerate(got_keys):
        track, neigh = expected[key]
        np.testing.assert_allclose(np.concatenate([b.past[i], b.future[i]]), track, rtol=1e-6)
        n = len(neigh)
        np.testing.assert_array_equal(b.neighbour_mask[i, :n].numpy(), ~np.isnan(neigh[..., 0]))
        np.testing.assert_allclose(b.neighbours[i, :n].numpy(), np.nan_to_num(neigh), rtol=1e-6)
        assert not b.neighbour_mask[i, n:].any()


def test_neighbours_never_see_future_rows():
    """Changing anything after a window's last observed frame leaves its inputs unchanged."""
    df = random_table(7)
    table = validate_tracks(df, frame_step=10)
    w = make_windows(table, OBS, PRED)
    i = int(np.argmax([len(w.neighbour_tracks(k)) for k in range(len(w))]))  # the window with most neighbours
    cut = table.frames(w.last_step[i])
    moved = df.copy()
    later = moved["frame"] > cut
    moved.loc[later, ["x", "y"]] += 100.0
    w2 = make_windows(validate_tracks(moved, frame_step=10), OBS, PRED)
    j = int(np.flatnonzero((w2.agent == w.agent[i]) & (w2.last_step == w.last_step[i]))[0])
    np.testing.assert_array_equal(w.past[i], w2.past[j])
    np.testing.assert_array_equal(w.neighbour_tracks(i), w2.neighbour_tracks(j))
    assert not np.array_equal(w.future[i], w2.future[j])  # the future itself did move


def test_stride_keeps_every_kth_start():
    df = pd.DataFrame({"frame": np.arange(10), "agent_id": 0, "x": np.arange(10.0), "y": 0.0})
    w = make_windows(validate_tracks(df), OBS, PRED, stride=2)
    np.testing.assert_array_equal(w.last_step, [2, 4, 6])


def test_batch_pads_neighbours_with_mask():
    df = random_table(3)
    w = make_windows(validate_tracks(df, frame_step=10), OBS, PRED)
    counts = np.array([len(w.neighbour_tracks(k)) for k in range(len(w))])
    idx = [int(np.argmax(counts)), int(np.argmin(counts))]
    b = w.batch(idx)
    assert b.neighbours.shape == (2, counts.max(), OBS, 2)
    # Masked-out slots are zero and never NaN; observed slots hold the stored positions.
    assert not b.neighbours.isnan().any()
    assert (b.neighbours[~b.neighbour_mask] == 0).all()
    stored = w.neighbour_tracks(idx[0])
    np.testing.assert_array_equal(b.neighbour_mask[0].numpy(), ~np.isnan(stored[..., 0]))
    assert b.neighbour_mask[1, counts.min():].sum() == 0


def test_concatenate_keeps_each_windows_neighbours():
    tables = [validate_tracks(random_table(s), frame_step=10) for s in (1, 2)]
    parts = [make_windows(t, OBS, PRED) for t in tables]
    both = Windows.concatenate(parts)
    n0 = len(parts[0])
    k = len(parts[1]) - 1
    np.testing.assert_array_equal(both.neighbour_tracks(n0 + k), parts[1].neighbour_tracks(k))
    # A batch mixing both scenes gathers each window from its own scene.
    b, b0, b1 = both.batch([n0 + k, 0]), parts[1].batch([k]), parts[0].batch([0])
    np.testing.assert_array_equal(b.past.numpy(), np.concatenate([b0.past.numpy(), b1.past.numpy()]))
    np.testing.assert_array_equal(b.neighbour_mask[0, :b0.neighbour_mask.shape[1]].numpy(), b0.neighbour_mask[0].numpy())
    np.testing.assert_array_equal(b.neighbour_mask[1, :b1.neighbour_mask.shape[1]].numpy(), b1.neighbour_mask[0].numpy())


def test_far_frame_numbers_give_the_same_windows():
    """Windowing cost depends on the table's duration, not on how large its frame numbers are."""
    df = random_table(4)
    near = make_windows(validate_tracks(df, frame_step=10), OBS, PRED)
    far = make_windows(validate_tracks(df.assign(frame=df["frame"] + 10**12), frame_step=10), OBS, PRED)
    np.testing.assert_array_equal(near.past, far.past)
    for i in range(len(near)):
        np.testing.assert_array_equal(near.neighbour_tracks(i), far.neighbour_tracks(i))
