"""Export the sampling path (prior net and decoder, with the history and social encoders that feed them)
as an ONNX graph, for use outside Python (onnxruntime in C++, C#, Java, JavaScript, ...).

    python -m cvae_traj.export ckpt_path=checkpoints/eth_ucy/zara1.ckpt output=zara1_sampler.onnx

ONNX rather than TorchScript: TorchScript is in maintenance in PyTorch and needs libtorch to run, while
an ONNX file runs in any ONNX runtime on any platform. The graph is deterministic: randomness enters as
inputs, so the caller draws standard normal noise and gets exactly the futures that
`TrajectoryCVAE.sample_from_noise` gives for it.

Inputs (float32 unless noted; B agents, N neighbour slots, K samples):
    past            (B, T_obs, 2)      observed positions, metres, oldest first
    neighbours      (B, N, T_obs, 2)   neighbour positions (any value where the mask is false)
    neighbour_mask  (B, N, T_obs)      bool, true where that neighbour was observed
    z_noise         (K, B, D)          standard normal: z = prior mean + prior std * z_noise (D + 1 channels
                                       with a mixture prior, the last picking the component: model.noise_dim)
    y_noise         (K, B, T_pred, 2)  standard normal for the decoder's draws (zeros: its mean)
    history         (B,)               int64, observed steps per agent, the last `history` of T_obs (T_obs for a
                                       whole track; fewer only for a model trained with min_history: the
                                       positions before them may hold anything, they are filled in)
Output:
    futures         (B, K, T_pred, 2)  absolute positions
"""
from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig
from torch import Tensor, nn

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.cli import run_or_exit
from cvae_traj.clustering import cluster_futures
from cvae_traj.errors import InputError
from cvae_traj.forecast import load_model
from cvae_traj.io import atomic_path
from cvae_traj.models.cvae import nearest_shares, representative_noise
from cvae_traj.system import TrajectoryCVAE

log = logging.getLogger(__name__)
INPUT_NAMES = ("past", "neighbours", "neighbour_mask", "z_noise", "y_noise", "history")
OUTPUT_NAMES = ("futures",)


class NoiseSampler(nn.Module):
    """ConditionalVAE.sample_from_noise on plain tensors, the form an exporter can trace."""

    def __init__(self, model: TrajectoryCVAE) -> None:
        super().__init__()
        self.model = model.cvae.eval()

    def forward(self, past: Tensor, neighbours: Tensor, neighbour_mask: Tensor, z_noise: Tensor,
                y_noise: Tensor, history: Tensor) -> Tensor:
        return self.model.sample_from_noise(TrajectoryBatch(past, None, neighbours, neighbour_mask, history), z_noise,
                                            y_noise)


def example_inputs(model: TrajectoryCVAE, agents: int = 3, neighbours: int = 2, samples: int = 4) -> tuple:
    """Inputs of the right shapes and dtypes for the sampler of `model`."""
    h = model.hparams
    g = torch.Generator().manual_seed(0)
    past = torch.randn(agents, h.obs_len, 2, generator=g).cumsum(1)
    mask = torch.rand(agents, neighbours, h.obs_len, generator=g) > 0.3
    nb = torch.randn(agents, neighbours, h.obs_len, 2, generator=g).cumsum(2) * mask.unsqueeze(-1)
    shortest = model.cvae.min_history
    history = torch.randint(shortest, h.obs_len + 1, (agents,), generator=g)
    return (past, nb, mask, torch.randn(samples, agents, model.noise_dim, generator=g),
            torch.randn(samples, agents, h.pred_len, 2, generator=g), history)


