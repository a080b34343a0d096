"""Sample futures: python predict.py ckpt_path=run/checkpoints/best.ckpt input=tracks.csv [plot=true]"""
import hydra
from omegaconf import DictConfig

from cvae_traj.cli import run_or_exit
from cvae_traj.forecast import predict


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run_or_exit(lambda: predict(cfg))


if __name__ == "__main__":
    main()
