"""Tabulate a Hydra multirun of train.py: one row per run, its swept settings beside its validation metrics.

    python train.py -m experiment=eth_ucy data.scene=zara1 model.beta=0.25,0.5,1,2 test=false \
        hydra.sweep.dir=benchmarks/runs/beta_zara1
    python -m cvae_traj.sweep benchmarks/runs/beta_zara1 model.beta [output=benchmarks/results/beta_zara1.md]

Validation, not test: a trade-off study is a model choice, and PROTOCOL.md keeps the test split out of it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from cvae_traj.cli import run_or_exit
from cvae_traj.errors import InputError
from cvae_traj.io import atomic_path

COLUMNS = (("min_ade_20", "val/min_ade_20", 3), ("min_fde_20", "val/min_fde_20", 3), ("ML ADE", "val/ml_ade", 3),
           ("IWAE NLL", "val/nll_iwae_10", 2), ("ELBO NLL", "val/nelbo", 2), ("KL", "kl", 2),
           ("active units", "val/active_units", 0))


def sweep_rows(sweep_dir: str | Path, keys: list[str]) -> list[dict]:
    """Each finished run under `sweep_dir`: the values of `keys` (dotted config paths) and its validation
    metrics at the selected checkpoint, with "kl" = the KL summed over latent dimensions; sorted by `keys`."""
    rows = []
    for metrics_file in sorted(Path(sweep_dir).glob("*/metrics.json")):
        config = OmegaConf.load(metrics_file.parent / "config.yaml")
        val = json.loads(metrics_file.read_text())["val"]
        kl = [v for k, v in val.items() if k.startswith("val/kl_dim/")]
        row = {key: OmegaConf.select(config, key) for key in keys}
        rows.append({**row, **val, "kl": sum(kl) if kl else None, "run": metrics_file.parent.name})
    if not rows:
        raise InputError(f"{sweep_dir}: no finished runs (no */metrics.json); run train.py -m with "
                         f"hydra.sweep.dir={sweep_dir} first")
    return sorted(rows, key=lambda r: tuple(r[k] for k in keys))


def sweep_table(rows: list[dict], keys: list[str]) -> str:
    """The rows as a Markdown table."""
    names = [name for name, key, _ in COLUMNS if any(r.get(key) is not None for r in rows)]
    lines = ["| " + " | ".join([*keys, *names]) + " |", "|" + "---|" * (len(keys) + len(names))]
    for r in rows:
        cells = [str(r[k]) for k in keys]
        cells += [f"{r[key]:.{digits}f}" for name, key, digits in COLUMNS if name in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    args = [a for a in argv if not a.startswith("output=")]
    outputs = [a.split("=", 1)[1] for a in argv if a.startswith("output=")]
    if len(args) < 2:
        raise InputError("usage: python -m cvae_traj.sweep SWEEP_DIR KEY [KEY ...] [output=FILE.md]")
    table = sweep_table(sweep_rows(args[0], args[1:]), args[1:])
    print(table, end="")
    for output in outputs:
        with atomic_path(Path(output)) as tmp:
            tmp.write_text(table)


if __name__ == "__main__":
    run_or_exit(lambda: main(sys.argv[1:]))
