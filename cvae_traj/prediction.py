"""`predict(cfg)`: what predict.py does, from checkpoint and track table to futures file and plot."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig

from cvae_traj.data.tracks import load_recent_tracks
from cvae_traj.inference import check_output_path, frame_to_step, iter_futures, load_model, write_futures
from cvae_traj.plotting import plot_futures, save_figure

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> Path:
    """Sample cfg.num_samples futures per current agent of cfg.input and write them to cfg.output.

    The input is read in chunks of cfg.chunk_rows rows, keeping only the frames the forecast uses, and the
    futures are sampled and written cfg.batch_size agents at a time, so neither the table nor the futures
    need to fit in memory (except with plot=true, which draws all futures). Everything is checked before
    the first batch is sampled, and the output only appears once complete, so bad input leaves none behind.
    """
    output = check_output_path(cfg.output)
    model = load_model(cfg.ckpt_path)
    table = load_recent_tracks(cfg.input, model.hparams.obs_len, model.hparams.pred_len, at_frame=cfg.at_frame,
                               chunk_rows=cfg.chunk_rows, columns=dict(cfg.columns), time_unit=cfg.time_unit,
                               frame_step=cfg.frame_step, dt=model.hparams.dt)
    torch.manual_seed(cfg.seed)
    futures = iter_futures(model, table, num_samples=cfg.num_samples, at_frame=cfg.at_frame,
                           batch_size=cfg.batch_size, cluster_from=cfg.get("cluster_from"))
    figure = None
    if cfg.plot:
        futures = list(futures)
        figure = plot_futures(table, pd.concat(futures, ignore_index=True), frame_to_step(table, cfg.at_frame),
                              model.hparams.obs_len)
    rows = write_futures(futures, output)
    agents = rows // (cfg.num_samples * model.hparams.pred_len)
    log.info("wrote %d futures of %d agents to %s", cfg.num_samples, agents, output)
    if figure is not None:
        plot_path = Path(cfg.plot_path) if cfg.plot_path else output.with_suffix(".png")
        save_figure(figure, plot_path)
        log.info("wrote plot to %s", plot_path)
    return output
