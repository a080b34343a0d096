"""Social attention, the autoregressive decoder and augmentation: properties a real bug would break."""
import math
from types import SimpleNamespace

import pytest
import torch

from cvae_traj import SyntheticDataModule, TrajectoryBatch, TrajectoryCVAE
from cvae_traj.data.augment import jittered, rotate_and_flip
from cvae_traj.errors import InputError


def scene_batch(b=4, n=3, seed=0) -> TrajectoryBatch:
    g = torch.Generator().manual_seed(seed)
    past = torch.randn(b, 8, 2, generator=g).cumsum(1)
    mask = torch.rand(b, n, 8, generator=g) > 0.3
    neighbours = torch.randn(b, n, 8, 2, generator=g).cumsum(2) * mask.unsqueeze(-1)
    return TrajectoryBatch(past, torch.randn(b, 12, 2, generator=g).cumsum(1), neighbours, mask)


def context(model, batch):
    with torch.no_grad():
        return model.cvae.encode(batch)


def test_social_context_uses_neighbours_but_not_padding_or_their_order():
    torch.manual_seed(0)
    model = TrajectoryCVAE(social=True).eval()
    batch = scene_batch()
    base = context(model, batch)
    moved = TrajectoryBatch(batch.past, batch.future, batch.neighbours + batch.neighbour_mask.unsqueeze(-1) * 1.5,
                            batch.neighbour_mask)
    assert (context(model, moved) - base).abs().amax(-1).min() > 1e-4
    perm = torch.tensor([2, 0, 1])
    shuffled = TrajectoryBatch(batch.past, batch.future, batch.neighbours[:, perm], batch.neighbour_mask[:, perm])
    torch.testing.assert_close(context(model, shuffled), base, atol=1e-5, rtol=1e-5)
    # An extra, never-observed neighbour slot (batch padding) changes nothing, whatever it holds.
    padded = TrajectoryBatch(batch.past, batch.future,
                             torch.cat([batch.neighbours, torch.full((4, 1, 8, 2), 0.0)], 1),
                             torch.cat([batch.neighbour_mask, torch.zeros(4, 1, 8, dtype=torch.bool)], 1))
    torch.testing.assert_close(context(model, padded), base, atol=1e-5, rtol=1e-5)
    alone = TrajectoryBatch.from_past(batch.past, batch.future)
    assert torch.isfinite(context(model, alone)).all()


def test_social_attention_over_present_neighbours_equals_the_padded_module():
    """The encoder embeds and projects only the slots that hold a neighbour (the fast path); its values and
    gradients must be nn.MultiheadAttention's over every padded slot, which the exported graph uses."""
    from cvae_traj.models import SocialEncoder
    torch.manual_seed(0)
    encoder = SocialEncoder(8, 64, 64)
    batch = scene_batch(b=6, n=5, seed=1)
    mask = batch.neighbour_mask.clone()
    mask[2] = False  # an agent alone
    mask[4, 1:] = False  # padding slots behind one neighbour
    history = torch.randn(6, 64)

    fast = encoder(history, batch.past, batch.neighbours, mask)
    fast_grads = torch.autograd.grad(fast.square().sum(), list(encoder.parameters()))
    encoder.pack_neighbours = False
    reference = encoder(history, batch.past, batch.neighbours, mask)
    reference_grads = torch.autograd.grad(reference.square().sum(), list(encoder.parameters()))
    torch.testing.assert_close(fast, reference, atol=1e-6, rtol=1e-5)
    for got, want in zip(fast_grads, reference_grads):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-4)
    assert fast[4].ne(fast[2]).any()  # the one neighbour counts


