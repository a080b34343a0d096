"""The synthetic and CSV datamodules: what they generate, how they split, and the batches they yield."""
import numpy as np
import pytest

from cvae_traj import CsvDataModule, SyntheticDataModule, TrajectoryBatch
from cvae_traj.data import junction_tracks
from cvae_traj.errors import InputError


def test_junction_branches_follow_their_probabilities():
    df = junction_tracks(3000, seed=0, branch_probs=(0.2, 0.5, 0.3))
    df = df[df.branch != "post"]  # the post beside the junction, a neighbour of every walker
    per_agent = df.groupby("agent_id")["branch"].first().value_counts(normalize=True)
    np.testing.assert_allclose(per_agent[["left", "straight", "right"]], [0.2, 0.5, 0.3], atol=0.03)
    final = df.groupby("agent_id").last()
    # Left turns end west of the junction, right turns east, straight ones on the axis.
    assert (final.loc[final.branch == "left", "x"] < -1).mean() > 0.9
    assert (final.loc[final.branch == "right", "x"] > 1).mean() > 0.9
    assert (final.loc[final.branch == "straight", "x"].abs() < 0.2).all()


def test_synthetic_splits_differ_and_batches_follow_the_convention():
    dm = SyntheticDataModule(num_train_agents=50, num_val_agents=20, num_test_agents=20, batch_size=8)
    dm.setup("fit")
    assert not np.allclose(dm.windows("train").past[:20], dm.windows("val").past[:20])
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, TrajectoryBatch) and len(batch) == 8
    assert batch.past.shape == (8, 8, 2) and batch.future.shape == (8, 12, 2)
    assert batch.neighbours.shape[2:] == (8, 2) and batch.neighbour_mask.shape == batch.neighbours.shape[:3]


def write_table(path, frames=60, agents=6):
    df = junction_tracks(agents, seed=0, track_len=frames, agents_per_frame=agents).drop(columns="branch")
    df["frame"] = df["frame"] * 10
    df.rename(columns={"x": "px"}).to_csv(path, index=False)
    return df


def test_csv_time_split_never_shares_a_frame(tmp_path):
    write_table(tmp_path / "t.csv")
    dm = CsvDataModule(path=str(tmp_path / "t.csv"), columns={"x": "px"}, obs_len=4, pred_len=4)
    spans = {}
    for split in ("train", "val", "test"):
        (table,) = dm.load_split(split)
        spans[split] = (table.step.min(), table.step.max())
        assert len(dm.windows(split)) > 0
    assert spans["train"][1] < spans["val"][0] and spans["val"][1] < spans["test"][0]


def test_csv_separate_split_files_and_options(tmp_path):
    for name in ("a", "b", "c"):
        write_table(tmp_path / f"{name}.csv", frames=20, agents=3)
    dm = CsvDataModule(path=str(tmp_path / "a.csv"), val_path=str(tmp_path / "b.csv"),
                       test_path=str(tmp_path / "c.csv"), columns={"x": "px"})
    assert len(dm.windows("test")) == 3  # 20 steps = exactly one window per agent
    with pytest.raises(InputError, match="give both data.val_path and data.test_path"):
        CsvDataModule(path="a.csv", val_path="b.csv")
    short = CsvDataModule(path=str(tmp_path / "a.csv"), columns={"x": "px"}, obs_len=16, pred_len=8)
    with pytest.raises(InputError, match="no agent has 24 consecutive steps for the train split"):
        short.windows("train")
