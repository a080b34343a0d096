"""Tabulate a Hydra multirun of train.py: one row per run, its swept settings beside its validation metrics.

    python train.py -m experiment=eth_ucy data.scene=zara1 model.beta=0.25,0.5,1,2 test=false \
        hydra.sweep.dir=benchmarks/runs/beta_zara1
    python -m cvae_traj.sweep sweep_dir=benchmarks/runs/beta_zara1 'keys=[model.beta]' \
        [output=benchmarks/results/beta_zara1.md]

Validation, not test: a trade-off study is a model choice, and PROTOCOL.md keeps the test split out of it.
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

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


ConfigStore.instance().store(name="sweep", node={
    "defaults": [{"override hydra/job_logging": "stdout"}, "_self_"],
    "sweep_dir": "???",
    # Dotted config keys the sweep varied: the table's first columns.
    "keys": "???",
    # Also write the table here (Markdown); null: print it only.
    "output": None,
    "hydra": {"run": {"dir": "."}, "output_subdir": None},
})


@hydra.main(version_base="1.3", config_path=None, config_name="sweep")
def main(cfg: DictConfig) -> None:
    keys = list(cfg["keys"])
    table = run_or_exit(lambda: sweep_table(sweep_rows(cfg.sweep_dir, keys), keys))
    print(table, end="")
    if cfg.output:
        with atomic_path(Path(cfg.output)) as tmp:
            tmp.write_text(table)


if __name__ == "__main__":
    main()