def test_neighbour_features_are_relative_positions_velocities_and_the_mask():
    """Per step: position relative to the target's last position, relative to the target at that step, the
    backward-difference velocity (zero where this step or the one before is unobserved), and the mask."""
    from cvae_traj.models import neighbour_features
    past = torch.stack([torch.arange(8.0), torch.zeros(8)], -1).unsqueeze(0)  # 1 m per step along x
    crossing = torch.stack([torch.full((8,), 3.0), 4.0 + torch.arange(8.0)], -1)  # 1 m per step along y
    alongside = past[0] + torch.tensor([0.0, 2.0])
    neighbours = torch.stack([crossing, alongside]).unsqueeze(0)  # (1, 2, 8, 2)
    mask = torch.ones(1, 2, 8, dtype=torch.bool)
    mask[0, 0, 3] = False  # the crossing one unseen at step 3
    f = neighbour_features(past, neighbours, mask).unflatten(-1, (8, 7))
    seen = mask[0, 0].float().unsqueeze(-1)
    torch.testing.assert_close(f[0, 0, :, :2], (crossing - past[0, -1]) * seen)
    torch.testing.assert_close(f[0, 1, :, 2:4], torch.tensor([0.0, 2.0]).expand(8, 2))  # 2 m to the side
    both = torch.tensor([0.0, 1, 1, 0, 0, 1, 1, 1])  # a backward difference needs this step and the one before
    torch.testing.assert_close(f[0, 0, :, 4:6], torch.stack([torch.zeros(8), both], -1))
    torch.testing.assert_close(f[0, 1, :, 4:6], torch.stack([torch.tensor([0.0, 1, 1, 1, 1, 1, 1, 1]),
                                                            torch.zeros(8)], -1))
    torch.testing.assert_close(f[0, :, :, 6], mask[0].float())


def test_rotate_and_flip_is_rigid_about_the_last_observed_position():
    batch = scene_batch(b=64)
    out = rotate_and_flip(batch, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.past[:, -1], batch.past[:, -1])

    def points(b):
        return torch.cat([b.past, b.future], 1)

    before, after = points(batch), points(out)
    torch.testing.assert_close(torch.cdist(after, after), torch.cdist(before, before), atol=1e-4, rtol=1e-4)
    m = batch.neighbour_mask
    d_before = (batch.neighbours - batch.past[:, None, -1:]).norm(dim=-1)[m]
    d_after = (out.neighbours - out.past[:, None, -1:]).norm(dim=-1)[m]
    torch.testing.assert_close(d_after, d_before, atol=1e-4, rtol=1e-4)
    assert (out.neighbours[~m] == 0).all()

    def turn_sign(b):  # orientation of the past's turns: mirroring reverses it, rotation keeps it
        v = torch.diff(b.past, dim=1)
        return torch.sign(v[:, :-1, 0] * v[:, 1:, 1] - v[:, :-1, 1] * v[:, 1:, 0])

    flipped = (turn_sign(out) != turn_sign(batch)).all(dim=1)
    kept = (turn_sign(out) == turn_sign(batch)).all(dim=1)
    assert (flipped | kept).all() and 10 < flipped.sum() < 54
    only_rotated = rotate_and_flip(batch, flip=False, generator=torch.Generator().manual_seed(0))
    assert (turn_sign(only_rotated) == turn_sign(batch)).all()


def test_scaling_scales_every_distance_by_one_factor_per_scene():
    batch = scene_batch(b=64)
    out = rotate_and_flip(batch, rotate=False, flip=False, scale=(0.5, 2.0),
                          generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.past[:, -1], batch.past[:, -1])
    before, after = (torch.cat([b.past, b.future], 1) for b in (batch, out))
    apart = torch.cdist(before, before) > 1e-3  # pairs of distinct points
    ratio = torch.cdist(after, after) / torch.cdist(before, before).clamp_min(1e-3)
    factor = ratio[:, 0, -1]  # each scene's own factor, the same for every pair of its points
    torch.testing.assert_close(ratio[apart], factor[:, None, None].expand_as(ratio)[apart], atol=1e-3, rtol=1e-3)
    m = batch.neighbour_mask
    gap = ((out.neighbours - out.past[:, None, -1:]).norm(dim=-1)
           / (batch.neighbours - batch.past[:, None, -1:]).norm(dim=-1))
    torch.testing.assert_close(gap[m], factor[:, None, None].expand_as(gap)[m], atol=1e-3, rtol=1e-3)
    assert 0.5 <= factor.min() and factor.max() <= 2.0 and factor.max() / factor.min() > 2
    assert (factor < 1).sum() > 10 and (factor > 1).sum() > 10  # log-uniform: as many shrunk as grown


