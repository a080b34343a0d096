"""How often people standing still set off, scene by scene: what a model that never saw the scene can know.

    python benchmarks/standers.py ['scenes=[zara2]'] [set_off=0.5]

Data alone, no model. For each leave-one-out fold: the test scene's standers (last observed step under 0.08 m,
as cvae_traj.evaluation.STANDING_STEP) and the share of them that set off (end more than `set_off` metres from
where they stood at the last future step), against the same share among the fold's training windows. Then the
share an ideal model of the training data would give the test scene's standers if it knew each stander's own
past: the training standers' set-off rate per bin of the distance walked over the observed steps, applied to the
test standers' bins. Where that estimate misses the truth, no frozen model that reads only the observed tracks
can get the standers' odds right on that scene; the forecast has to learn the site (calibration on its tracks,
or online). It chooses nothing; benchmarks/HISTORY.md has the study it belongs to. Results go to `output`.
"""
import numpy as np
import torch
from omegaconf import OmegaConf

from bench.options import options
from bench.provenance import git_commit
from cvae_traj.data.eth_ucy import SCENES, EthUcyDataModule
from cvae_traj.evaluation import standing
from cvae_traj.io import write_json

cfg = options({"scenes": list(SCENES), "set_off": 0.5, "data": "data/eth_ucy",
               "bins": [0.0, 0.001, 0.02, 0.05, 0.1, 0.15, 0.25, 0.4],
               "output": "benchmarks/results/standers.json"})


def standers(windows, set_off: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(walked, moved, went, total windows): metres walked over the observed steps, metres from where it stood at
    the last future step and whether that is past `set_off`, for each stander (cvae_traj.evaluation.standing)."""
    past, future = windows.past, windows.future
    stood = standing(torch.from_numpy(past)).numpy()
    walked = np.linalg.norm(np.diff(past[stood], axis=1), axis=2).sum(axis=1)
    moved = np.linalg.norm(future[stood, -1] - past[stood, -1], axis=1)
    return walked, moved, moved > set_off, len(past)


def binned_estimate(train_walked, train_went, test_walked, edges) -> float:
    """The test standers' expected set-off share under the training standers' rate per bin of distance walked."""
    edges = np.r_[edges, np.inf]
    train_bin = np.digitize(train_walked, edges) - 1
    test_bin = np.digitize(test_walked, edges) - 1
    rates = np.array([train_went[train_bin == b].mean() if (train_bin == b).any() else train_went.mean()
                      for b in range(len(edges) - 1)])
    return float(rates[test_bin].mean())


rows = []
for scene in cfg.scenes:
    data = EthUcyDataModule(scene=scene, root=cfg.data)
    tr_walked, _, tr_went, _ = standers(data.windows("train"), cfg.set_off)
    te_walked, te_moved, te_went, te_total = standers(data.windows("test"), cfg.set_off)
    rows.append({
        "scene": scene, "test_windows": te_total, "test_standers": int(len(te_went)),
        "standing_share": len(te_went) / te_total,
        "set_off_test": float(te_went.mean()),
        "set_off_train": float(tr_went.mean()),
        "set_off_train_by_walked": binned_estimate(tr_walked, tr_went, te_walked, list(cfg.bins)),
        "stayers_median_moved_test": float(np.median(te_moved[~te_went])),
        "still_share_test": float((te_walked < cfg.bins[1]).mean()),
        "still_share_train": float((tr_walked < cfg.bins[1]).mean()),
    })
    print(rows[-1], flush=True)
write_json({"commit": git_commit(), "options": OmegaConf.to_container(cfg), "rows": rows}, cfg.output)

print(f"\nStanders' share that sets off (> {cfg.set_off} m by the last future step), test scene against its fold's "
      "training windows\n")
print("| scene | standers (share of windows) | test | training | training, by metres walked in the past | "
      "test stayers' median move (m) |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['scene']} | {r['test_standers']} ({r['standing_share']:.2f}) | {r['set_off_test']:.3f} | "
          f"{r['set_off_train']:.3f} | {r['set_off_train_by_walked']:.3f} | "
          f"{r['stayers_median_moved_test']:.3f} |")
