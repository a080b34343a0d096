"""The three networks of the conditional VAE, each a plain nn.Module."""
from cvae_traj.models.decoder import IntegratedGaussian, TrajectoryDecoder
from cvae_traj.models.history_encoder import HistoryEncoder, observed_features
from cvae_traj.models.latent import PriorNet, RecognitionNet
from cvae_traj.models.social_encoder import SocialEncoder, neighbour_features

__all__ = ["HistoryEncoder", "IntegratedGaussian", "PriorNet", "RecognitionNet", "SocialEncoder", "TrajectoryDecoder",
           "neighbour_features", "observed_features"]
