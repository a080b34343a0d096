"""Calibrating the odds of a model's modes online (cvae_traj.calibration: WidthOddsTemperature, width_and_odds,
prior_odds): a stander's draws are wide or narrow by how often it sets off, which a factor on the spread cannot
reach."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from types import SimpleNamespace

from cvae_traj import TrajectoryBatch, TrajectoryCVAE
from cvae_traj.calibration import (OnlineTemperature, WidthOddsTemperature, departures, evaluate_online,
                                   width_and_odds)
from cvae_traj.data.tracks import validate_tracks
from cvae_traj.data.windows import make_windows
from cvae_traj.errors import InputError

SET_OFF = 1.2  # metres a stander who sets off has gone by its last future step


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def standers(num_agents: int, p_set_off: float, at_once: int = 10, noise: float = 0.05) -> pd.DataFrame:
    """Agents standing still for 8 steps who then, with probability p_set_off, walk off along +x (SET_OFF metres in
    12 steps) and otherwise stay; N(0, noise^2) on every future position. `at_once` of them share each stretch of
    time, so that each step of a replay completes that many forecasts."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(num_agents):
        xy = np.zeros((20, 2)) + rng.normal(scale=20.0, size=2)  # far apart: no agent is another's neighbour
        if rng.uniform() < p_set_off:
            xy[8:, 0] += SET_OFF * np.arange(1, 13) / 12
        xy[8:] += noise * rng.normal(size=(12, 2))
        frames = 10 * ((i // at_once) * 20 + np.arange(20))
        rows += [(f, i, x, y) for f, (x, y) in zip(frames, xy)]
    return pd.DataFrame(rows, columns=["frame", "agent_id", "x", "y"])


class SetOffSampler:
    """A stand-in model of standers with two modes, staying and setting off, whose odds of setting off are
    sigmoid(logit(p_model) / odds): what dividing a mixture's logits by the odds factor does to two modes. The
    spread factor (prior_temperature) widens each mode's noise."""

    def __init__(self, p_model: float, noise: float = 0.05) -> None:
        self.logit, self.noise, self.odds = logit(p_model), noise, 1.0
        self.cvae = SimpleNamespace(prior_temperature=1.0)

    def at(self, width: float, odds: float = 1.0):
        self.cvae.prior_temperature, self.odds = width, odds
        return self

    def sample(self, batch: TrajectoryBatch, num_samples: int) -> torch.Tensor:
        p = torch.sigmoid(torch.tensor(self.logit / self.odds))
        go = (torch.rand(len(batch), num_samples, 1, 1) < p).float()
        path = torch.zeros(12, 2)
        path[:, 0] = SET_OFF * torch.arange(1, 13) / 12
        return (batch.past[:, -1, None, None] + go * path
                + self.cvae.prior_temperature * self.noise * torch.randn(len(batch), num_samples, 12, 2))


def test_an_odds_factor_learns_how_often_standers_set_off_from_completed_forecasts():
    windows = make_windows(validate_tracks(standers(1500, p_set_off=0.3)), 8, 12)
    sampler = SetOffSampler(p_model=0.05)  # sets off a sixth as often as the agents do
    torch.manual_seed(0)
    frozen = evaluate_online(sampler.at, [windows], OnlineTemperature(rate=0), kde_samples=0, calibration_samples=200)
    tracker = WidthOddsTemperature((), ("odds",), odds=OnlineTemperature(rate=0.2, bounds=(0.125, 8.0)))
    online = evaluate_online(sampler.at, [windows], tracker, kde_samples=0, calibration_samples=200)
    width, odds = online["final_temperature"]
    assert width == 1.0  # a class of kind "odds" leaves the spread alone
    assert odds == pytest.approx(logit(0.05) / logit(0.3), rel=0.25)  # the factor that gives the agents' 0.3
    assert online["calibration_error"] < 0.06 < 0.12 < frozen["calibration_error"]
    assert online["coverage_90"] > 0.8
    # A spread factor cannot find those odds: it widens each mode where it is, and the truths that set off stay
    # outside the draws' 90% regions far more often than one time in ten.
    widened = evaluate_online(sampler.at, [windows], OnlineTemperature(rate=0.2), kde_samples=0,
                              calibration_samples=200)
    assert widened["calibration_error"] > online["calibration_error"] + 0.02 and widened["coverage_90"] < 0.75


def test_each_speed_class_moves_its_own_kind_of_factor():
    tracker = WidthOddsTemperature((0.08,), ("odds", "width"))
    past = torch.tensor([[[0.0, 0.0], [0.0, 0.01]], [[0.0, 0.0], [0.5, 0.0]]])  # a stander, a walker
    classes = tracker.classes(past)
    assert classes.tolist() == [0, 1]
    tracker.observe([1.0, 0.0], classes)  # the stander's truth far out, the walker's at the heart of its draws
    (stand_width, stand_odds), (walk_width, walk_odds) = tracker.factors(classes)
    assert stand_width == 1.0 and stand_odds > 1.0  # the stander's odds even out
    assert walk_odds == 1.0 and walk_width == 1.0  # the walker's width would narrow, but its floor is 1
    assert tracker.odds.temperature == 1.0  # the templates are not moved; fresh() starts from them
    assert tracker.fresh().factors(classes).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    with pytest.raises(InputError, match="2 levels with 1 classes"):
        tracker.observe([0.5, 0.5], [0])
    with pytest.raises(InputError, match="one kind, 'width', 'odds' or 'both', per speed class"):
        WidthOddsTemperature((0.08,), ("odds",))
    with pytest.raises(InputError, match="one kind"):
        WidthOddsTemperature((), ("spread",))


def test_standers_of_kind_both_move_their_odds_and_their_own_spread_below_the_walkers_floor():
    tracker = WidthOddsTemperature()  # the defaults: standers "both" (spread floor 1/4), walkers "width" (floor 1)
    assert tracker.kinds == ("both", "width")
    for _ in range(40):  # standers' draws far too wide, walkers' far too narrow
        tracker.observe([0.0, 0.0, 1.0], [0, 0, 1])
    (stand_width, stand_odds), (walk_width, walk_odds) = tracker.factors(np.array([0, 1])).tolist()
    assert stand_width == 0.25 and stand_odds == 0.125  # both narrow, each to its own bound
    assert walk_width == 8.0 and walk_odds == 1.0  # the walkers' levels move the walkers' width alone
    assert tracker.fresh().factors(np.array([0, 1])).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    widening = WidthOddsTemperature(both_width=OnlineTemperature(0.2, bounds=(0.25, 8.0)),
                                    odds=OnlineTemperature(0.2, bounds=(0.125, 2.0)))
    for _ in range(10):  # standers' truths far out: their odds even out to the bound, and the width goes on
        widening.observe([1.0], [0])
    width, odds = widening.factors(np.array([0]))[0]
    assert odds == 2.0 and width == pytest.approx(math.exp(1.0))


def test_odds_moved_by_setting_off_find_the_standers_odds_while_their_levels_narrow_the_spread():
    # The model's standers set off a sixth as often as the agents do, and its draws are twice as wide as theirs.
    windows = make_windows(validate_tracks(standers(1500, p_set_off=0.3)), 8, 12)
    sampler = SetOffSampler(p_model=0.05, noise=0.1)
    runs = {}
    for name, set_off in (("levels", None), ("set_off", 0.5)):
        tracker = WidthOddsTemperature((), ("both",), odds=OnlineTemperature(rate=0.2, bounds=(0.125, 8.0)),
                                       both_width=OnlineTemperature(rate=0.2, bounds=(0.25, 8.0)), set_off=set_off)
        torch.manual_seed(0)
        runs[name] = evaluate_online(sampler.at, [windows], tracker, kde_samples=0, calibration_samples=200)
    width, odds = runs["set_off"]["final_temperature"]
    assert odds == pytest.approx(logit(0.05) / logit(0.3), rel=0.25)  # the factor that gives the agents' 0.3
    assert width < 0.8  # the stayers' levels narrow the spread towards the agents' noise
    # Moved by the same levels, the odds follow the too-wide stayers down and the agents who set off end far out.
    assert runs["levels"]["final_temperature"][1] < 1.0
    assert runs["set_off"]["calibration_error"] < 0.06 < runs["levels"]["calibration_error"] - 0.03


def test_departures_count_who_set_off_and_the_share_of_their_draws_that_did():
    origin = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    truth = torch.tensor([[0.6, 0.0], [1.0, 1.3]])
    draws = torch.tensor([[[0.1, 0.0], [0.0, 0.7], [2.0, 2.0], [0.3, 0.3]],
                          [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [4.0, 1.0]]])
    assert departures(draws, truth, origin, 0.5).tolist() == [[1.0, 0.5], [0.0, 0.25]]
    tracker = WidthOddsTemperature(set_off=0.5)
    with pytest.raises(InputError, match="needs the departures"):
        tracker.observe([0.5], [0])
    with pytest.raises(InputError, match="1 levels with 2 departures"):
        tracker.observe([0.5], [0], np.zeros((2, 2)))
    with pytest.raises(InputError, match="set off must be positive"):
        WidthOddsTemperature(set_off=0.0)
    # A stander who set off while its draws stayed raises its odds factor by rate * 1; the levels move the spread.
    tracker.observe([0.5, 0.0], [0, 1], np.array([[1.0, 0.0], [1.0, 1.0]]))
    (stand_width, stand_odds), (walk_width, _) = tracker.factors(np.array([0, 1])).tolist()
    assert stand_odds == pytest.approx(math.exp(0.2)) and stand_width == 1.0 and walk_width == 1.0
    assert tracker.fresh().set_off == 0.5 and tracker.fresh().factors(np.array([0])).tolist() == [[1.0, 1.0]]


def test_width_and_odds_tempers_a_mixture_prior_and_gives_the_model_back_as_it_was():
    torch.manual_seed(0)
    model = TrajectoryCVAE(hidden_dim=16, latent_dim=4, prior_components=4).eval()
    context = torch.randn(5, model.cvae.prior_net.net[0].in_features)
    before = model.cvae.prior(context)
    logits = before.mixture_distribution.logits
    with width_and_odds(model) as at:
        assert at(2.0, 3.0) is model
        tempered = model.cvae.prior(context)
        torch.testing.assert_close(tempered.mixture_distribution.probs, torch.softmax(logits / 3.0, -1))
        torch.testing.assert_close(tempered.component_distribution.base_dist.scale,
                                   2.0 * before.component_distribution.base_dist.scale)
        at(1.0, 0.25)  # below 1: the likeliest mode gains
        sharp = model.cvae.prior(context).mixture_distribution.probs
        assert (sharp.max(-1).values > before.mixture_distribution.probs.max(-1).values).all()
    assert model.cvae.prior_odds == 1.0 and model.cvae.prior_temperature == 1.0
    torch.testing.assert_close(model.cvae.prior(context).mixture_distribution.probs, before.mixture_distribution.probs)
