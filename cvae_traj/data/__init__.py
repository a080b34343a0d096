"""Track tables, windowing and the DataModules built on them."""
from cvae_traj.data.csv import CsvDataModule
from cvae_traj.data.datamodule import TrackDataModule, WindowDataset
from cvae_traj.data.eth_ucy import EthUcyDataModule, fold_files, prepare_eth_ucy
from cvae_traj.data.synthetic import SyntheticDataModule, junction_tracks
from cvae_traj.data.tracks import TrackTable, load_tracks, read_table, validate_tracks
from cvae_traj.data.windows import Windows, make_windows

__all__ = [
    "CsvDataModule", "EthUcyDataModule", "SyntheticDataModule", "TrackDataModule", "TrackTable", "WindowDataset",
    "Windows", "fold_files", "junction_tracks", "load_tracks", "make_windows", "prepare_eth_ucy", "read_table",
    "validate_tracks",
]
