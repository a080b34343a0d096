"""The exported ONNX sampler gives the Python samples for the same noise, at any agent/neighbour/sample count."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from cvae_traj import TrajectoryBatch, TrajectoryCVAE
from cvae_traj.export import INPUT_NAMES, example_inputs, export_onnx
from conftest import ROOT

ort = pytest.importorskip("onnxruntime")  # a dev dependency: CI installs it


@pytest.mark.parametrize("components, min_history", [(1, None), (3, 2)])
def test_onnx_sampler_reproduces_python_samples_for_fixed_noise(tmp_path, components, min_history):
    torch.manual_seed(0)
    model = TrajectoryCVAE(social=True, heading_frame=True, speed_frame=True, latent_dim=6, hidden_dim=32,
                          prior_components=components, min_history=min_history).eval()
    session = ort.InferenceSession(str(export_onnx(model, tmp_path / "sampler.onnx")))
    for agents, neighbours, samples in [(3, 2, 4), (9, 5, 20), (1, 1, 1)]:
        inputs = example_inputs(model, agents, neighbours, samples)
        with torch.no_grad():
            batch = TrajectoryBatch(inputs[0], None, *inputs[1:3], history=inputs[5])
            expected = model.sample_from_noise(batch, *inputs[3:5]).numpy()
        (futures,) = session.run(None, dict(zip(INPUT_NAMES, [t.numpy() for t in inputs])))
        assert futures.shape == (agents, samples, 12, 2)
        np.testing.assert_allclose(futures, expected, atol=1e-4, rtol=1e-4)
        if min_history is not None:  # short histories reach the graph: whatever precedes them changes nothing
            short = list(inputs)
            short[5] = torch.full((agents,), min_history)
            moved = [short[0].clone(), *short[1:]]
            moved[0][:, :8 - min_history] += 100.0
            whole = [*short[:5], torch.full((agents,), 8)]
            (a,), (b,), (c,) = (session.run(None, dict(zip(INPUT_NAMES, [t.numpy() for t in x])))
                                for x in (short, moved, whole))
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
            assert np.abs(a - c).max() > 1e-3  # and the history's length does matter
    # Noise is the only randomness: other noise, other futures.
    inputs = list(example_inputs(model, 3, 2, 4))
    (a,) = session.run(None, dict(zip(INPUT_NAMES, [t.numpy() for t in inputs])))
    inputs[3] = torch.randn_like(inputs[3])
    (b,) = session.run(None, dict(zip(INPUT_NAMES, [t.numpy() for t in inputs])))
    assert np.abs(a - b).max() > 1e-3


def test_sample_is_sample_from_noise_with_fresh_standard_normal_noise():
    torch.manual_seed(0)
    model = TrajectoryCVAE(latent_dim=5).eval()
    past = example_inputs(model, agents=4)[0]
    batch = TrajectoryBatch.from_past(past)
    torch.manual_seed(3)
    drawn = model.sample(past, num_samples=6)
    torch.manual_seed(3)
    z_noise, y_noise = torch.randn(6, 4, model.noise_dim), torch.randn(6, 4, 12, 2)
    torch.testing.assert_close(model.sample_from_noise(batch, z_noise, y_noise), drawn)
    # Without decoder noise each future is the decoder's mean at its z.
    torch.manual_seed(3)
    means = model.sample(past, num_samples=6, decoder_noise=False)
    torch.testing.assert_close(model.sample_from_noise(batch, z_noise, torch.zeros_like(y_noise)), means)
    assert (means - drawn).abs().max() > 1e-3


def test_export_command_writes_onnx_or_names_the_problem(tmp_path):
    torch.manual_seed(0)
    model = TrajectoryCVAE(latent_dim=4, hidden_dim=16)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": "2.6.0"}, tmp_path / "m.ckpt")
    done = subprocess.run([sys.executable, "-m", "cvae_traj.export", f"ckpt_path={tmp_path / 'm.ckpt'}",
                           f"output={tmp_path / 'm.onnx'}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ort.InferenceSession(str(tmp_path / "m.onnx")).get_outputs()[0].name == "futures"
    bad = subprocess.run([sys.executable, "-m", "cvae_traj.export", f"ckpt_path={tmp_path / 'm.ckpt'}",
                          f"output={tmp_path / 'm.pt'}"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "ONNX" in bad.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "m.pt").exists()
