"""From a checkpoint and a track table to futures: load_model, predict_futures / iter_futures, and predict(cfg),
what predict.py runs (table -> current agents -> batches -> model -> futures -> file)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch import Tensor

from cvae_traj.data.current import FrameAgents, frame_to_step
from cvae_traj.data.tracks import TimeUnit, TrackTable, load_recent_tracks, load_tracks, validate_tracks
from cvae_traj.errors import CheckpointError, InputError
from cvae_traj.io import check_output_path, write_futures
from cvae_traj.plotting import plot_futures, save_figure, write_animation
from cvae_traj.batch import TrajectoryBatch
from cvae_traj.system import LEGACY_HPARAMS, TrajectoryCVAE

log = logging.getLogger(__name__)
# Options retired after their screens (benchmarks/HISTORY.md), with the one value today's model still builds: a
# checkpoint that holds another cannot be rebuilt as it was trained. free_bits and mixture_kl changed only the
# training loss, so any value of theirs loads.
RETIRED_HPARAMS = {"decoder": "mlp", "noise_order": 1, "decoder_layers": 2, "social_radius": None,
                   "social_extended": False, "social_rounds": 1}


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> TrajectoryCVAE:
    """A TrajectoryCVAE from a checkpoint, in eval mode; CheckpointError if that is not what the file holds.

    Loading uses torch's weights_only unpickler, so a checkpoint cannot execute code when it is read. A
    checkpoint written before an option existed is built with the value it was trained with (LEGACY_HPARAMS);
    one trained with a retired option at another value than the one left is refused (RETIRED_HPARAMS).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt file raises whatever the unpickler meets first
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(err)})") from None
    if not isinstance(content, dict) or not {"state_dict", "hyper_parameters"} <= content.keys():
        raise CheckpointError(f"{path}: not a Lightning checkpoint with hyper-parameters and weights")
    hparams = content["hyper_parameters"]
    retired = [f"{k}={hparams[k]!r}" for k, v in RETIRED_HPARAMS.items() if k in hparams and hparams[k] != v]
    if retired:
        raise CheckpointError(f"{path}: trained with {', '.join(retired)}, an option this version of cvae_traj no "
                              f"longer has; train the model again")
    legacy = {k: hparams.get(k, v) for k, v in LEGACY_HPARAMS.items()}  # the file is read once already
    try:
        model = TrajectoryCVAE.load_from_checkpoint(path, map_location=map_location, weights_only=True, **legacy)
    except (KeyError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"{path}: checkpoint does not fit TrajectoryCVAE ({_first_line(err)})") from None
    broken = [name for name, value in model.state_dict().items() if value.is_floating_point()
              and not torch.isfinite(value).all()]
    if broken:  # a run saved after it diverged: every future would be NaN
        raise CheckpointError(f"{path}: non-finite weights in {', '.join(broken[:3])}"
                              + (f" and {len(broken) - 3} more" if len(broken) > 3 else ""))
    return model.eval()


def predict_futures(
    model: TrajectoryCVAE,
    tracks: pd.DataFrame | TrackTable,
    num_samples: int = 20,
    at_frame: float | None = None,
    columns: Mapping[str, str] | None = None,
    time_unit: TimeUnit = "frame",
    frame_step: float | None = None,
    batch_size: int = 1024,
    neighbour_budget: int = 2**16,
    cluster_from: int | None = None,
    min_history: int | None = None,
    newcomer_model: TrajectoryCVAE | None = None,
) -> pd.DataFrame:
    """K futures per agent, in long format with columns agent_id, sample, step, frame, x, y, weight.

    Agents are those present at `at_frame` (default: the table's last frame) with at least `min_history`
    consecutive positions ending there (default: the fewest the model was trained on, T_obs unless it was
    trained with model.min_history; check_min_history). `step` runs 1..T_pred and `frame` is the future frame
    in the table's units;
    `sample` runs 0..K-1. By default the K futures are faithful draws (TrajectoryCVAE.sample), each of
    weight 1/K: the share of them that does something estimates its probability. With `cluster_from` M
    they are representatives of M draws clustered by final position (TrajectoryCVAE.representatives):
    spread over where the agent may end up, each weighted by the share of the draws it stands for.
    Seed with torch.manual_seed for repeatable samples. `iter_futures` gives the same rows batch by batch,
    for more agents than the futures of all of them fit in memory.

    With `newcomer_model` (a model trained with model.min_history), agents seen for all T_obs steps get their
    futures from `model` and the others from the newcomer model (NewcomerRouter), and min_history defaults to
    the newcomer model's: whole-history accuracy stays the main model's, and newcomers are forecast too.
    """
    return pd.concat(iter_futures(model, tracks, num_samples, at_frame, columns, time_unit, frame_step, batch_size,
                                  neighbour_budget, cluster_from, min_history, newcomer_model), ignore_index=True)


