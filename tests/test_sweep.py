"""The multirun table: swept settings beside validation metrics, one row per finished run."""
import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from cvae_traj.errors import InputError
from cvae_traj.sweep import sweep_rows, sweep_table
from conftest import ROOT


def fake_run(folder, beta, ade, kl_dims):
    folder.mkdir(parents=True)
    OmegaConf.save({"model": {"beta": beta}, "seed": 0}, folder / "config.yaml")
    val = {"val/min_ade_20": ade, "val/min_fde_20": 2 * ade, "val/nll_iwae_10": -40.0, "val/nelbo": -38.5,
           "val/active_units": float(sum(k > 0.01 for k in kl_dims))}
    val.update({f"val/kl_dim/{i}": k for i, k in enumerate(kl_dims)})
    (folder / "metrics.json").write_text(json.dumps({"val": val}))


def test_rows_sum_the_kl_and_sort_by_the_swept_value(tmp_path):
    fake_run(tmp_path / "0", 2.0, 0.30, [0.5, 0.001])
    fake_run(tmp_path / "1", 0.5, 0.25, [3.0, 1.5])
    (tmp_path / "2").mkdir()  # a run that never finished has no metrics.json and no row
    rows = sweep_rows(tmp_path, ["model.beta"])
    assert [r["model.beta"] for r in rows] == [0.5, 2.0]
    assert rows[0]["kl"] == pytest.approx(4.5) and rows[1]["kl"] == pytest.approx(0.501)
    table = sweep_table(rows, ["model.beta"]).splitlines()
    assert table[0].startswith("| model.beta | min_ade_20 | min_fde_20 |") and "ML ADE" not in table[0]
    assert table[2] == "| 0.5 | 0.250 | 0.500 | -40.00 | -38.50 | 4.50 | 2 |"


def test_an_empty_sweep_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(InputError, match="no finished runs"):
        sweep_rows(tmp_path, ["model.beta"])
    done = subprocess.run([sys.executable, "-m", "cvae_traj.sweep", f"sweep_dir={tmp_path}", "keys=[model.beta]"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "no finished runs" in done.stderr
