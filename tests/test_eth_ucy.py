"""ETH/UCY: fold composition, PROTOCOL.md's window counts, and the preparation step."""
import shutil

import pytest

from cvae_traj import EthUcyDataModule
from cvae_traj.data.eth_ucy import RECORDINGS, SCENES, SHA256, fold_files, prepare_eth_ucy
from cvae_traj.errors import InputError

# PROTOCOL.md: test windows per scene with the files in all_data.
TEST_WINDOWS = {"eth": 364, "hotel": 1197, "univ": 24334, "zara1": 2356, "zara2": 5910}


@pytest.mark.parametrize("scene", SCENES)
def test_fold_files(scene):
    files = fold_files(scene)
    assert files["test"] == [f"all_data/{r}.txt" for r in SCENES[scene]]
    held_out = set(SCENES[scene])
    trained = {f.split("/")[1].rsplit("_", 1)[0] for f in files["train"]}
    validated = {f.split("/")[1].rsplit("_", 1)[0] for f in files["val"]}
    assert trained == validated == set(RECORDINGS) - held_out
    assert {"crowds_zara03", "uni_examples"} <= trained
    assert not held_out & (trained | validated)


def test_val_scene_validates_on_a_scene_never_trained_on():
    files = fold_files("zara1", val_scene="univ")
    assert files["val"] == ["all_data/students001.txt", "all_data/students003.txt"]
    assert files["test"] == ["all_data/crowds_zara01.txt"]
    trained = {f.split("/")[1].rsplit("_", 1)[0] for f in files["train"]}
    assert trained == set(RECORDINGS) - {"crowds_zara01", "students001", "students003"}
    with pytest.raises(InputError, match="val_scene must differ from the test scene 'eth'"):
        fold_files("eth", val_scene="eth")


def test_unknown_scene():
    with pytest.raises(InputError, match="unknown ETH/UCY scene 'zara3'; choose one of eth, hotel, univ, zara1, zara2"):
        EthUcyDataModule(scene="zara3")


@pytest.mark.parametrize("scene", SCENES)
def test_test_window_counts_match_protocol(scene, eth_ucy_root):
    datamodule = EthUcyDataModule(scene=scene, root=str(eth_ucy_root))
    assert len(datamodule.windows("test")) == TEST_WINDOWS[scene]
    assert len(datamodule.windows("train")) > 5000 and len(datamodule.windows("val")) > 1000


def test_prepare_from_file_url(tmp_path, eth_ucy_root):
    dest = prepare_eth_ucy(eth_ucy_root.resolve().as_uri(), tmp_path / "eth_ucy")
    for rel in SHA256:
        assert (dest / rel).read_bytes() == (eth_ucy_root / rel).read_bytes()
    assert not list(dest.rglob(".*"))  # no temporary files left behind


def test_prepare_refuses_altered_or_missing_files(tmp_path, eth_ucy_root):
    source = tmp_path / "source"
    shutil.copytree(eth_ucy_root, source)
    with open(source / "val" / "crowds_zara02_val.txt", "a") as f:
        f.write("1 2 3 4\n")
    with pytest.raises(InputError, match="val/crowds_zara02_val.txt: checksum mismatch"):
        prepare_eth_ucy(source, tmp_path / "dest")
    assert not (tmp_path / "dest" / "val" / "crowds_zara02_val.txt").exists()
    with pytest.raises(InputError, match="download failed"):
        prepare_eth_ucy((tmp_path / "nowhere").as_uri(), tmp_path / "dest2")


def test_missing_data_says_how_to_prepare(tmp_path):
    datamodule = EthUcyDataModule(scene="eth", root=str(tmp_path))
    with pytest.raises(InputError, match="prepare the data first with `python -m cvae_traj.prepare_data"):
        datamodule.setup("fit")


@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("shipped", ["eth_ucy", "eth_ucy_short", "eth_ucy_faithful"])
def test_shipped_checkpoint_loads_beats_constant_velocity_and_uses_neighbours(scene, shipped, eth_ucy_root):
    """checkpoints/<shipped>/<scene>.ckpt: the fold's model as shipped. It loads as a TrajectoryCVAE, beats constant
    velocity on (a slice of) its own test windows, and what it samples depends on the neighbours it is given. The
    eth_ucy_short models also beat it from the last two positions alone; the eth_ucy_faithful ones carry learned
    representatives that beat their own faithful draws in best-of-20."""
    import torch

    from cvae_traj import TrajectoryCVAE, TrajectoryBatch
    from cvae_traj.metrics import constant_velocity, min_ade
    from conftest import ROOT

    model = TrajectoryCVAE.load_from_checkpoint(ROOT / "checkpoints" / shipped / f"{scene}.ckpt").eval()
    assert model.cvae.min_history == (2 if shipped == "eth_ucy_short" else 8)
    assert model.hparams.social and model.hparams.obs_len == 8 and model.hparams.pred_len == 12
    windows = EthUcyDataModule(scene=scene, root=str(eth_ucy_root)).windows("test")
    batch = windows.batch(list(range(0, len(windows), max(1, len(windows) // 300))))
    torch.manual_seed(0)
    samples = model.sample(batch, num_samples=20)
    cv = (constant_velocity(batch.past, 12) - batch.future).norm(dim=-1).mean()
    assert min_ade(samples, batch.future).mean() < 0.7 * cv  # shipped: 0.45-0.52; untrained: 1.4-3.8
    assert model.hparams.get("learned_representatives") == (20 if shipped == "eth_ucy_faithful" else None)
    if shipped == "eth_ucy_faithful":
        futures, weights = model.representatives(batch, 20, 200)
        torch.testing.assert_close(weights.sum(-1), torch.ones(len(batch)))
        assert min_ade(futures, batch.future).mean() < 0.95 * min_ade(samples, batch.future).mean()
    if model.cvae.min_history == 2:
        two = batch.with_history(torch.full((len(batch),), 2))
        assert min_ade(model.sample(two, num_samples=20), batch.future).mean() < 0.7 * cv
    crowded = batch.neighbour_mask.any(-1).sum(-1) > 0
    alone = TrajectoryBatch(batch.past, batch.future, batch.neighbours[:, :0], batch.neighbour_mask[:, :0])
    z, y = torch.randn(20, len(batch), model.noise_dim), torch.zeros(20, len(batch), 12, 2)
    with torch.no_grad():
        shift = (model.sample_from_noise(batch, z, y) - model.sample_from_noise(alone, z, y)).norm(dim=-1)
    assert crowded.any() and shift[crowded].mean() > 0.1  # metres; an untrained model moves its futures ~0.03
