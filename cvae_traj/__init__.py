"""cvae_traj: multi-modal trajectory forecasting with a conditional VAE."""
from cvae_traj.batch import TrajectoryBatch
from cvae_traj.calibration import OnlineTemperature, WidthOddsTemperature
from cvae_traj.data import CsvDataModule, EthUcyDataModule, SyntheticDataModule, TrackDataModule
from cvae_traj.forecast import NewcomerRouter, iter_futures, load_model, predict_futures
from cvae_traj.io import write_futures
from cvae_traj.live import LiveForecaster
from cvae_traj.system import TrajectoryCVAE

__all__ = ["CsvDataModule", "EthUcyDataModule", "LiveForecaster", "NewcomerRouter", "OnlineTemperature",
           "SyntheticDataModule", "TrackDataModule", "TrajectoryBatch", "TrajectoryCVAE", "WidthOddsTemperature",
           "iter_futures", "load_model", "predict_futures", "write_futures"]
