"""ETH/UCY five-fold benchmark:

    python benchmarks/eth_ucy.py [scenes=[...]] [seeds=[...]] [variants=[...]] [workers=2]
"""
import os
import shlex
import sys

import hydra
from omegaconf import DictConfig, open_dict

from bench.eth_ucy_report import markdown_table
from bench.eth_ucy_runner import run_benchmark
from cvae_traj.cli import run_or_exit


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    with open_dict(cfg):
        cfg.command = shlex.join(["python", "benchmarks/eth_ucy.py", *sys.argv[1:]])
        cfg.argv, cfg.script = sys.argv[1:], os.path.abspath(__file__)
    results = run_or_exit(lambda: run_benchmark(cfg))
    if results:  # runs started by workers=N build no table
        print(markdown_table(results))


if __name__ == "__main__":
    main()
