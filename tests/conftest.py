"""Shared fixtures: the real configs, the prepared ETH/UCY folder and one short synthetic training run."""
from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from cvae_traj import SyntheticDataModule, TrajectoryCVAE
from cvae_traj.data.eth_ucy import SHA256

ROOT = Path(__file__).resolve().parents[1]
ETH_UCY_ROOT = ROOT / "data" / "eth_ucy"


def compose_config(name: str = "train", overrides: list[str] | None = None) -> DictConfig:
    """The project's real Hydra config, composed as train.py / predict.py would."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name=name, overrides=overrides or [])


@pytest.fixture
def tiny_train_cfg(tmp_path) -> DictConfig:
    """The default training config shrunk to a few CPU batches, writing into tmp_path."""
    return compose_config("train", [
        f"paths.output_dir={tmp_path}", "experiment=smoke", "logger=none",
        "data.num_train_agents=60", "data.num_val_agents=20", "data.num_test_agents=20",
    ])


@pytest.fixture(scope="session")
def eth_ucy_root() -> Path:
    """The prepared ETH/UCY folder; CI sets CVAE_TRAJ_REQUIRE_ETH_UCY=1 so that its absence fails."""
    if all((ETH_UCY_ROOT / rel).is_file() for rel in SHA256):
        return ETH_UCY_ROOT
    message = f"ETH/UCY not prepared in {ETH_UCY_ROOT}; run python -m cvae_traj.prepare_data source=<folder or URL>"
    if os.environ.get("CVAE_TRAJ_REQUIRE_ETH_UCY") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> tuple[TrajectoryCVAE, SyntheticDataModule, Path]:
    """A model trained briefly on the junction data, its datamodule and its checkpoint (shared by tests)."""
    L.seed_everything(0)
    datamodule = SyntheticDataModule(num_train_agents=800, num_val_agents=100, num_test_agents=100)
    model = TrajectoryCVAE()
    trainer = L.Trainer(max_epochs=20, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=datamodule)
    ckpt = tmp_path_factory.mktemp("synthetic") / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    return model.eval(), datamodule, ckpt
