"""`python -m cvae_traj.prepare_data source=<folder or URL> [dest=data/eth_ucy]`: fill the ETH/UCY folder."""
from __future__ import annotations

import logging

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from cvae_traj.cli import run_or_exit
from cvae_traj.data.eth_ucy import PUBLIC_URL, prepare_eth_ucy

log = logging.getLogger(__name__)

ConfigStore.instance().store(name="prepare_data", node={
    "defaults": [{"override hydra/job_logging": "stdout"}, "_self_"],
    "source": PUBLIC_URL,
    "dest": "data/eth_ucy",
    # A one-off copy needs no run folder.
    "hydra": {"run": {"dir": "."}, "output_subdir": None},
})


@hydra.main(version_base="1.3", config_path=None, config_name="prepare_data")
def main(cfg: DictConfig) -> None:
    dest = run_or_exit(lambda: prepare_eth_ucy(cfg.source, cfg.dest))
    log.info("ETH/UCY files ready in %s", dest)


if __name__ == "__main__":
    main()
