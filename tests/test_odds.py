"""Worlds with known odds, and the measures that compare a model's draws with them."""
import numpy as np
import pytest
import torch
from torch import nn

from cvae_traj import SyntheticDataModule
from cvae_traj.clustering import cluster_futures
from cvae_traj.data.synthetic import POST, generate_world
from cvae_traj.errors import InputError
from cvae_traj.odds import evaluate_odds, ideal_coverage, total_variation


@pytest.mark.parametrize("world, branch_probs", [("junction", (0.7, 0.2, 0.1)), ("stop_go", None),
                                                  ("speed_odds", None)])
def test_decision_windows_take_each_mode_as_often_as_their_odds_say(world, branch_probs):
    """The odds a window carries are those of the windows, not only of the agents: a world whose tracks were
    longer under one mode would give that mode more windows than its odds (stop_go once did)."""
    dm = SyntheticDataModule(world=world, num_train_agents=4000, **({"branch_probs": branch_probs} if branch_probs
                                                                      else {}))
    d = dm.decision_windows("train")
    taken = np.eye(len(d.modes))[d.mode]
    # Windows of one agent share its mode, so the standard error counts agents, not windows.
    se = np.sqrt(d.probs.mean(0) * (1 - d.probs.mean(0)) / 4000 * len(d) / len(np.unique(d.index)))
    assert np.all(np.abs(taken.mean(0) - d.probs.mean(0)) < 4 * se + 0.01)
    if world == "speed_odds":  # the odds follow the speed: the slowest third turns left far more than the fastest
        straight = d.probs[:, 1]
        slow, fast = straight < np.quantile(straight, 1 / 3), straight > np.quantile(straight, 2 / 3)
        assert taken[slow, 0].mean() > taken[fast, 0].mean() + 0.2


@pytest.mark.parametrize("world", ["junction", "speed_odds", "stop_go"])
def test_true_futures_are_classified_as_the_mode_taken(world):
    dm = SyntheticDataModule(world=world, num_val_agents=150)
    d, windows = dm.decision_windows("val"), dm.windows("val")
    assert len(d) > 100 and d.distance.max() > 2.0  # windows end at several distances before the decision
    finals = windows.future[d.index][:, None, -1]  # (N, 1, 2)
    np.testing.assert_array_equal(d.classify(finals)[:, 0], d.mode)


def test_the_post_is_a_neighbour_of_every_walker_and_never_forecast():
    dm = SyntheticDataModule(num_val_agents=60)
    windows = dm.windows("val")
    (table,) = dm.load_split("val")
    walkers = (table.agent_ids < 60).sum()
    assert (table.agent_ids[windows.agent] < 60).all() and walkers == 60
    batch = windows.batch(np.arange(len(windows)))
    at_post = ((batch.neighbours[:, :, -1] - torch.tensor(POST)).norm(dim=-1) < 1e-6) & batch.neighbour_mask[:, :, -1]
    assert at_post.any(1).all()


def test_world_arguments_are_checked():
    with pytest.raises(InputError, match="world must be one of junction, speed_odds, stop_go"):
        SyntheticDataModule(world="roundabout")
    with pytest.raises(InputError, match="branch_probs must be three non-negative odds summing to 1"):
        generate_world("junction", 10, seed=0, branch_probs=(0.5, 0.5, 0.5))
    with pytest.raises(InputError, match="stop_prob must be in"):
        SyntheticDataModule(world="stop_go", stop_prob=1.5)


def test_ideal_coverage_is_the_chance_that_every_likely_mode_is_drawn():
    assert ideal_coverage(np.array([[0.9, 0.1]]), 20)[0] == pytest.approx(1 - 0.9 ** 20 - 0.1 ** 20)
    assert ideal_coverage(np.array([[0.95, 0.05]]), 20)[0] == pytest.approx(1 - 0.05 ** 20)  # the rare one not asked
    rng = np.random.default_rng(0)
    p = np.array([0.7, 0.2, 0.1])
    draws = rng.choice(3, size=(20000, 20), p=p)
    simulated = np.mean([len(np.unique(d)) == 3 for d in draws])
    assert ideal_coverage(p[None], 20)[0] == pytest.approx(simulated, abs=0.01)
    assert total_variation([0.5, 0.3, 0.2], [0.2, 0.3, 0.5]) == pytest.approx(0.3)