def iter_futures(
    model: TrajectoryCVAE,
    tracks: pd.DataFrame | TrackTable,
    num_samples: int = 20,
    at_frame: float | None = None,
    columns: Mapping[str, str] | None = None,
    time_unit: TimeUnit = "frame",
    frame_step: float | None = None,
    batch_size: int = 1024,
    neighbour_budget: int = 2**16,
    cluster_from: int | None = None,
    min_history: int | None = None,
    newcomer_model: TrajectoryCVAE | None = None,
) -> Iterator[pd.DataFrame]:
    """The rows of `predict_futures`, one data frame per batch, sampled as they are asked for.

    A batch holds at most `batch_size` agents, and fewer in a crowd: every agent present in the observed
    frames is a neighbour of each, so a batch holds at most `neighbour_budget` neighbour tracks. The table
    is checked and its agents found here, so bad input raises at the call, before any sampling.
    """
    if cluster_from is not None and cluster_from < num_samples:
        raise InputError(f"cluster_from ({cluster_from}) must be at least num_samples ({num_samples})")
    router = None if newcomer_model is None else NewcomerRouter(model, newcomer_model)
    min_history = check_min_history(model if newcomer_model is None else newcomer_model, min_history)
    table = tracks if isinstance(tracks, TrackTable) else validate_tracks(
        tracks, columns=columns, time_unit=time_unit, frame_step=frame_step, dt=model.hparams.dt)
    at_step = frame_to_step(table, at_frame)
    present = FrameAgents.current(table, model.hparams.obs_len, at_step, min_history)
    # All windows end at the same step, so each has the same neighbours: the others present.
    size = max(1, min(batch_size, neighbour_budget // max(present.crowd, 1)))
    frames = table.frames(at_step + np.arange(1, model.hparams.pred_len + 1))
    return sample_batches(model, table.agent_ids[present.agent], frames, present, num_samples, size, cluster_from,
                          router)


class NewcomerRouter(torch.nn.Module):
    """Samples each agent with one of two models by how much of its past was seen: agents with all T_obs steps
    with `model`, those with fewer with `newcomer` (a model trained with model.min_history to forecast them).

    Training on short pasts can cost some whole-history accuracy (benchmarks/HISTORY.md: ETH's fold), so a pair
    keeps the whole-history model's futures where it can forecast and the newcomer model's where it cannot. It
    samples as a TrajectoryCVAE does (sample, representatives): in a batch of both kinds, the whole-history
    agents' noise is drawn first, then the newcomers'. `samplers` draws with other samplers of the two models
    (export.OnnxSampler) in their stead. InputError if the two do not fit together.
    """

    def __init__(self, model: TrajectoryCVAE, newcomer: TrajectoryCVAE, samplers: tuple | None = None) -> None:
        super().__init__()
        shapes = [(m.hparams.obs_len, m.hparams.pred_len, float(m.hparams.dt)) for m in (model, newcomer)]
        if shapes[0] != shapes[1]:
            raise InputError("the newcomer model observes {}, forecasts {} steps at dt={} s, the model {}, {} at "
                             "{} s: they must match".format(*shapes[1], *shapes[0]))
        if newcomer.cvae.min_history >= newcomer.hparams.obs_len:
            raise InputError(f"the newcomer model was trained on whole histories only ({newcomer.hparams.obs_len} "
                             f"steps): train it with model.min_history=2 to forecast newcomers")
        self.model, self.newcomer = model, newcomer
        self.obs_len, self.hparams = model.hparams.obs_len, model.hparams
        self._samplers = samplers or (model, newcomer)

    @property
    def min_history(self) -> int:
        """The fewest observed steps an agent needs: the newcomer model's."""
        return self.newcomer.cvae.min_history

    def sample(self, batch: TrajectoryBatch, num_samples: int = 20) -> Tensor:
        """K faithful futures per agent, (B, K, T_pred, 2), each from the model for its history."""
        return self._routed(batch, lambda sampler, part: (sampler.sample(part, num_samples),))[0]

    def representatives(self, batch: TrajectoryBatch, num_samples: int = 20, draws: int = 200) -> tuple[Tensor, Tensor]:
        """K representatives of `draws` futures with their weights (TrajectoryCVAE.representatives), each from
        the model for its history."""
        return self._routed(batch, lambda sampler, part: sampler.representatives(part, num_samples, draws))

    def _routed(self, batch: TrajectoryBatch, draw) -> tuple[Tensor, ...]:
        whole_sampler, newcomer_sampler = self._samplers
        if batch.history is None or bool((batch.history >= self.obs_len).all()):
            return tuple(draw(whole_sampler, batch.with_history(None)))
        short = batch.history < self.obs_len
        if bool(short.all()):
            return tuple(draw(newcomer_sampler, batch))
        parts = (draw(whole_sampler, batch.select(~short).with_history(None)), draw(newcomer_sampler, batch.select(short)))
        routed = []
        for whole, newcomer in zip(*parts):
            out = whole.new_empty((len(batch),) + tuple(whole.shape[1:]))
            out[~short], out[short] = whole, newcomer
            routed.append(out)
        return tuple(routed)


def check_min_history(model: TrajectoryCVAE, min_history: int | None) -> int:
    """The fewest consecutive positions an agent needs to be forecast: `min_history`, or by default the fewest
    the model was trained on. InputError if the model was not trained on that few, or it is beyond T_obs."""
    trained, obs_len = model.cvae.min_history, model.hparams.obs_len
    if min_history is None:
        return trained
    if isinstance(min_history, bool) or not isinstance(min_history, (int, np.integer)):
        raise InputError(f"min_history must be a whole number of observed steps, got {min_history!r}")
    if min_history < trained:
        shortest = (f"only agents with all {obs_len} observed steps (it was trained on full histories; one trained "
                    f"with model.min_history=2 forecasts from 2)") if trained == obs_len else \
            f"agents with at least {trained} observed steps (the shortest history it was trained on)"
        raise InputError(f"min_history={min_history} is too short for this model: it forecasts {shortest}")
    if min_history > obs_len:
        raise InputError(f"min_history={min_history} is beyond the {obs_len} steps this model observes")
    return int(min_history)


@torch.no_grad()
def sample_batches(model: TrajectoryCVAE, agent_ids: np.ndarray, frames: np.ndarray, present: FrameAgents,
                   num_samples: int, batch_size: int, cluster_from: int | None,
                   sampler=None) -> Iterator[pd.DataFrame]:
    """The futures of `present`'s windows (agent_ids[w] the id of window w; frames the T_pred future frames),
    `batch_size` windows at a time, in predict_futures' long format. Draws in window order, so the same torch
    seed gives the same futures however the windows were found (a table or a live stream). `sampler` draws them
    in the model's stead where given (export.OnnxSampler, NewcomerRouter)."""
    device = next(model.parameters()).device if isinstance(sampler, (type(None), torch.nn.Module)) else \
        torch.device("cpu")
    steps = np.arange(1, model.hparams.pred_len + 1)
    model = model if sampler is None else sampler
    for lo in range(0, len(present), batch_size):
        index = np.arange(lo, min(lo + batch_size, len(present)))
        batch = present.batch(index).to(device)
        if cluster_from is None:
            samples = model.sample(batch, num_samples=num_samples).cpu().numpy()
            weights = np.full(samples.shape[:2], 1.0 / num_samples, dtype=np.float32)
        else:
            samples, weights = (part.cpu().numpy() for part in model.representatives(batch, num_samples, cluster_from))
        w, k, t, _ = samples.shape  # (W, K, T_pred, 2)
        yield pd.DataFrame({
            "agent_id": np.repeat(agent_ids[index], k * t),
            "sample": np.tile(np.repeat(np.arange(k), t), w),
            "step": np.tile(steps, w * k),
            "frame": np.tile(frames, w * k),
            "x": samples[..., 0].ravel(),
            "y": samples[..., 1].ravel(),
            "weight": np.repeat(weights.ravel(), t),
        })  # in FUTURE_COLUMNS' order (naming columns= as well makes pandas reindex: slower)


def predict(cfg: DictConfig) -> Path:
    """Sample cfg.num_samples futures per current agent of cfg.input and write them to cfg.output.

    The input is read in chunks of cfg.chunk_rows rows, keeping only the frames the forecast uses, and the
    futures are sampled and written cfg.batch_size agents at a time, so neither the table nor the futures
    need to fit in memory (except with plot=true, which draws all futures). Everything is checked before
    the first batch is sampled, and the output only appears once complete, so bad input leaves none behind.
    """
    output = check_output_path(cfg.output)
    model = load_model(cfg.ckpt_path)
    newcomer = cfg.get("newcomer_ckpt_path")
    newcomer = None if newcomer is None else load_model(newcomer)
    if newcomer is not None:
        NewcomerRouter(model, newcomer)  # the pair checked before any input is read
    temperature = cfg.get("prior_temperature")
    if temperature is not None:
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise InputError(f"prior_temperature must be a positive number, got {temperature!r}")
        for each in (model, newcomer):
            if each is not None:
                each.cvae.prior_temperature = float(temperature)
    table = load_recent_tracks(cfg.input, model.hparams.obs_len, model.hparams.pred_len, at_frame=cfg.at_frame,
                               chunk_rows=cfg.chunk_rows, columns=dict(cfg.columns), time_unit=cfg.time_unit,
                               frame_step=cfg.frame_step, dt=model.hparams.dt)
    torch.manual_seed(cfg.seed)
    futures = iter_futures(model, table, num_samples=cfg.num_samples, at_frame=cfg.at_frame,
                           batch_size=cfg.batch_size, cluster_from=cfg.get("cluster_from"),
                           min_history=cfg.get("min_history"), newcomer_model=newcomer)
    figure = None
    if cfg.plot:
        futures = list(futures)
        figure = plot_futures(table, pd.concat(futures, ignore_index=True), frame_to_step(table, cfg.at_frame),
                              model.hparams.obs_len)
    whole = None
    if cfg.animate:  # read and checked before anything is written
        whole = load_tracks(cfg.input, columns=dict(cfg.columns), time_unit=cfg.time_unit, frame_step=cfg.frame_step,
                            dt=model.hparams.dt)
    rows = write_futures(futures, output)
    agents = rows // (cfg.num_samples * model.hparams.pred_len)
    log.info("wrote %d futures of %d agents to %s", cfg.num_samples, agents, output)
    if figure is not None:
        plot_path = Path(cfg.plot_path) if cfg.plot_path else output.with_suffix(".png")
        save_figure(figure, plot_path)
        log.info("wrote plot to %s", plot_path)
    if whole is not None:
        from cvae_traj.live import replay  # live builds on this module

        torch.manual_seed(cfg.seed)
        forecasts = replay(model, whole, cfg.num_samples, cfg.get("cluster_from"),
                           min_history=cfg.get("min_history"), newcomer_model=newcomer)
        for path in write_animation(whole, forecasts, model.hparams.obs_len, output.with_suffix(".gif"),
                                    fps=cfg.fps):
            log.info("wrote animation to %s", path)
    return output


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__
