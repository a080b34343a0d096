"""Loading a trained model and sampling futures for the agents of a track table."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.data.tracks import TimeUnit, TrackTable, validate_tracks
from cvae_traj.data.windows import Windows, make_windows
from cvae_traj.errors import CheckpointError, InputError
from cvae_traj.io import atomic_path
from cvae_traj.system import TrajectoryCVAE

# Options whose default changed after checkpoints were written without them: the value those were trained with.
LEGACY_HPARAMS = {"prior_components": 1}
# Options retired after their screens (benchmarks/HISTORY.md), with the one value today's model still builds. A
# checkpoint that holds another cannot be rebuilt as it was trained. mixture_kl changed only the training loss
# (None: any value loads).
RETIRED_HPARAMS = {"decoder": "mlp", "noise_order": 1, "decoder_layers": 2, "social_radius": None,
                   "social_extended": False, "social_rounds": 1, "free_bits": None, "mixture_kl": None}
# weight: the probability mass a future stands for (1/K for K faithful draws; a cluster's share of the draws
# for representatives); the weights of an agent's K futures sum to 1.
FUTURE_COLUMNS = ("agent_id", "sample", "step", "frame", "x", "y", "weight")
OUTPUT_FORMATS = {".csv": "CSV", ".parquet": "Parquet"}


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
    retired = [f"{k}={hparams[k]!r}" for k, v in RETIRED_HPARAMS.items()
               if v is not None and k in hparams and hparams[k] != v]
    if retired:
        raise CheckpointError(f"{path}: trained with {', '.join(retired)}, an option this version of cvae_traj no "
                              f"longer has; train the model again")
    legacy = {k: v for k, v in LEGACY_HPARAMS.items() if k not in hparams}
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


def current_windows(table: TrackTable, obs_len: int, at_step: int) -> Windows:
    """Windows of the agents whose last `obs_len` positions are consecutive and end at `at_step`.

    Neighbours come from the same observed steps, so rows after `at_step` never reach the model.
    """
    observed = table.select_steps(at_step - obs_len + 1, at_step)
    windows = make_windows(observed, obs_len, 0)
    if len(windows) == 0:
        raise InputError(f"{table.source}: no agent has {obs_len} consecutive positions ending at frame "
                         f"{table.frames(at_step):g}")
    return windows


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
) -> pd.DataFrame:
    """K futures per agent, in long format with columns agent_id, sample, step, frame, x, y, weight.

    Agents are those whose last T_obs positions are consecutive and end at `at_frame` (default: the
    table's last frame). `step` runs 1..T_pred and `frame` is the future frame in the table's units;
    `sample` runs 0..K-1. By default the K futures are faithful draws (TrajectoryCVAE.sample), each of
    weight 1/K: the share of them that does something estimates its probability. With `cluster_from` M
    they are representatives of M draws clustered by final position (TrajectoryCVAE.representatives):
    spread over where the agent may end up, each weighted by the share of the draws it stands for.
    Seed with torch.manual_seed for repeatable samples. `iter_futures` gives the same rows batch by batch,
    for more agents than the futures of all of them fit in memory.
    """
    return pd.concat(iter_futures(model, tracks, num_samples, at_frame, columns, time_unit, frame_step, batch_size,
                                  neighbour_budget, cluster_from), ignore_index=True)


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
) -> Iterator[pd.DataFrame]:
    """The rows of `predict_futures`, one data frame per batch, sampled as they are asked for.

    A batch holds at most `batch_size` agents, and fewer in a crowd: every agent present in the observed
    frames is a neighbour of each, so a batch holds at most `neighbour_budget` neighbour tracks. The table
    is checked and its agents found here, so bad input raises at the call, before any sampling.
    """
    if cluster_from is not None and cluster_from < num_samples:
        raise InputError(f"cluster_from ({cluster_from}) must be at least num_samples ({num_samples})")
    table = tracks if isinstance(tracks, TrackTable) else validate_tracks(
        tracks, columns=columns, time_unit=time_unit, frame_step=frame_step, dt=model.hparams.dt)
    at_step = frame_to_step(table, at_frame)
    windows = current_windows(table, model.hparams.obs_len, at_step)
    present = FrameAgents.gather(windows)
    # All windows end at the same step, so each has the same neighbours: the others present.
    size = max(1, min(batch_size, neighbour_budget // max(present.crowd, 1)))
    return _sample_batches(model, table, present, at_step, num_samples, size, cluster_from)


class FrameAgents:
    """The agents present in the observed steps of windows that all end at one step (`current_windows`), as one
    array, so that a batch is gathered from it: every window's neighbours are the same agents, all but itself.
    A batch equals `windows.batch` of the same windows (tested), without looking neighbours up per window."""

    def __init__(self, tracks: np.ndarray, row: np.ndarray, agent: np.ndarray) -> None:
        self.tracks = tracks  # (A, T_obs, 2) float32, NaN where absent; agents ascending, as Windows orders them
        self.row = row  # (W,): each window's agent among them
        self.agent = agent  # (W,): each window's agent in its table

    @classmethod
    def gather(cls, windows: Windows) -> FrameAgents:
        index = windows.index  # built on the observed steps only, so its dense steps are 0 .. T_obs - 1
        agents, inverse = np.unique(index.agent, return_inverse=True)
        tracks = np.full((len(agents), windows.obs_len, 2), np.nan, dtype=np.float32)
        tracks[inverse.reshape(-1), index.step_dense] = index.xy
        return cls(tracks, np.searchsorted(agents, windows.agent), windows.agent)

    def __len__(self) -> int:
        return len(self.row)

    @property
    def crowd(self) -> int:
        """Neighbours of each window."""
        return len(self.tracks) - 1

    def batch(self, indices: np.ndarray) -> TrajectoryBatch:
        row = self.row[indices]
        slot = np.arange(self.crowd)
        others = slot[None] + (slot[None] >= row[:, None])  # (B, A - 1): every agent but the target, ascending
        neigh = self.tracks[others]
        mask = ~np.isnan(neigh[..., 0])
        past = self.tracks[row]
        return TrajectoryBatch(
            past=torch.from_numpy(past),
            future=torch.from_numpy(past[:, :0]),
            neighbours=torch.from_numpy(np.where(mask[..., None], neigh, np.float32(0.0))),
            neighbour_mask=torch.from_numpy(mask),
        )


@torch.no_grad()
def _sample_batches(model: TrajectoryCVAE, table: TrackTable, present: FrameAgents, at_step: int, num_samples: int,
                    batch_size: int, cluster_from: int | None) -> Iterator[pd.DataFrame]:
    device = next(model.parameters()).device
    steps = np.arange(1, model.hparams.pred_len + 1)
    frames = table.frames(at_step + steps)
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
            "agent_id": np.repeat(table.agent_ids[present.agent[index]], k * t),
            "sample": np.tile(np.repeat(np.arange(k), t), w),
            "step": np.tile(steps, w * k),
            "frame": np.tile(frames, w * k),
            "x": samples[..., 0].ravel(),
            "y": samples[..., 1].ravel(),
            "weight": np.repeat(weights.ravel(), t),
        })  # in FUTURE_COLUMNS' order (naming columns= as well makes pandas reindex: slower)


def frame_to_step(table: TrackTable, frame: float | None) -> int:
    """The grid step of a frame of the table (None: its last frame)."""
    if frame is None:
        return int(table.step.max())
    grid = (float(frame) - table.frame0) / table.frame_step
    if abs(grid - round(grid)) > 1e-3 or not table.step.min() <= round(grid) <= table.step.max():
        raise InputError(f"{table.source}: at_frame {frame:g} is not a frame of the table")
    return int(round(grid))


def check_output_path(path: str | Path) -> Path:
    """Refuse an output format we cannot write before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise InputError(f"{path}: output must end in {' or '.join(OUTPUT_FORMATS)}")
    return path


def write_futures(futures: pd.DataFrame | Iterable[pd.DataFrame], path: str | Path) -> int:
    """Write futures as CSV or Parquet (by extension), atomically; returns the number of rows written.

    `futures` may be one data frame or an iterable of them (as `iter_futures` gives), written as they come:
    if the iterable fails part way, the target is left as it was.
    """
    path = check_output_path(path)
    chunks = [futures] if isinstance(futures, pd.DataFrame) else futures
    rows = 0
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            writer = None
            try:
                for chunk in chunks:
                    part = pa.Table.from_pandas(chunk, preserve_index=False)
                    writer = writer or pq.ParquetWriter(tmp, part.schema)
                    writer.write_table(part)
                    rows += len(chunk)
                if writer is None:
                    pd.DataFrame(columns=list(FUTURE_COLUMNS)).to_parquet(tmp, index=False)
            finally:
                if writer is not None:
                    writer.close()
        else:
            with open(tmp, "w", newline="") as f:
                header = True
                for chunk in chunks:
                    chunk.to_csv(f, index=False, header=header)
                    header, rows = False, rows + len(chunk)
                if header:
                    f.write(",".join(FUTURE_COLUMNS) + "\n")
    return rows


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__
