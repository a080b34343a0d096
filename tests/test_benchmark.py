"""The benchmark pipeline on one fold and a few batches: protocol facts, table, shipped checkpoint, timing."""
import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from bench.eth_ucy_report import paired_validation, run_record_path, validation_table
from bench.eth_ucy_runner import pending_runs, run_benchmark, sampling_speed, variant_overrides, worker_commands
from bench.provenance import git_commit
from cvae_traj import TrajectoryCVAE, predict_futures
from cvae_traj.data.tracks import read_raw_eth_ucy, validate_tracks
from cvae_traj.errors import CvaeTrajError
from conftest import ROOT

TRAIN_OVERRIDES = ["experiment=eth_ucy", "logger=csv", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
                   "trainer.max_epochs=2", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2"]


def test_benchmark_smoke_on_one_fold(tmp_path, eth_ucy_root, monkeypatch):
    argv = ["scenes=[zara1]", "seeds=[0]", "variants=[full,no_social]", f"data_dir={eth_ucy_root.parent}",
            f"runs_dir={tmp_path / 'runs'}", f"output_dir={tmp_path / 'results'}",
            f"checkpoints_dir={tmp_path / 'ckpt'}", "command=smoke", "likelihood.num_importance=5",
            "likelihood.kde_samples=50", "likelihood.calibration_samples=40", "likelihood.calibration_levels=[0.5,0.9]",
            "clustered.cluster_from=40", "workers=2", "ship_seed=0",
            "train_overrides=[" + ",".join(f"'{o}'" for o in TRAIN_OVERRIDES) + "]"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="benchmark", overrides=argv)
        cfg.argv, cfg.script = argv, str(ROOT / "benchmarks" / "eth_ucy.py")
        # Both variants train at once, each in its own benchmark process with half the cores' threads.
        results = run_benchmark(cfg)
        # A second call continues from the records: nothing is trained again and the table is the same.
        monkeypatch.setattr("bench.eth_ucy_runner.train", lambda cfg: pytest.fail("retrained a recorded run"))
        assert run_benchmark(cfg)["variants"] == results["variants"]
        # fill adds the clustered numbers to records that lack them, from the checkpoint still at hand only.
        records = {v: run_record_path(tmp_path / "results", v, "zara1", 0) for v in ("full", "no_social")}
        for variant, path in records.items():
            record = json.loads(path.read_text())
            path.write_text(json.dumps({k: v for k, v in record.items() if k != "clustered"}))
        (tmp_path / "runs/no_social/zara1/seed0/checkpoints/best.ckpt").unlink()
        cfg.clustered.fill = True
        refilled = run_benchmark(cfg)["variants"]
        cfg.clustered.fill = False
        # passes_fill adds the sampling passes the same way, once the checkpoint is shown to be the run's own.
        for variant, path in records.items():
            record = json.loads(path.read_text())
            path.write_text(json.dumps({k: v for k, v in record.items() if k != "passes"}))
        unpassed = json.loads(records["full"].read_text())
        other_run = {**unpassed["test"], "test/ml_ade": unpassed["test"]["test/ml_ade"] + 0.01}
        records["full"].write_text(json.dumps({**unpassed, "test": other_run}))
        cfg.passes_fill = True
        with pytest.raises(CvaeTrajError, match="not that run's checkpoint"):
            run_benchmark(cfg)
        assert "passes" not in json.loads(records["full"].read_text())
        records["full"].write_text(json.dumps(unpassed))
        run_benchmark(cfg)
        cfg.passes_fill = False
    assert "passes" not in json.loads(records["no_social"].read_text())
    first_passes = results["variants"]["full"]["scenes"]["zara1"]["runs"][0]["passes"]
    filled_passes = json.loads(records["full"].read_text())["passes"]
    for kind in ("faithful", "representatives"):
        assert filled_passes[kind]["min_ade_20"] == pytest.approx(first_passes[kind]["min_ade_20"], rel=1e-3)
    assert "clustered" not in json.loads(records["no_social"].read_text())
    assert "clustered" not in refilled["no_social"]["scenes"]["zara1"]
    filled = json.loads(records["full"].read_text())["clustered"]
    first = results["variants"]["full"]["scenes"]["zara1"]["runs"][0]["clustered"]
    # The same checkpoint, seed, windows and thread count (the record's): the same draws and clusters.
    assert filled["commit"] and filled["min_ade_20"] == pytest.approx(first["min_ade_20"], rel=1e-4)

    row = results["variants"]["full"]["scenes"]["zara1"]
    assert row["windows"] == 2356  # PROTOCOL.md's ZARA1 test count
    threads = max(1, os.cpu_count() // 2)
    assert {r["hardware"]["torch_threads"] for r in row["runs"]} == {threads}
    run = row["runs"][0]
    assert run["windows"]["test"] == 2356
    # The checkpoint was chosen on validation: the epoch it comes from has the best logged validation score.
    logged = pd.read_csv(tmp_path / "runs/full/zara1/seed0/logs/metrics.csv").dropna(subset=["val/min_ade_20"])
    logged = logged[logged["epoch"] < 2]  # the training epochs, not the final re-validation of the best one
    assert len(logged) == 2 and run["best_checkpoint"] == "checkpoints/best.ckpt"
    ckpt_epoch = torch.load(tmp_path / "ckpt" / "zara1.ckpt", weights_only=True)["epoch"]
    val_by_epoch = logged.set_index("epoch")["val/min_ade_20"]
    assert val_by_epoch[ckpt_epoch] == val_by_epoch.min()
    # The same windows give the same constant-velocity numbers in every variant.
    other = results["variants"]["no_social"]["scenes"]["zara1"]
    assert other["cv_ade"]["mean"] == row["cv_ade"]["mean"] > 0
    assert row["trainable_parameters"] > other["trainable_parameters"]
    # Validation against the recipe, paired by fold and seed: the one run each has.
    versus = results["variants"]["no_social"]["validation_vs_reference"]
    assert versus["pairs"] == 1 and "validation_vs_reference" not in results["variants"]["full"]
    assert versus["min_ade_20"]["reference"] == run["val"]["val/min_ade_20"]

    # Likelihood and calibration of the selected checkpoint, on the same test windows.
    assert run["likelihood"]["windows"] == 2356 and run["likelihood"]["kde_samples"] == 50
    assert row["kde_nll"]["values"] == [run["likelihood"]["kde_nll"]]
    assert 0 <= row["coverage_50"]["mean"] <= row["coverage_90"]["mean"] <= 1
    assert results["variants"]["full"]["average"]["kde_nll"]["mean"] == row["kde_nll"]["mean"]
    assert (tmp_path / "results" / "reliability.png").stat().st_size > 0

    # The calibrated naive baseline on the same windows, scored from its draws as the model is.
    assert run["naive"]["windows"] == 2356 and run["naive"]["calibration_samples"] == 40
    assert row["naive_kde_nll"]["values"] == [run["naive"]["kde_nll"]] and 0 < run["naive"]["factor"]
    assert row["naive_calibration_error"]["values"] == [run["naive"]["calibration_error"]]
    # Best-of-20 is random: five passes each of faithful draws and of representatives, with their spread.
    passes = run["passes"]
    assert len(passes["faithful"]["min_ade_20"]) == 5 and len(set(passes["faithful"]["min_ade_20"])) == 5
    assert passes["representatives"]["cluster_from"] == 40
    # By history length: a model trained on whole histories is scored on whole ones only, as its passes score it.
    history = run["history"]
    assert set(history) == {"8", "cv"} and history["8"]["min_ade_20"] == pytest.approx(passes["faithful"]["min_ade_20"])
    assert history["cv"]["min_fde_20"] == pytest.approx(row["cv_fde"]["mean"], rel=1e-5)

    # The labelled clustering variant, on the same test windows, beside the same run's independent draws.
    clustered = row["clustered"]
    assert run["clustered"]["windows"] == 2356 and run["clustered"]["cluster_from"] == 40
    assert clustered["draws_ade_20"]["values"] == row["min_ade_20"]["values"] and clustered["seeds"] == [0]
    assert results["variants"]["full"]["clustered_average"]["min_fde_20"]["mean"] == clustered["min_fde_20"]["mean"]

    table = (tmp_path / "results" / "eth_ucy.md").read_text()
    assert f"| full | zara1 | {row['kde_nll']['mean']:.3f} ± 0.000 | -1.13 |" in table
    assert "| full | zara1 | 2356 | 1 |" in table and "CV ADE" in table and "Seeds: [0]" in table
    assert f"| full | zara1 | [0] | {clustered['min_ade_20']['mean']:.3f} ± 0.000 |" in table
    assert "representatives of 40 draws" in table and "Not the headline" in table
    mean_ade = np.mean(passes["faithful"]["min_ade_20"])
    assert f"| full | zara1 | [0] | 5 | {mean_ade:.3f} ± {np.std(passes['faithful']['min_ade_20']):.3f} |" in table
    h8 = [np.mean(history["8"][k]) for k in ("min_ade_20", "min_fde_20")]
    assert (f"| full | zara1 | [0] | {h8[0]:.3f} / {h8[1]:.3f} | {history['cv']['min_ade_20']:.3f} / "
            f"{history['cv']['min_fde_20']:.3f} |") in table
    assert f"| no_social | 1 | {versus['min_ade_20']['variant']:.4f} | {run['val']['val/min_ade_20']:.4f} |" in table
    assert f"{threads} torch thread(s) per training run, 2 run(s) at a time" in table
    assert json.loads((tmp_path / "results" / "eth_ucy.json").read_text())["variants"]["full"]["complete"]
    record = json.loads((tmp_path / "results" / "runs" / "full" / "zara1" / "seed0.json").read_text())
    assert record["test"]["test/min_ade_20"] == row["min_ade_20"]["mean"] and record["commit"]

    shipped = TrajectoryCVAE.load_from_checkpoint(tmp_path / "ckpt" / "zara1.ckpt")
    assert shipped.hparams.social and "optimizer_states" not in torch.load(tmp_path / "ckpt" / "zara1.ckpt",
                                                                             weights_only=True)
    tracks = validate_tracks(read_raw_eth_ucy(eth_ucy_root / "all_data" / "crowds_zara01.txt"), frame_step=10)
    futures = predict_futures(shipped, tracks, num_samples=20, at_frame=tracks.frames(200))
    assert futures["agent_id"].nunique() > 1 and futures["sample"].nunique() == 20

    # report_only tabulates what is recorded and trains nothing, even for seeds never run.
    cfg.seeds, cfg.report_only = [0, 1], True
    partial = run_benchmark(cfg)["variants"]["full"]
    # Averages over the seeds every scene has, and says so.
    assert not partial["complete"] and partial["average_seeds"] == [0]
    assert partial["average"]["min_ade_20"]["mean"] == row["min_ade_20"]["mean"]
    assert "| **full** | **average** | | 1 of 2 |" in (tmp_path / "results" / "eth_ucy.md").read_text()
    cfg.scenes = ["zara1", "zara2"]  # a scene without any run: no average at all
    assert run_benchmark(cfg)["variants"]["full"]["average"] is None
    assert "| **full** | **average** | | | incomplete |" in (tmp_path / "results" / "eth_ucy.md").read_text()


def test_sampling_speed_counts_agents_at_every_frame(tmp_path, eth_ucy_root):
    model = TrajectoryCVAE(social=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": "2.6.0"}, tmp_path / "m.ckpt")
    speed = sampling_speed(tmp_path / "m.ckpt", eth_ucy_root, scene="eth")
    # Every window has a full 8-step history at its last observed frame; a few more agents do without a future.
    assert speed["agents"] >= 364 and speed["ms_per_agent"] > 0



def test_commit_is_marked_dirty_by_code_changes_not_by_benchmark_outputs(tmp_path):

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "table.md").write_text("old\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = git_commit(outputs=("results",), cwd=tmp_path)
    assert clean and not clean.endswith("+")
    (tmp_path / "results" / "table.md").write_text("rerun\n")
    assert git_commit(outputs=("results",), cwd=tmp_path) == clean
    assert git_commit(cwd=tmp_path) == clean + "+"
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(outputs=("results",), cwd=tmp_path) == clean + "+"


def test_workers_get_one_command_per_pending_run_longest_fold_first(tmp_path):
    argv = ["scenes=[zara1,univ]", "seeds=[0,1]", "workers=2", "likelihood.kde_samples=50", "fresh=false"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="benchmark", overrides=[*argv, "variants=[full]", f"output_dir={tmp_path}"])
    cfg.argv, cfg.script = argv, "bench.py"
    record = run_record_path(tmp_path, "full", "zara1", 1)
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    commands = worker_commands(cfg, pending_runs(cfg))
    runs = [tuple(a for a in c if a.startswith(("scenes=", "seeds="))) for c in commands]
    assert runs == [("seeds=[0]", "scenes=[univ]"), ("seeds=[1]", "scenes=[univ]"), ("seeds=[0]", "scenes=[zara1]")]
    for command in commands:
        assert command[1] == "bench.py" and "likelihood.kde_samples=50" in command
        assert {"workers=1", "runs_at_once=2", "tabulate=false", "fresh=true"} <= set(command)
        assert "scenes=[zara1,univ]" not in command and "workers=2" not in command and "fresh=false" not in command


def test_fold_ablations_change_only_their_variant_on_their_fold():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="benchmark", overrides=["+fold_ablations.no_social.hotel=['model.latent_dim=8']"])
    assert variant_overrides(cfg, "no_social", "hotel") == ["model.social=false", "model.latent_dim=8"]
    assert variant_overrides(cfg, "no_social", "eth") == ["model.social=false"]
    assert variant_overrides(cfg, "full", "hotel") == []
    # The shipped config: the speed frame everywhere but on the fold whose own screen chose the metre frame, the
    # fold's override last so that it wins.
    univ = variant_overrides(cfg, "faithful_speed", "univ")
    assert univ[-1] == "model.speed_frame=false" and "model.speed_frame=true" in univ[:-1]
    eth = variant_overrides(cfg, "faithful_speed", "eth")
    assert "model.speed_frame=true" in eth and "model.speed_frame=false" not in eth
    zara2 = variant_overrides(cfg, "faithful_weights", "zara2")
    assert zara2[-1] == "model.prior_weight_net=false" and "model.prior_weight_net=true" in zara2[:-1]


def _runs(vals: dict) -> dict:
    """A collected variant whose runs have the given {scene: {seed: (val minADE_20, val minFDE_20)}}."""
    return {"scenes": {scene: {"runs": [{"seed": seed, "val": {"val/min_ade_20": a, "val/min_fde_20": f}}
                                        for seed, (a, f) in by_seed.items()]} for scene, by_seed in vals.items()}}


def test_validation_is_compared_with_the_recipe_pair_by_pair():
    recipe = _runs({"eth": {0: (0.20, 0.36), 1: (0.22, 0.40), 2: (0.30, 0.50)}, "hotel": {0: (0.21, 0.38)}})
    # Seed 2 of eth has no partner here and hotel seed 1 none in the recipe: neither may count.
    variant = _runs({"eth": {0: (0.19, 0.37), 1: (0.20, 0.41)}, "hotel": {0: (0.18, 0.36), 1: (0.90, 0.90)}})
    c = paired_validation(variant, recipe)
    assert c["pairs"] == 3
    diffs = [-0.01, -0.02, -0.03]  # per pair, in minADE_20
    assert c["min_ade_20"]["difference"] == pytest.approx(-0.02)
    assert c["min_ade_20"]["se"] == pytest.approx(0.01 / 3 ** 0.5)  # sample std 0.01 over sqrt(3) pairs
    assert sum(diffs) / 3 == pytest.approx(c["min_ade_20"]["variant"] - c["min_ade_20"]["reference"])
    assert c["min_fde_20"]["difference"] == pytest.approx((0.01 + 0.01 - 0.02) / 3)
    # One pair gives a difference but no spread to judge it by; no pair gives nothing.
    single = paired_validation(_runs({"hotel": {0: (0.20, 0.40)}}), recipe)
    assert single["pairs"] == 1 and single["min_ade_20"]["se"] is None
    assert paired_validation(_runs({"zara1": {0: (0.2, 0.4)}}), recipe) is None
    variants = {"full": recipe, "better": {**variant, "validation_vs_reference": c},
                "one": {**variant, "validation_vs_reference": single}}
    lines = validation_table({"reference_variant": "full", "variants": variants})
    assert "| better | 3 | 0.1900 | 0.2100 | -0.0200 ± 0.0058 |" in "\n".join(lines)
    assert "| one | 1 | 0.2000 | 0.2100 | -0.0100 |" in "\n".join(lines) and "`full`" in lines[1]


def test_the_unseen_scene_rule_weighs_calibration_against_kde_nll_per_fold():
    """benchmarks/scene_shift.py's choice: the candidate wins a fold only when, over the unseen scenes both
    ran (averaging the seeds both ran first), its calibration error is lower by at least the gain and its KDE NLL higher by
    at most the loss; a scene only one of them ran does not count."""
    from omegaconf import OmegaConf
    from scene_shift import choices

    rule = OmegaConf.create({"baseline": "faithful", "candidate": "clip", "min_calibration_gain": 0.02,
                             "max_kde_nll_loss": 0.1})

    def runs(*pairs):
        return [{"seed": seed, "calibration_error": c, "kde_nll": k} for seed, (c, k) in enumerate(pairs)]

    groups = {
        ("eth", "hotel", "faithful"): runs((0.10, 0.0)), ("eth", "hotel", "clip"): runs((0.05, 0.05)),
        # univ: calibration better by 0.03 but KDE NLL worse by 0.2: kept.
        ("univ", "hotel", "faithful"): runs((0.10, 0.0)), ("univ", "hotel", "clip"): runs((0.07, 0.2)),
        # zara1: seeds averaged (0.06), then scenes; the scene clip never ran leaves the mean alone, and so does
        # the seed only clip ran (0.50).
        ("zara1", "eth", "faithful"): runs((0.09, 1.0), (0.09, 1.0)),
        ("zara1", "eth", "clip"): runs((0.05, 1.0), (0.07, 1.0), (0.50, 1.0)),
        ("zara1", "univ", "faithful"): runs((0.50, 9.0)),
    }
    table = choices(rule, groups)
    assert "| eth | hotel | 0.050 | 0.050 | clip |" in table
    assert "| univ | hotel | 0.030 | 0.200 | faithful |" in table
    assert "| zara1 | eth | 0.030 | 0.000 | clip |" in table


def test_a_copied_record_finds_thecheckpoint_of_the_run_it_was_copied_from(tmp_path):
    """Records copied between rows (a fold that keeps another row's training) hold no run folder of their own:
    the refresh of their representatives follows `copied_from`, through a chain of copies, to the checkpoint."""
    from omegaconf import OmegaConf
    from bench.eth_ucy_runner import checkpoint_of

    cfg = OmegaConf.create({"runs_dir": str(tmp_path / "runs")})
    ckpt = tmp_path / "runs" / "faithful_speed" / "univ" / "seed1" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights")
    records = tmp_path / "results" / "runs"
    source = records / "faithful_speed" / "univ" / "seed1.json"
    middle = records / "faithful" / "univ" / "seed1.json"
    for path, record in ((source, {"best_checkpoint": "checkpoints/best.ckpt"}),
                         (middle, {"best_checkpoint": "checkpoints/best.ckpt", "copied_from": f"{source}: run there"})):
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))
    copy = {"best_checkpoint": "checkpoints/best.ckpt", "copied_from": f"{middle}: kept faithful's training"}
    assert checkpoint_of(cfg, copy, "faithful_speed_clip", "univ", 1) == ckpt
    assert checkpoint_of(cfg, {"best_checkpoint": "checkpoints/best.ckpt"}, "faithful", "univ", 1) is None


