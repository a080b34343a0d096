"""Train a trajectory CVAE: python train.py [data=eth_ucy data.scene=zara1 trainer.max_epochs=50 ...]"""
import hydra
from omegaconf import DictConfig

from cvae_traj.cli import run_or_exit
from cvae_traj.training import format_summary, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    metrics = run_or_exit(lambda: train(cfg))
    print(format_summary(metrics))
    return metrics["val"][f"val/min_ade_{cfg.model.num_eval_samples}"]


if __name__ == "__main__":
    main()
