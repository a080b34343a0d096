"""`predict(cfg)`: what predict.py does, from checkpoint and track table to futures file and plot."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from cvae_traj.data.tracks import load_tracks
from cvae_traj.inference import check_output_path, frame_to_step, load_model, predict_futures, write_futures
from cvae_traj.plotting import plot_futures, save_figure

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> Path:
    """Sample cfg.num_samples futures per current agent of cfg.input and write them to cfg.output.

    Everything is read and checked before anything is written, so bad input leaves no output behind.
    """
    output = check_output_path(cfg.output)
    model = load_model(cfg.ckpt_path)
    table = load_tracks(cfg.input, columns=dict(cfg.columns), time_unit=cfg.time_unit,
                        frame_step=cfg.frame_step, dt=model.hparams.dt)
    torch.manual_seed(cfg.seed)
    futures = predict_futures(model, table, num_samples=cfg.num_samples, at_frame=cfg.at_frame)
    figure = None
    if cfg.plot:
        figure = plot_futures(table, futures, frame_to_step(table, cfg.at_frame), model.hparams.obs_len)
    write_futures(futures, output)
    log.info("wrote %d futures of %d agents to %s", cfg.num_samples, futures["agent_id"].nunique(), output)
    if figure is not None:
        plot_path = Path(cfg.plot_path) if cfg.plot_path else output.with_suffix(".png")
        save_figure(figure, plot_path)
        log.info("wrote plot to %s", plot_path)
    return output