def test_datamodule_augments_training_batches_only():
    dm = SyntheticDataModule(num_train_agents=20, augment_rotate=True, augment_flip=True)
    batch = dm.windows("train").batch(range(8))
    dm.trainer = SimpleNamespace(training=False)
    assert dm.on_after_batch_transfer(batch, 0) is batch
    dm.trainer = SimpleNamespace(training=True)
    assert not torch.allclose(dm.on_after_batch_transfer(batch, 0).future, batch.future)
    scaled = SyntheticDataModule(num_train_agents=20, augment_scale=[0.8, 1.25])
    scaled.trainer = SimpleNamespace(training=True)
    assert not torch.allclose(scaled.on_after_batch_transfer(batch, 0).future, batch.future)
    with pytest.raises(InputError, match="augment_scale must be"):
        SyntheticDataModule(augment_scale=[1.2, 0.8])


def test_jitter_moves_observed_positions_only_by_its_standard_deviation():
    batch = scene_batch(b=64)
    out = jittered(batch, 0.05, generator=torch.Generator().manual_seed(0))
    assert (out.future == batch.future).all()  # what is forecast is never noised
    step = out.past - batch.past
    assert abs(step.std().item() - 0.05) < 0.005 and abs(step.mean().item()) < 0.005
    m = batch.neighbour_mask
    moved = out.neighbours - batch.neighbours
    assert abs(moved[m].std().item() - 0.05) < 0.005
    assert (out.neighbours[~m] == 0).all()  # unseen neighbour steps stay unseen
    dm = SyntheticDataModule(num_train_agents=20, augment_jitter=0.05)
    train_batch = dm.windows("train").batch(range(8))
    dm.trainer = SimpleNamespace(training=True)
    noised = dm.on_after_batch_transfer(train_batch, 0)
    assert (noised.future == train_batch.future).all() and not torch.allclose(noised.past, train_batch.past)
    dm.trainer = SimpleNamespace(training=False)
    assert dm.on_after_batch_transfer(train_batch, 0) is train_batch
    with pytest.raises(InputError, match="augment_jitter must be"):
        SyntheticDataModule(augment_jitter=-0.01)


def test_reversed_recordings_give_every_training_window_walked_backwards():
    forward = SyntheticDataModule(num_train_agents=20)
    both = SyntheticDataModule(num_train_agents=20, augment_reverse=True)
    n = len(forward.windows("train"))
    assert len(both.windows("train")) == 2 * n and len(both.windows("val")) == len(forward.windows("val"))
    fwd, rev = forward.windows("train").batch(range(n)), both.windows("train").batch(range(n, 2 * n))
    # Each reversed window is a forward window's 20 positions in the opposite order.
    tracks = torch.cat([fwd.past, fwd.future], 1)
    backwards = torch.cat([rev.past, rev.future], 1).flip(1)
    match = (tracks[:, None] == backwards[None]).all(-1).all(-1)  # (n, n)
    assert (match.sum(0) >= 1).all() and (match.sum(1) >= 1).all()
    assert (both.windows("val").past == forward.windows("val").past).all()  # never validated on reversed data


