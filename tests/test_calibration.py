"""prior_temperature and its fit on recorded tracks (cvae_traj.calibration): what it widens, what it keeps, and
that the fit finds the spread the data has."""
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from cvae_traj import TrajectoryBatch, TrajectoryCVAE
from bench.online_trackers import SettlingTemperature, SpeedClassTemperature
from cvae_traj.calibration import (TEMPERATURES, OnlineTemperature, calibrate, evaluate_online, fit_prior_temperature,
                                   online_forecasts)
from cvae_traj.data.synthetic import junction_tracks
from cvae_traj.data.tracks import validate_tracks
from cvae_traj.data.windows import make_windows
from cvae_traj.errors import InputError
from cvae_traj.evaluation import evaluate_samples
from cvae_traj.forecast import load_model, predict, predict_futures
from cvae_traj.metrics import constant_velocity, hdr_coverage, hdr_level
from cvae_traj.models.latent import PriorNet, temper
from conftest import ROOT, compose_config


def test_temper_widens_every_component_and_keeps_the_odds():
    torch.manual_seed(0)
    context = torch.randn(5, 6)
    mixture = PriorNet(6, 3, 8, components=4)(context)
    wide = temper(mixture, 2.0)
    assert temper(mixture, 1.0) is mixture
    assert torch.equal(wide.mixture_distribution.probs, mixture.mixture_distribution.probs)
    base, wide_base = mixture.component_distribution.base_dist, wide.component_distribution.base_dist
    assert torch.equal(wide_base.loc, base.loc)
    torch.testing.assert_close(wide_base.scale, 2 * base.scale)
    single = PriorNet(6, 3, 8)(context)
    torch.testing.assert_close(temper(single, 0.5).base_dist.scale, 0.5 * single.base_dist.scale)


@pytest.mark.parametrize("components", [1, 4])
def test_a_temperature_scales_the_latent_noise_and_not_the_pick_of_component(components):
    torch.manual_seed(0)
    model = TrajectoryCVAE(hidden_dim=16, latent_dim=4, prior_components=components).eval()
    batch = TrajectoryBatch.from_past(torch.randn(6, 8, 2).cumsum(1))
    z_noise, y_noise = torch.randn(5, 6, model.noise_dim), torch.randn(5, 6, 12, 2)
    cold = model.sample_from_noise(batch, z_noise * torch.tensor([1.7] * 4 + [1.0] * (components > 1)), y_noise)
    model.cvae.prior_temperature = 1.7
    hot = model.sample_from_noise(batch, z_noise, y_noise)
    torch.testing.assert_close(hot, cold)
    assert not torch.allclose(hot, model.sample_from_noise(batch, z_noise * 0, y_noise))
    with pytest.raises(ValueError, match="prior_temperature must be positive"):
        TrajectoryCVAE(prior_temperature=0)


class SpreadSampler:
    """Constant velocity plus isotropic noise of `sigma` times cvae.prior_temperature: a stand-in model whose
    spread the temperature sets exactly."""

    def __init__(self, sigma: float, pred_len: int) -> None:
        self.cvae = SimpleNamespace(prior_temperature=1.0)
        self.sigma, self.pred_len, self.weight = sigma, pred_len, torch.nn.Parameter(torch.zeros(1))

    def eval(self):
        return self

    def parameters(self):
        return iter([self.weight])

    def sample(self, batch: TrajectoryBatch, num_samples: int) -> torch.Tensor:
        mean = constant_velocity(batch.past, self.pred_len).unsqueeze(1)
        return mean + self.cvae.prior_temperature * self.sigma * torch.randn(len(batch), num_samples, self.pred_len, 2)


