"""The three networks of the conditional VAE, each a plain nn.Module."""
from cvae_traj.models.decoder import IntegratedGaussian, TrajectoryDecoder
from cvae_traj.models.history_encoder import HistoryEncoder, observed_features
from cvae_traj.models.latent import PriorNet, RecognitionNet

__all__ = ["HistoryEncoder", "IntegratedGaussian", "PriorNet", "RecognitionNet", "TrajectoryDecoder",
           "observed_features"]