@pytest.mark.parametrize("social", [False, True])
def test_heading_frame_makes_forecasts_turn_with_the_scene(social):
    """Turning the whole scene turns the samples the same way, and leaves the likelihood unchanged."""
    torch.manual_seed(0)
    model = TrajectoryCVAE(social=social, heading_frame=True).eval()
    batch = scene_batch()
    angle = torch.tensor(1.1)
    m = torch.stack([torch.stack([angle.cos(), angle.sin()]), torch.stack([-angle.sin(), angle.cos()])])
    turned = batch.transformed(m.expand(4, 2, 2), torch.zeros(4, 2))
    torch.manual_seed(3)
    samples = model.sample(batch, num_samples=6)
    torch.manual_seed(3)
    turned_samples = model.sample(turned, num_samples=6)
    torch.testing.assert_close(turned_samples, (samples.reshape(4, -1, 2) @ m).reshape(samples.shape),
                               atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        torch.manual_seed(5)
        rec = model.cvae.elbo_terms(batch)
        torch.manual_seed(5)
        rec_turned = model.cvae.elbo_terms(turned)
    torch.testing.assert_close(rec_turned["rec_nll"], rec["rec_nll"], atol=1e-3, rtol=1e-4)
    plain = TrajectoryCVAE(social=social, heading_frame=False).eval()
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(3)
    assert not torch.allclose(plain.sample(turned, num_samples=6), turned_samples, atol=1e-2)


@pytest.mark.parametrize("heading", [False, True])
def test_speed_frame_makes_forecasts_scale_with_the_scene_and_reports_likelihood_in_metres(heading):
    """Scaling a whole scene by c scales the samples by c; the NLL of the scaled future, in metres, is the
    old one plus 2 * T_pred * log(c) (the density spreads over c^2 the area at each of T_pred points)."""
    torch.manual_seed(0)
    model = TrajectoryCVAE(social=True, heading_frame=heading, speed_frame=True).eval()
    batch = scene_batch()
    for c in (0.6, 2.0):
        scaled = batch.transformed(torch.eye(2).expand(4, 2, 2) * c, torch.zeros(4, 2))
        torch.manual_seed(3)
        samples = model.sample(batch, num_samples=6)
        torch.manual_seed(3)
        torch.testing.assert_close(model.sample(scaled, num_samples=6), samples * c, atol=1e-4, rtol=1e-4)
        shift = torch.full((4,), 2 * 12 * math.log(c))
        with torch.no_grad():
            for nll in (lambda b: model.cvae.elbo_terms(b)["rec_nll"], lambda b: model.importance_nll(b, 7)):
                torch.manual_seed(5)
                before = nll(batch)
                torch.manual_seed(5)
                torch.testing.assert_close(nll(scaled) - before, shift, atol=1e-3, rtol=1e-4)
    # Without the speed frame the same scaling does not scale the forecasts.
    plain = TrajectoryCVAE(social=True, heading_frame=heading).eval()
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(3)
    assert not torch.allclose(plain.sample(scaled, num_samples=6), samples * 2.0, atol=1e-2)


def test_speed_floor_sets_the_scale_of_slow_agents_only(tmp_path):
    """With the speed frame, an agent slower than speed_floor is scaled by the floor (a stander's small moves grow
    as the floor falls), one faster by its own speed; the floor survives a checkpoint and must be positive."""
    batch = scene_batch()
    still = torch.zeros(1, 8, 2) + torch.tensor([3.0, 1.0])
    walking = torch.arange(8.0).view(1, 8, 1) * torch.tensor([0.48, 0.0])  # 0.48 m a step of 0.4 s: 1.2 m/s
    past = torch.cat([still, walking, batch.past[2:]])
    batch = TrajectoryBatch(past, batch.future, batch.neighbours, batch.neighbour_mask)
    scales = {}
    for floor in (0.5, 0.1):
        model = TrajectoryCVAE(speed_frame=True, speed_floor=floor).eval()
        scales[floor] = model.cvae.agent_frame(batch)[2]
        assert scales[floor][0].item() == pytest.approx(floor)
        assert scales[floor][1].item() == pytest.approx(1.2)
    path = tmp_path / "floor.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": "2.6.0"}, path)
    assert TrajectoryCVAE.load_from_checkpoint(path).cvae.speed_floor == 0.1
    with pytest.raises(ValueError, match="speed_floor must be a positive speed"):
        TrajectoryCVAE(speed_frame=True, speed_floor=0)