def straight_walkers(num_agents: int, sigma: float, obs_len: int = 8, pred_len: int = 12) -> pd.DataFrame:
    """Agents who walk straight for obs_len steps, then on with N(0, sigma^2) noise on every future position;
    one after another in time, so none is another's neighbour."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(num_agents):
        velocity = rng.normal(size=2)
        steps = np.arange(obs_len + pred_len) - (obs_len - 1)
        xy = steps[:, None] * velocity
        xy[obs_len:] += sigma * rng.normal(size=(pred_len, 2))
        frames = 10 * (i * (obs_len + pred_len) + np.arange(obs_len + pred_len))
        rows += [(f, i, x, y) for f, (x, y) in zip(frames, xy)]
    return pd.DataFrame(rows, columns=["frame", "agent_id", "x", "y"])


def test_the_fit_finds_the_spread_the_futures_have():
    windows = make_windows(validate_tracks(straight_walkers(600, sigma=0.6)), 8, 12)
    sampler = SpreadSampler(sigma=0.3, pred_len=12)
    fit = fit_prior_temperature(sampler, windows, samples=300, max_windows=500)
    assert fit.temperature == 2.0 and fit.windows == 500
    assert sampler.cvae.prior_temperature == 1.0  # given back as it came
    assert fit.errors[2.0] < 0.06 and 0.15 < min(fit.errors[t] for t in (TEMPERATURES[3], TEMPERATURES[-1]))
    with pytest.raises(InputError, match="no windows to calibrate on"):
        fit_prior_temperature(sampler, windows.subset([]))


def calibrate_cfg(ckpt, tracks, output, **kw):
    return OmegaConf.create({"ckpt_path": str(ckpt), "input": str(tracks), "output": str(output), "temperatures": None,
                             "samples": 300, "max_windows": 400, "stride": 1, "seed": 0,
                             "columns": {"frame": "frame", "agent_id": "agent_id", "x": "x", "y": "y"},
                             "time_unit": "frame", "frame_step": None, **kw})


def test_calibrate_writes_a_checkpoint_that_samples_with_the_fitted_temperature(synthetic_run, tmp_path):
    model, _, ckpt = synthetic_run
    junction_tracks(300, seed=7).to_csv(tmp_path / "site.csv", index=False)
    before = ckpt.read_bytes()
    fit = calibrate(calibrate_cfg(ckpt, tmp_path / "site.csv", tmp_path / "calibrated.ckpt",
                                  temperatures=[0.5, 2.0]))  # neither is the model's own 1
    assert set(fit.errors) == {0.5, 2.0} and fit.errors[fit.temperature] == min(fit.errors.values())
    calibrated = load_model(tmp_path / "calibrated.ckpt")
    assert calibrated.cvae.prior_temperature == fit.temperature and ckpt.read_bytes() == before
    for name, value in model.state_dict().items():
        assert torch.equal(calibrated.state_dict()[name], value), name
    tracks = junction_tracks(3, seed=8)
    torch.manual_seed(0)
    out = predict_futures(calibrated, tracks, num_samples=5, at_frame=tracks["frame"].min() + 17)
    model.cvae.prior_temperature = fit.temperature
    try:
        torch.manual_seed(0)
        pd.testing.assert_frame_equal(out, predict_futures(model, tracks, num_samples=5,
                                                           at_frame=tracks["frame"].min() + 17))
    finally:
        model.cvae.prior_temperature = 1.0


def test_calibrate_refuses_tracks_too_short_and_a_wrong_output_in_one_line(synthetic_run, tmp_path):
    _, _, ckpt = synthetic_run
    tracks = junction_tracks(20, seed=7)
    tracks.groupby("agent_id").head(15).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(InputError, match="no agent has 20 consecutive steps"):
        calibrate(calibrate_cfg(ckpt, tmp_path / "short.csv", tmp_path / "out.ckpt"))
    with pytest.raises(InputError, match="must be a checkpoint ending in .ckpt"):
        calibrate(calibrate_cfg(ckpt, tmp_path / "short.csv", tmp_path / "out.csv"))
    done = subprocess.run([sys.executable, "-m", "cvae_traj.calibration", f"ckpt_path={ckpt}",
                           f"input={tmp_path / 'short.csv'}", f"output={tmp_path / 'out.ckpt'}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: ") and \
        "no agent has 20 consecutive steps" in done.stderr
    assert not any(tmp_path.glob("out*"))


def test_predict_takes_a_temperature_and_refuses_a_bad_one(synthetic_run, tmp_path):
    model, _, ckpt = synthetic_run
    tracks = junction_tracks(3, seed=8)
    tracks = tracks[tracks["frame"] <= tracks["frame"].min() + 17]
    tracks.to_csv(tmp_path / "tracks.csv", index=False)
    cfg = lambda **kw: compose_config("predict", [f"ckpt_path={ckpt}", f"input={tmp_path / 'tracks.csv'}",  # noqa: E731
                                                  "num_samples=4"] + [f"{k}={v}" for k, v in kw.items()])
    predict(cfg(prior_temperature=2.5, output=tmp_path / "wide.csv"))
    model.cvae.prior_temperature = 2.5
    try:
        torch.manual_seed(0)
        expected = predict_futures(model, tracks, num_samples=4)
    finally:
        model.cvae.prior_temperature = 1.0
    np.testing.assert_allclose(pd.read_csv(tmp_path / "wide.csv")[["x", "y"]], expected[["x", "y"]], rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(InputError, match="prior_temperature must be a positive number"):
        predict(cfg(prior_temperature=-1, output=tmp_path / "bad.csv"))
    assert not (tmp_path / "bad.csv").exists()


def test_the_level_of_a_truth_is_uniform_for_draws_of_its_own_distribution_and_high_for_too_narrow_ones():
    torch.manual_seed(0)
    samples, truth = torch.randn(1500, 200, 2), torch.randn(1500, 2)
    levels = hdr_level(samples, truth)
    # Uniform up to the KDE's own bias at 200 draws (each draw's density counts its own kernel): about 0.03.
    assert abs(levels.mean().item() - 0.5) < 0.04
    assert np.allclose(np.quantile(levels.numpy(), [0.1, 0.5, 0.9]), [0.1, 0.5, 0.9], atol=0.05)
    # level <= a is the region of level a holding the truth, as hdr_coverage counts it.
    inside = hdr_coverage(samples, truth, (0.3, 0.7))
    assert ((levels[:, None] <= torch.tensor([0.3, 0.7])) == inside).float().mean() > 0.99
    assert hdr_level(samples, 3 * truth).mean() > 0.8  # truths spread 3x wider than the draws
    # Scored exchangeably, the levels are uniform from as few as 20 draws, where the default's mean is about 0.63.
    few = samples[:, :20]
    assert abs(hdr_level(few, truth, exchangeable=True).mean().item() - 0.5) < 0.02
    assert hdr_level(few, truth).mean() > 0.58
    assert hdr_level(few, 3 * truth, exchangeable=True).mean() > 0.8


def test_the_online_factor_widens_on_truths_outside_narrows_on_truths_inside_and_stays_in_bounds():
    tracker = OnlineTemperature(rate=0.2, bounds=(0.25, 8.0))
    assert tracker.observe([0.5, 0.4, 0.6]) == 1.0 and tracker.observe([]) == 1.0
    assert tracker.observe(np.ones(5)) == pytest.approx(np.exp(0.1))
    for _ in range(100):
        tracker.observe([1.0])
    assert tracker.temperature == 8.0 and tracker.observed == 108
    for _ in range(200):
        tracker.observe([0.0])
    assert tracker.temperature == 0.25
    assert tracker.fresh().temperature == 1.0 and tracker.fresh().observed == 0  # afresh, as it was made
    for bad in ([np.nan], [1.5], [-0.1]):
        with pytest.raises(InputError, match=r"levels must lie in \[0, 1\]"):
            tracker.observe(bad)
    with pytest.raises(InputError, match="rate must be at least 0"):
        OnlineTemperature(rate=-1)
    with pytest.raises(InputError, match="within its bounds"):
        OnlineTemperature(temperature=10.0)
    floored = OnlineTemperature()  # by default never narrower than the model as trained
    assert floored.observe(np.zeros(3)) == 1.0 and floored.observe(np.ones(3)) > 1.0


def spread_at(sampler):
    def at(factor):
        sampler.cvae.prior_temperature = factor
        return sampler
    return at


def test_online_calibration_finds_the_width_the_futures_have_from_completed_forecasts_only():
    windows = make_windows(validate_tracks(straight_walkers(400, sigma=0.6)), 8, 12)
    sampler = SpreadSampler(sigma=0.3, pred_len=12)  # half the width of the futures
    frozen = evaluate_online(spread_at(sampler), [windows], OnlineTemperature(rate=0), kde_samples=0,
                             calibration_samples=200)
    online = evaluate_online(spread_at(sampler), [windows, windows], OnlineTemperature(rate=0.2), kde_samples=0,
                             calibration_samples=200)
    assert frozen["temperature"] == 1.0 and frozen["calibration_error"] > 0.2
    assert online["final_temperature"] == pytest.approx(2.0, rel=0.2)  # each recording afresh, each gets there
    assert online["calibration_error"] < 0.06 and online["windows"] == 800

    # A window's truth reaches the factor only once its last future step has happened: changing the futures of
    # agent 200 leaves every factor before its end as it was, and changes later ones.
    changed = validate_tracks(straight_walkers(400, sigma=0.6).assign(
        x=lambda t: np.where((t.agent_id == 200) & (t.frame % 200 >= 80), t.x + 50, t.x)))
    factors = []
    for table in (validate_tracks(straight_walkers(400, sigma=0.6)), changed):
        torch.manual_seed(0)
        replay = online_forecasts(spread_at(sampler), make_windows(table, 8, 12), OnlineTemperature(rate=0.2), 50, 50)
        factors.append(np.array([factor[0] for _, factor, _ in replay]))
    end = 200 * 20 + 19  # agent 200's last future step
    last_steps = np.unique(windows.last_step)
    assert np.array_equal(factors[0][last_steps <= end], factors[1][last_steps <= end])
    assert not np.allclose(factors[0][last_steps > end], factors[1][last_steps > end])


def test_a_settling_factor_steps_less_as_levels_build_up_and_so_wanders_less_on_calibrated_draws():
    settling = SettlingTemperature(rate=0.2, bounds=(0.25, 8.0), settle=10)
    assert settling.observe(np.ones(10)) == pytest.approx(np.exp(0.1))  # full step while nothing was observed
    assert settling.observe(np.ones(10)) == pytest.approx(np.exp(0.1 + 0.05))  # halved after `settle` levels
    assert settling.fresh().temperature == 1.0 and settling.fresh().settle == 10
    with pytest.raises(InputError, match="settle must be a positive count"):
        SettlingTemperature(settle=0)
    # Calibrated draws: levels uniform. A constant step wanders on their noise; a settling one stays near 1.
    levels = np.random.default_rng(0).uniform(size=(3000, 3))
    wander = {}
    for tracker in (OnlineTemperature(rate=0.2, bounds=(0.25, 8.0)),
                    SettlingTemperature(rate=0.2, bounds=(0.25, 8.0), settle=30)):
        wander[type(tracker)] = np.mean([abs(math.log(tracker.observe(step))) for step in levels][1000:])
    assert wander[SettlingTemperature] < 0.3 * wander[OnlineTemperature]


def walkers_and_standers(num_agents: int) -> pd.DataFrame:
    """straight_walkers, every other agent standing still: futures spread 0.6 around a walker's straight line,
    0.1 around a stander's place."""
    walkers = straight_walkers(num_agents, sigma=0.6)
    rng = np.random.default_rng(1)
    still = walkers.agent_id % 2 == 1
    first = walkers.groupby("agent_id").x.transform("first"), walkers.groupby("agent_id").y.transform("first")
    future = walkers.groupby("agent_id").cumcount() >= 8
    for axis, start in zip("xy", first):
        noise = rng.normal(scale=0.1, size=len(walkers))
        walkers[axis] = np.where(still, start + np.where(future, noise, 0.0), walkers[axis])
    return walkers


