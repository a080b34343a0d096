"""What the command-line entry points share: user errors become one line on stderr, not a traceback."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, TypeVar

from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from cvae_traj.data.tracks import load_tracks
from cvae_traj.data.windows import Windows, make_windows
from cvae_traj.errors import CvaeTrajError, InputError

T = TypeVar("T")


def user_error(err: BaseException) -> CvaeTrajError | None:
    """The CvaeTrajError behind an exception, also when Hydra's instantiate wrapped it."""
    while err is not None:
        if isinstance(err, CvaeTrajError):
            return err
        if isinstance(err, MissingMandatoryValue):  # a required option left out on the command line
            return InputError(f"missing option {err.full_key}=... (give it on the command line)")
        err = err.__cause__ or err.__context__
    return None


def run_or_exit(fn: Callable[[], T]) -> T:
    """Run `fn`; on a user error print `error: <message>` on one line and exit with status 2."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - only user errors are caught, the rest re-raised
        cause = user_error(err)
        if cause is None:
            raise
        print(f"error: {' '.join(str(cause).split())}", file=sys.stderr)
        raise SystemExit(2) from None


# The options of a command that reads windows of known futures from a track table (`input`), as predict.py reads
# its input: python -m cvae_traj.calibration and python -m cvae_traj.representatives.
KNOWN_FUTURES_OPTIONS = {
    "stride": 1,
    "columns": {"frame": "frame", "agent_id": "agent_id", "x": "x", "y": "y"},
    "time_unit": "frame",
    "frame_step": None,
}


def checkpoint_output(path: str | Path) -> Path:
    """`path` as a Path, or InputError if it does not name a checkpoint (checked before anything is read)."""
    if Path(path).suffix != ".ckpt":
        raise InputError(f"{path}: output must be a checkpoint ending in .ckpt")
    return Path(path)


def known_windows(cfg: DictConfig, hparams, purpose: str) -> Windows:
    """Every window (cfg.stride apart) of cfg.input with a whole past and future for a model of `hparams`;
    InputError naming `purpose` (what the futures are for) if there is none."""
    table = load_tracks(cfg.input, columns=dict(cfg.columns), time_unit=cfg.time_unit, frame_step=cfg.frame_step,
                        dt=hparams.dt)
    windows = make_windows(table, hparams.obs_len, hparams.pred_len, cfg.stride)
    if len(windows) == 0:
        raise InputError(f"{cfg.input}: no agent has {hparams.obs_len + hparams.pred_len} consecutive steps (obs_len="
                         f"{hparams.obs_len}, pred_len={hparams.pred_len}), so no future to {purpose}")
    return windows
