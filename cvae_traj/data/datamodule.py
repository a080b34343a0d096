"""The base DataModule: track tables in, (past, future) windows out as `TrajectoryBatch`es.

A subclass only says where each split's track tables come from (`load_split`); windowing, batching
and the checks are shared. To feed the model from your own pipeline, yield `TrajectoryBatch`es
(see `cvae_traj.batch`) from any DataLoader instead.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Literal

import lightning as L
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.data.augment import jittered, rotate_and_flip, time_reversed
from cvae_traj.data.tracks import TrackTable
from cvae_traj.data.windows import Windows, make_windows
from cvae_traj.errors import InputError

Split = Literal["train", "val", "test"]


class WindowDataset(Dataset):
    """Windows as a map-style dataset whose batched fetch gathers a whole batch with numpy."""

    def __init__(self, windows: Windows) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> TrajectoryBatch:
        return self.windows.batch([index])

    def __getitems__(self, indices: list[int]) -> TrajectoryBatch:
        return self.windows.batch(indices)


def collate_batch(batch: TrajectoryBatch) -> TrajectoryBatch:
    """The dataset already assembled the batch in `__getitems__`."""
    return batch


class TrackDataModule(L.LightningDataModule):
    """Windows of `obs_len` observed and `pred_len` future steps, `dt` seconds apart, from track tables.

    augment_rotate / augment_flip turn and mirror each training scene at random, augment_scale = (low, high)
    scales it by a log-uniform factor, augment_reverse adds every training recording played backwards in
    time, augment_jitter (metres) adds that much Gaussian noise to every observed position, the target's and
    the neighbours', never to the future (see data/augment.py).
    """

    def __init__(
        self,
        obs_len: int = 8,
        pred_len: int = 12,
        dt: float = 0.4,
        stride: int = 1,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        augment_rotate: bool = False,
        augment_flip: bool = False,
        augment_scale: tuple[float, float] | None = None,
        augment_reverse: bool = False,
        augment_jitter: float | None = None,
    ) -> None:
        super().__init__()
        if obs_len < 2 or pred_len < 1:
            raise InputError(f"obs_len must be >= 2 and pred_len >= 1, got {obs_len} and {pred_len}")
        self.obs_len, self.pred_len, self.dt, self.stride = obs_len, pred_len, dt, stride
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.augment_rotate, self.augment_flip, self.augment_reverse = augment_rotate, augment_flip, augment_reverse
        self.augment_scale = None if augment_scale is None else tuple(float(v) for v in augment_scale)
        if self.augment_scale is not None and not (len(self.augment_scale) == 2
                                                   and 0 < self.augment_scale[0] <= self.augment_scale[1]):
            raise InputError(f"augment_scale must be [low, high] with 0 < low <= high, got {augment_scale}")
        if augment_jitter is not None and not augment_jitter >= 0:
            raise InputError(f"augment_jitter must be a standard deviation >= 0 in metres, got {augment_jitter!r}")
        self.augment_jitter = augment_jitter or None
        self._windows: dict[str, Windows] = {}

    @abstractmethod
    def load_split(self, split: Split) -> list[TrackTable]:
        """The track tables of one split; each is one recording with its own agent ids."""

    def windows(self, split: Split) -> Windows:
        """All windows of a split, cut once and cached."""
        if split not in self._windows:
            tables = self.load_split(split)
            if split == "train" and self.augment_reverse:
                tables = tables + [time_reversed(t) for t in tables]
            parts = [make_windows(t, self.obs_len, self.pred_len, self.stride) for t in tables]
            if sum(len(p) for p in parts) == 0:
                sources = ", ".join(t.source for t in tables)
                raise InputError(f"{sources}: no agent has {self.obs_len + self.pred_len} consecutive steps "
                                 f"for the {split} split (obs_len={self.obs_len}, pred_len={self.pred_len})")
            self._windows[split] = Windows.concatenate(parts)
        return self._windows[split]

    def setup(self, stage: str | None = None) -> None:
        # The test split is only touched when testing, so that nothing before it can peek at it.
        if stage in ("fit", None):
            self.windows("train")
            self.windows("val")
        if stage in ("validate",):
            self.windows("val")
        if stage in ("test",):
            self.windows("test")

    def on_after_batch_transfer(self, batch: TrajectoryBatch, dataloader_idx: int) -> TrajectoryBatch:
        """Augment training batches only; validation and test see the data as recorded."""
        if self.trainer is None or not self.trainer.training:
            return batch
        if self.augment_rotate or self.augment_flip or self.augment_scale is not None:
            batch = rotate_and_flip(batch, rotate=self.augment_rotate, flip=self.augment_flip,
                                    scale=self.augment_scale)
        if self.augment_jitter is not None:
            batch = jittered(batch, self.augment_jitter)
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def _loader(self, split: Split, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = WindowDataset(self.windows(split))
        sampler = None
        world = getattr(self.trainer, "world_size", 1) if self.trainer is not None else 1
        if split != "train" and world > 1:
            # Each process evaluates a disjoint share and nothing is padded, so no window counts twice
            # (Lightning's own DistributedSampler would repeat windows to even the shares out).
            sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=self.trainer.global_rank,
                                                   shuffle=False)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=False,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0,
        )
