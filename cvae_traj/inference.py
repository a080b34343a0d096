"""The old name of the prediction module, kept for code written against it: its contents now live in
cvae_traj.forecast (load_model, predict_futures, iter_futures), cvae_traj.io (write_futures) and
cvae_traj.data.current (the agents current at a frame). Importing it warns; it will go in a later release."""
import warnings

from cvae_traj.data.current import FrameAgents, current_windows, frame_to_step
from cvae_traj.forecast import iter_futures, load_model, predict_futures
from cvae_traj.io import FUTURE_COLUMNS, check_output_path, write_futures

__all__ = ["FUTURE_COLUMNS", "FrameAgents", "check_output_path", "current_windows", "frame_to_step", "iter_futures",
           "load_model", "predict_futures", "write_futures"]

warnings.warn("cvae_traj.inference is now cvae_traj.forecast, with write_futures in cvae_traj.io (or import them "
              "from cvae_traj)", DeprecationWarning, stacklevel=2)