def test_latent_diagnostics_count_active_units_and_detect_collapse():
    from cvae_traj.diagnostics import latent_diagnostics

    torch.manual_seed(0)
    means = torch.randn(500, 4) * torch.tensor([1.0, 0.5, 0.01, 0.0])  # two units vary with x, two do not
    kl = torch.tensor([2.0, 0.8, 0.001, 0.0]).expand(500, 4)
    stats = latent_diagnostics(means, kl)
    assert stats["active_units"] == 2 and not stats["collapsed"]
    torch.testing.assert_close(stats["kl_per_dim"], kl[0])
    assert latent_diagnostics(means * 0, kl * 0.001)["collapsed"]
    # Sums from unequal shards (batches, processes) add up to the statistics of all windows.
    from cvae_traj.diagnostics import latent_diagnostics_from_sums, latent_sums

    shards = latent_sums(means[:123], kl[:123]) + latent_sums(means[123:], kl[123:])
    merged = latent_diagnostics_from_sums(shards)
    torch.testing.assert_close(merged["activity"], means.var(0), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(merged["kl_per_dim"], kl.mean(0))


def test_collapse_warning_names_the_remedy(caplog):
    import logging

    from cvae_traj.diagnostics import latent_sums

    model = TrajectoryCVAE(latent_dim=3, kl_anneal_steps=0)  # the KL at full weight: collapse is then a fault
    model._latent_stats = [latent_sums(torch.zeros(10, 3), torch.zeros(10, 3))]
    model.log = model.log_dict = lambda *a, **k: None  # no trainer to log to in this unit test
    model._trainer = SimpleNamespace(sanity_checking=False, global_step=0)
    with caplog.at_level(logging.WARNING):
        model.on_validation_epoch_end()
    assert "posterior collapse" in caplog.text and "kl_anneal_steps" in caplog.text and "model.beta" in caplog.text
    assert model.latent_stats["active_units"] == 0


def test_mixture_weights_come_from_a_network_of_their_own():
    """With prior_weight_net (the default) the mixture's weights, each mode's odds, are computed apart from the
    components: changing the network that places the components leaves the odds as they were, and the weight
    network moves the odds alone. Without it one layer gives both, as in checkpoints from before the option."""
    from cvae_traj.models.latent import PriorNet

    torch.manual_seed(0)
    context = torch.randn(5, 12)
    prior = PriorNet(12, 3, 16, components=4, weight_net=True)
    before = prior(context)
    with torch.no_grad():
        prior.net[2].weight.add_(1.0)
    moved = prior(context)
    torch.testing.assert_close(moved.mixture_distribution.probs, before.mixture_distribution.probs)
    assert not torch.allclose(moved.component_distribution.base_dist.loc, before.component_distribution.base_dist.loc)
    with torch.no_grad():
        prior.weight_net[-1].bias.add_(torch.tensor([3.0, 0.0, 0.0, 0.0]))
    favoured = prior(context)
    assert (favoured.mixture_distribution.probs[:, 0] > before.mixture_distribution.probs[:, 0] + 0.3).all()
    torch.testing.assert_close(favoured.component_distribution.base_dist.loc, moved.component_distribution.base_dist.loc)
    shared = PriorNet(12, 3, 16, components=4)
    assert shared.weight_net is None and shared.net[2].out_features == 4 + 2 * 3 * 4
    assert TrajectoryCVAE().cvae.prior_net.weight_net is not None
    assert TrajectoryCVAE(prior_components=1).cvae.prior_net.weight_net is None
