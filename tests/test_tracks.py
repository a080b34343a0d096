"""Track-table validation: good tables land on the time grid, bad ones get one clear error."""
import numpy as np
import pandas as pd
import pytest

from cvae_traj.data.tracks import load_tracks, validate_tracks
from cvae_traj.errors import InputError


def table(**overrides) -> pd.DataFrame:
    df = pd.DataFrame({"frame": [0, 10, 20, 0, 10], "agent_id": [1, 1, 1, 2, 2],
                       "x": [0.0, 1.0, 2.0, 5.0, 5.5], "y": [0.0, 0.0, 0.0, 1.0, 1.0]})
    for key, value in overrides.items():
        df[key] = value
    return df


def test_valid_table_is_sorted_onto_integer_grid():
    df = table().iloc[::-1]  # order must not matter
    t = validate_tracks(df)
    assert t.frame_step == 10
    np.testing.assert_array_equal(t.step, [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(t.agent_ids[t.agent], [1, 1, 1, 2, 2])
    np.testing.assert_allclose(t.xy[:3, 0], [0, 1, 2])
    np.testing.assert_array_equal(t.frames(np.array([3])), [30])


def test_renamed_columns_and_string_ids():
    df = table().rename(columns={"frame": "f", "agent_id": "ped", "x": "px", "y": "py"})
    df["ped"] = df["ped"].map({1: "alice", 2: "bob"})
    t = validate_tracks(df, columns={"frame": "f", "agent_id": "ped", "x": "px", "y": "py"})
    assert list(t.agent_ids) == ["alice", "bob"]


def test_timestamps_in_seconds():
    df = table(frame=[1.0, 1.4, 1.8, 1.0, 1.4])
    t = validate_tracks(df, time_unit="seconds", dt=0.4)
    np.testing.assert_array_equal(t.step, [0, 1, 2, 0, 1])
    np.testing.assert_allclose(t.frames(np.array([3])), [2.2])


@pytest.mark.parametrize("df, kwargs, message", [
    (table().drop(columns="y"), {}, r"missing column\(s\) 'y'"),
    (table().rename(columns={"x": "X"}), {}, r"missing column\(s\) 'x'"),
    (table(x=["0", "1", "oops", "5", "5.5"]), {}, r"column 'x' has a non-numeric value 'oops' at row 3"),
    (table(y=[0.0, np.nan, 0, 1, 1]), {}, r"column 'y' has NaN at row 2 \(agent 1\)"),
    (table(x=[0.0, 1, 2, np.inf, 5.5]), {}, r"column 'x' has inf at row 4 \(agent 2\)"),
    (table(frame=[0, 10, 10, 0, 10]), {}, r"duplicate rows for agent 1 at frame 10"),
    (table(frame=[0, 10, 25, 0, 10]), {}, r"frame 25 of agent 1 is off the grid of frame step 10"),
    (table(frame=[1.0, 1.4, 1.9, 1.0, 1.4]), {"time_unit": "seconds"}, r"frame 1.9 of agent 1 is off the 0.4 s"),
    (table().iloc[:0], {}, r"the table has no rows"),
    (table(agent_id=[1, None, 1, 2, 2]), {}, r"column 'agent_id' is empty at row 2"),
])
def test_bad_tables_name_the_problem(df, kwargs, message):
    with pytest.raises(InputError, match=message) as err:
        validate_tracks(df, source="tracks.csv", **kwargs)
    assert str(err.value).startswith("tracks.csv: ") and "\n" not in str(err.value)


def test_files_missing_empty_or_garbage(tmp_path):
    with pytest.raises(InputError, match="nope.csv: file not found"):
        load_tracks(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty.csv: file is empty"):
        load_tracks(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("frame,agent_id,x,y\n")
    with pytest.raises(InputError, match="header.csv: the table has no rows"):
        load_tracks(tmp_path / "header.csv")
    (tmp_path / "bad.parquet").write_bytes(b"\x00\x01 not parquet")
    with pytest.raises(InputError, match="bad.parquet: cannot be read as a Parquet table"):
        load_tracks(tmp_path / "bad.parquet")


def test_csv_and_parquet_read_the_same(tmp_path):
    table().to_csv(tmp_path / "t.csv", index=False)
    table().to_parquet(tmp_path / "t.parquet", index=False)
    a, b = load_tracks(tmp_path / "t.csv"), load_tracks(tmp_path / "t.parquet")
    np.testing.assert_array_equal(a.step, b.step)
    np.testing.assert_allclose(a.xy, b.xy)


def test_headerless_whitespace_file_is_read_as_frame_agent_x_y(tmp_path):
    (tmp_path / "raw.txt").write_text("0.0\t1.0\t0.5\t1.5\n10.0\t1.0\t0.7\t1.6\n")
    (tmp_path / "named.txt").write_text("frame agent_id x y\n0 1 0.5 1.5\n10 1 0.7 1.6\n")
    raw, named = load_tracks(tmp_path / "raw.txt"), load_tracks(tmp_path / "named.txt")
    assert raw.agent_ids.dtype == np.int64 and list(raw.agent_ids) == [1]
    np.testing.assert_allclose(raw.xy, [[0.5, 1.5], [0.7, 1.6]])
    np.testing.assert_allclose(named.xy, raw.xy)
    assert raw.frame_step == 10