class OracleModel(nn.Module):
    """Draws each decision window's futures from given odds of its true modes' final positions, by window."""

    def __init__(self, decisions, windows, odds: np.ndarray) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # evaluate_odds asks for the model's device
        last = windows.past[decisions.index][:, -1]
        self.by_position = {tuple(p): i for i, p in enumerate(last.tolist())}
        self.decisions, self.odds = decisions, odds

    def sample(self, batch, num_samples):
        rows = [self.by_position[tuple(p)] for p in batch.past[:, -1].tolist()]
        pick = torch.multinomial(torch.tensor(self.odds[rows], dtype=torch.float32), num_samples, replacement=True)
        finals = torch.tensor(self.decisions.anchors[rows], dtype=torch.float32).gather(
            1, pick.unsqueeze(-1).expand(-1, -1, 2))  # (B, K, 2)
        return finals.unsqueeze(2).expand(-1, -1, 12, -1)

    def representatives(self, batch, num_samples, draws):
        return cluster_futures(self.sample(batch, draws), num_samples)


@pytest.mark.parametrize("world", ["junction", "stop_go"])
def test_evaluate_odds_scores_draws_with_the_true_odds_near_the_floor_and_wrong_odds_far(world):
    dm = SyntheticDataModule(world=world, num_val_agents=80, branch_probs=(0.7, 0.2, 0.1))
    d, windows = dm.decision_windows("val"), dm.windows("val")
    torch.manual_seed(0)
    right = evaluate_odds(OracleModel(d, windows, d.probs), dm, "val", draws=400).summary()
    assert right["tv"] < right["tv_floor"] + 0.01 and right["tv_pooled"] < 0.02
    assert right["coverage"] == pytest.approx(right["coverage_ideal"], abs=0.03)
    assert right["tv_representatives"] < right["tv_floor"] + 0.03 and right["coverage_representatives"] == 1.0
    likeliest = np.eye(d.probs.shape[1])[d.probs.argmax(1)]  # what a model collapsed on its likeliest path does
    wrong = evaluate_odds(OracleModel(d, windows, likeliest), dm, "val", draws=400).summary()
    assert wrong["tv"] == pytest.approx(1 - d.probs.max(1).mean(), abs=0.01) and wrong["coverage"] == 0.0


def test_windows_past_the_decision_carry_the_mode_taken_and_score_a_model_that_decides_again():
    """After the decision the odds are certain: a faithful model keeps its draws on the mode the past already
    shows (the bare model was seen sending about 40% of an agent's draws round a second turn)."""
    dm = SyntheticDataModule(num_val_agents=150)
    before, windows = dm.decision_windows("val"), dm.windows("val")
    after = dm.decision_windows("val", decided_for=3)
    assert len(after) > 50 and not set(after.index) & set(before.index)
    np.testing.assert_array_equal(after.probs, np.eye(len(after.modes))[after.mode])
    assert set(after.mode) == {0, 1, 2}
    np.testing.assert_array_equal(after.classify(windows.future[after.index][:, None, -1])[:, 0], after.mode)
    torch.manual_seed(0)
    stays = evaluate_odds(OracleModel(after, windows, after.probs), dm, "val", draws=200, decided_for=3).summary()
    assert stays["tv"] == 0.0 and stays["coverage"] == 1.0
    again = np.tile(before.probs.mean(0), (len(after), 1))  # decides afresh with the odds of the junction
    strays = evaluate_odds(OracleModel(after, windows, again), dm, "val", draws=200, decided_for=3).summary()
    expected = 1 - again[np.arange(len(after)), after.mode].mean()
    assert strays["tv"] == pytest.approx(expected, abs=0.02)