def test_an_ensemble_is_judged_against_the_single_runs_it_is_made_of():
    """An ensemble screen of seed 0 made of seeds 0-2 is compared with the mean of those three single runs, not
    with the single run of its own seed number, nor with runs outside it."""
    from omegaconf import OmegaConf
    from scene_shift import choices

    rule = OmegaConf.create({"baseline": "one", "candidate": "one_x3", "min_calibration_gain": 0.02,
                             "max_kde_nll_loss": 0.1})
    single = [{"seed": s, "calibration_error": c, "kde_nll": 1.0} for s, c in ((0, 0.10), (1, 0.20), (2, 0.30),
                                                                                (3, 0.90))]
    ensemble = [{"seed": 0, "member_seeds": [0, 1, 2], "calibration_error": 0.17, "kde_nll": 1.0}]
    table = choices(rule, {("eth", "hotel", "one"): single, ("eth", "hotel", "one_x3"): ensemble})
    assert "| eth | hotel | 0.030 | 0.000 | one_x3 |" in table  # 0.20 - 0.17, where seed 0 alone gives -0.07


def test_an_ensemble_row_combines_the_recorded_runs_of_its_members(tmp_path, monkeypatch):
    from omegaconf import OmegaConf
    from bench import eth_ucy_runner
    from cvae_traj import load_model
    from cvae_traj.ensemble import write_checkpoint
    from cvae_traj.errors import CvaeTrajError

    cfg = OmegaConf.create({"runs_dir": str(tmp_path / "runs"), "output_dir": str(tmp_path / "results"),
                            "ensembles": {"one_x2": {"of": "one", "members": 2}}})
    models = {}
    for seed, seconds in ((2, 10.0), (3, 30.0)):  # ensemble seed 1 of two members: seeds 2 and 3
        torch.manual_seed(seed)
        models[seed] = TrajectoryCVAE(latent_dim=4, hidden_dim=8)
        write_checkpoint(models[seed], tmp_path / "runs" / "one" / "eth" / f"seed{seed}" / "checkpoints" / "best.ckpt")
        record = run_record_path(tmp_path / "results", "one", "eth", seed)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"best_checkpoint": "checkpoints/best.ckpt", "train_seconds": seconds}))
    monkeypatch.setattr(eth_ucy_runner, "score", lambda cfg, ckpt: {"val": {}, "scored": str(ckpt)})
    run_dir = tmp_path / "runs" / "one_x2" / "eth" / "seed1"
    metrics = eth_ucy_runner.combine_members(cfg, "one_x2", "eth", 1, None, run_dir)
    assert metrics["train_seconds"] == 40.0 and metrics["best_checkpoint"] == "checkpoints/best.ckpt"
    assert metrics["scored"] == str(run_dir / "checkpoints" / "best.ckpt")
    ensemble = load_model(run_dir / "checkpoints" / "best.ckpt")
    for member, seed in zip(ensemble.members, (2, 3)):
        for name, value in models[seed].cvae.state_dict().items():
            assert torch.equal(member.state_dict()[name], value), name
    assert variant_overrides(OmegaConf.create({"ensembles": cfg.ensembles, "ablations": {"one": ["a=1"]}}),
                             "one_x2", "eth") == ["a=1"]
    with pytest.raises(CvaeTrajError, match=r"one's runs of seeds \[0, 1\]: run variants=\[one\] scenes=\[eth\] "
                                            r"seeds=\[0, 1\] first"):
        eth_ucy_runner.combine_members(cfg, "one_x2", "eth", 0, None, tmp_path / "x")