def test_a_factor_per_speed_class_calibrates_standers_and_walkers_that_one_factor_cannot():
    windows = make_windows(validate_tracks(walkers_and_standers(600)), 8, 12)
    sampler = SpreadSampler(sigma=0.3, pred_len=12)  # 3 times too wide for standers, half too narrow for walkers
    one = evaluate_online(spread_at(sampler), [windows], OnlineTemperature(rate=0.2, bounds=(0.25, 8.0)),
                          kde_samples=0, calibration_samples=200)
    per_class = SpeedClassTemperature((0.05,), SettlingTemperature(rate=0.2, bounds=(0.25, 8.0), settle=100))
    classed = evaluate_online(spread_at(sampler), [windows], per_class, kde_samples=0, calibration_samples=200)
    standers, walkers = classed["final_temperature"]
    assert standers == pytest.approx(1 / 3, rel=0.25) and walkers == pytest.approx(2.0, rel=0.25)
    assert classed["calibration_error"] < 0.06 < 0.1 < one["calibration_error"]

    tracker = SpeedClassTemperature((0.05, 1.0))
    past = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.5, 0.0]], [[0.0, 0.0], [3.0, 4.0]]])
    assert tracker.classes(past).tolist() == [0, 1, 2]
    assert tracker.observe([1.0, 1.0], [1, 1])[1] > 1.0  # class 1's levels move class 1's factor only
    assert tracker.factors(np.array([0, 2])).tolist() == [1.0, 1.0]
    assert tracker.fresh().factors(np.array([0, 1, 2])).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(InputError, match="2 levels with 1 classes"):
        tracker.observe([0.5, 0.5], [0])
    for bad in ((), (0.5, 0.1), (0.0,)):
        with pytest.raises(InputError, match="positive and increasing"):
            SpeedClassTemperature(bad)


def test_calibration_is_also_given_apart_for_standers_and_walkers_whose_opposite_errors_the_pooled_one_hides():
    windows = make_windows(validate_tracks(walkers_and_standers(400)), 8, 12)
    sampler = SpreadSampler(sigma=0.3, pred_len=12)  # 3 times too wide for standers, half too narrow for walkers
    scores = evaluate_samples(sampler, windows, num_samples=1, kde_samples=0, calibration_samples=200)
    assert scores["standing_share"] == pytest.approx(0.5, abs=0.01)
    assert min(scores["calibration_error_standing"], scores["calibration_error_moving"]) > 0.3
    assert scores["calibration_bias_standing"] > 0.3 and scores["calibration_bias_moving"] < -0.3  # wide, narrow
    assert scores["calibration_error"] < 0.5 * 0.3  # the two errors cancel in the pooled number
    online = evaluate_online(spread_at(sampler), [windows], OnlineTemperature(rate=0), kde_samples=0,
                             calibration_samples=200)
    assert online["calibration_error_standing"] > 0.3 and online["standing_share"] == scores["standing_share"]