def export_onnx(model: TrajectoryCVAE, path: str | Path) -> Path:
    """Write the sampler of `model` to `path` as ONNX with dynamic agent, neighbour and sample counts."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise InputError(f"{path}: the exported sampler is an ONNX file; name it *.onnx")
    model.single_model("the exported sampler")  # one latent's graph: an ensemble is refused here
    agents, samples = torch.export.Dim("agents", min=1), torch.export.Dim("samples", min=1)
    neighbours = torch.export.Dim.AUTO  # its attention guard (1 + N <= 4 + 4N) is true but beyond the solver
    dynamic_shapes = {"past": {0: agents}, "neighbours": {0: agents, 1: neighbours},
                      "neighbour_mask": {0: agents, 1: neighbours}, "z_noise": {0: samples, 1: agents},
                      "y_noise": {0: samples, 1: agents}, "history": {0: agents}}
    sampler = NoiseSampler(model)
    validate = torch.distributions.Distribution._validate_args
    onnx_log = logging.getLogger("torch.onnx")
    log_level = onnx_log.level
    torch.distributions.Distribution.set_default_validate_args(False)  # value checks are data-dependent branches
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            onnx_log.setLevel(logging.ERROR)
            program = torch.onnx.export(sampler, example_inputs(model), dynamo=True, input_names=list(INPUT_NAMES),
                                        output_names=list(OUTPUT_NAMES), dynamic_shapes=dynamic_shapes,
                                        verbose=False)
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
        onnx_log.setLevel(log_level)  # the caller's logging and validation settings, as they were
    with atomic_path(path) as tmp:
        program.save(str(tmp))
    return path


class OnnxSampler:
    """A model's exported sampler run by onnxruntime, drawing as TrajectoryCVAE does: `sample` and
    `representatives` take a TrajectoryBatch and return torch tensors. The noise comes from torch's generator in
    the order ConditionalVAE.sample draws it, so the same torch seed gives the same futures (to float rounding).

    The model call alone costs about half torch's on a new batch (benchmarks/onnx_speed.py), but in a live
    replay it is faster only below about 30 agents: the graph attends over every neighbour slot, where torch
    skips the empty ones (benchmarks/live_latency.py). Needs the export extra (`pip install -e ".[export]"`);
    the model is exported to a temporary file when made.
    """

    def __init__(self, model: TrajectoryCVAE, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("the onnxruntime runtime needs the export extra: pip install -e \".[export]\"") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads or torch.get_num_threads(), 1
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / "sampler.onnx")
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.noise_dim, self.obs_len, self.pred_len = model.noise_dim, model.hparams.obs_len, model.hparams.pred_len
        self.mixture = model.hparams.prior_components > 1
        # Learned representatives are decoded by torch: K decoder means per agent, a small share of the cost.
        self.learned = model.cvae if model.cvae.representative_net is not None else None

    def sample(self, batch: TrajectoryBatch, num_samples: int = 20) -> Tensor:
        """K faithful futures per agent, (B, K, T_pred, 2), as TrajectoryCVAE.sample."""
        b = len(batch)
        return self.from_noise(batch, torch.randn(num_samples, b, self.noise_dim),
                               torch.randn(num_samples, b, self.pred_len, 2))

    def from_noise(self, batch: TrajectoryBatch, z_noise: Tensor, y_noise: Tensor) -> Tensor:
        """The futures the graph makes from this noise, as ConditionalVAE.sample_from_noise: (B, K, T_pred, 2)."""
        b = len(batch)
        history = batch.history if batch.history is not None else torch.full((b,), self.obs_len)
        inputs = (batch.past, batch.neighbours, batch.neighbour_mask, z_noise, y_noise, history.to(torch.int64))
        (futures,) = self.session.run(None, {name: t.cpu().numpy() for name, t in zip(INPUT_NAMES, inputs)})
        return torch.from_numpy(futures)

    def representatives(self, batch: TrajectoryBatch, num_samples: int = 20, draws: int = 200) -> tuple[Tensor, Tensor]:
        """K representatives of `draws` futures with their weights, as TrajectoryCVAE.representatives."""
        samples = self.from_noise(batch, *representative_noise(draws, len(batch), self.noise_dim, self.pred_len,
                                                               self.mixture))
        if self.learned is None or self.learned.representative_net.k != num_samples:
            return cluster_futures(samples, num_samples)
        with torch.no_grad():
            futures = self.learned.learned_futures(batch)
        return futures, nearest_shares(samples, futures)


ConfigStore.instance().store(name="export", node={
    "defaults": [{"override hydra/job_logging": "stdout"}, "_self_"],
    "ckpt_path": "???",
    "output": "sampler.onnx",
    "hydra": {"run": {"dir": "."}, "output_subdir": None},
})


@hydra.main(version_base="1.3", config_path=None, config_name="export")
def main(cfg: DictConfig) -> None:
    output = run_or_exit(lambda: export_onnx(load_model(cfg.ckpt_path), cfg.output))
    log.info("wrote %s", output)


if __name__ == "__main__":
    main()
