"""`train(cfg)`: build data, model and trainer from a Hydra config, fit, select on validation, test once."""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import WeightAveraging
from omegaconf import DictConfig, OmegaConf

from cvae_traj.diagnostics import ACTIVE_UNIT_THRESHOLD
from cvae_traj.io import atomic_path, write_json
from cvae_traj.plotting import plot_kl_per_dim, save_figure

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Train, then evaluate the checkpoint that was best on validation; return and save the metrics.

    The run folder (`cfg.paths.output_dir`) receives config.yaml (resolved), checkpoints/best.ckpt and
    metrics.json. The test split is read only after training, and only when `cfg.test` is true.
    """
    # Absolute, as Lightning reports checkpoint paths: the two must compare.
    output_dir = Path(cfg.paths.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_dir / "config.yaml") as tmp:
        OmegaConf.save(cfg, tmp, resolve=True)
    L.seed_everything(cfg.seed, workers=True)

    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model: L.LightningModule = instantiate(cfg.model)
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()]
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    train_seconds = time.perf_counter() - start
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    # With weight averaging (callbacks.ema) validation scored the averaged weights, and a checkpoint's
    # state_dict holds them; left attached, the callback would load the raw weights it also stores for
    # resuming and test those. Detached, validate and test load exactly the weights that were selected.
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
    # Report validation at the selected checkpoint, not at the last epoch.
    val = _selected(lambda: trainer.validate(model, datamodule=datamodule, ckpt_path=best or None, verbose=False))
    if trainer.is_global_zero and getattr(model, "latent_stats", None):
        stats = model.latent_stats
        save_figure(plot_kl_per_dim(stats["kl_per_dim"], stats["activity"], ACTIVE_UNIT_THRESHOLD),
                    output_dir / "kl_per_dim.png")
    metrics = {
        "val": val,
        "best_checkpoint": str(Path(best).relative_to(output_dir)) if best else None,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_seconds": round(train_seconds, 2),
        "windows": {split: len(datamodule.windows(split)) for split in ("train", "val")},
        "seed": cfg.seed,
    }
    if cfg.get("test", True):
        start = time.perf_counter()
        metrics["test"] = _selected(lambda: trainer.test(model, datamodule=datamodule, ckpt_path=best or None,
                                                         verbose=False))
        metrics["test_seconds"] = round(time.perf_counter() - start, 2)
        metrics["windows"]["test"] = len(datamodule.windows("test"))
    if trainer.is_global_zero:
        write_json(metrics, output_dir / "metrics.json")
    log.info("run folder: %s", output_dir)
    return metrics


def score(cfg: DictConfig, ckpt: str | Path) -> dict:
    """The metrics `train` reports for a run, of a checkpoint made without training (an ensemble of runs,
    cvae_traj.ensemble): validation and test as the trainer logs them, on cfg's data; windows and parameters."""
    from cvae_traj.forecast import load_model  # forecast imports the system, as training does not need to

    datamodule = instantiate(cfg.data)
    model = load_model(ckpt)
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    metrics = {"val": trainer.validate(model, datamodule=datamodule, verbose=False)[0],
               "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
               "windows": {split: len(datamodule.windows(split)) for split in ("train", "val")}, "seed": cfg.seed}
    if cfg.get("test", True):
        start = time.perf_counter()
        metrics["test"] = trainer.test(model, datamodule=datamodule, verbose=False)[0]
        metrics["test_seconds"] = round(time.perf_counter() - start, 2)
        metrics["windows"]["test"] = len(datamodule.windows("test"))
    return metrics


def _selected(evaluate) -> dict:
    """The metrics of `evaluate()` (a trainer.validate / test call on the selected checkpoint), without
    Lightning's warning that the detached weight-averaging callback should be given back: detaching it is
    what makes the selected weights the evaluated ones."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint need to be provided")
        return evaluate()[0]


def format_summary(metrics: dict) -> str:
    """A small table of the final metrics beside constant velocity on the same windows."""
    lines = [f"{'split':<6} {'windows':>8} {'metric':<12} {'model':>8} {'const.vel':>9}"]
    for split in ("val", "test"):
        if split not in metrics:
            continue
        m = metrics[split]
        for name, cv in (("min_ade", "cv_ade"), ("min_fde", "cv_fde")):
            key = next(k for k in m if k.startswith(f"{split}/{name}_"))
            lines.append(f"{split:<6} {metrics['windows'][split]:>8} {key.split('/')[1]:<12} {m[key]:>8.3f} "
                         f"{m[f'{split}/{cv}']:>9.3f}")
    if metrics.get("best_checkpoint"):
        lines.append(f"best checkpoint (chosen on validation): {metrics['best_checkpoint']}")
    return "\n".join(lines)
