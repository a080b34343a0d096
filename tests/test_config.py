"""Every option of every config group composes with the rest and instantiates what it names."""
import lightning as L
import pytest
from hydra.utils import instantiate

from cvae_traj import TrackDataModule, TrajectoryCVAE
from conftest import ROOT, compose_config

GROUPS = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir())
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((ROOT / "conf" / g).glob("*.yaml"))]


def test_every_group_has_options():
    assert set(GROUPS) >= {"data", "model", "trainer", "callbacks", "logger", "experiment"}


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(group, option, tmp_path):
    overrides = [f"{group}={option}", f"paths.output_dir={tmp_path}"]
    is_csv = (group, option) == ("data", "csv")
    cfg = compose_config("train", overrides + ["data.path=tracks.csv"] if is_csv else overrides)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    assert isinstance(datamodule, TrackDataModule) and isinstance(model, TrajectoryCVAE)
    assert isinstance(trainer, L.Trainer)
    assert model.hparams.obs_len == datamodule.obs_len and model.hparams.pred_len == datamodule.pred_len
    # Selection is always on validation, whatever the options.
    monitored = [c.monitor for c in callbacks if hasattr(c, "monitor") and c.monitor]
    assert monitored and all(m.startswith("val/") for m in monitored)
    if group == "experiment" and option == "eth_ucy":
        assert cfg.data._target_.endswith("EthUcyDataModule")


def test_predict_config_composes():
    cfg = compose_config("predict", ["ckpt_path=a.ckpt", "input=t.csv"])
    assert cfg.output == "futures.csv" and cfg.num_samples == 20 and cfg.plot is False
    assert set(cfg.columns) == {"frame", "agent_id", "x", "y"}
