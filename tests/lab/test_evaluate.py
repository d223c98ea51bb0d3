"""Lab measurements on constructed cases: k-means, mode coverage, AUROC, sharpness, collapse detection,
and the report's 'best for' sentences."""

import json

import torch

from conjure.lab.demos import auroc, detect_collapse
from conjure.lab.evaluate import kmeans, sharpness
from conjure.lab.report import best_for, report_markdown, summarise


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.3 * torch.randn(50, 2, generator=g) for c in centres])
    found = kmeans(x, 3, seed=1)
    assert torch.cdist(centres, found).min(1).values.max() < 0.5


def test_auroc_perfect_random_and_ties():
    assert auroc(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([3.0, 4.0])) == 1.0
    assert auroc(torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0])) == 0.0
    assert auroc(torch.ones(5), torch.ones(7)) == 0.5
    g = torch.Generator().manual_seed(0)
    assert abs(auroc(torch.randn(4000, generator=g), torch.randn(4000, generator=g)) - 0.5) < 0.03


def test_blur_lowers_sharpness():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 28, 28, generator=g) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    assert sharpness(blurred) < 0.5 * sharpness(x)


def test_collapse_detector():
    stable = {"classes_reached": 10, "cluster_coverage": 0.9, "recall": 0.6}
    assert not detect_collapse(stable, stable)["collapsed"]
    collapsed = {"classes_reached": 3, "cluster_coverage": 0.2, "recall": 0.05}
    verdict = detect_collapse(collapsed, stable)
    assert verdict["collapsed"] and len(verdict["reasons"]) == 3


def _run(fam, fid, ms, recall=0.5, seed=0):
    return {"family": fam, "seed": seed, "images_seen": 1000, "stage_images": {"main": 1000}, "train_seconds": 60,
            "train_flops": 1e12, "parameters": {"net": 10**6}, "sampling_params": 10**6, "sample_ms": ms, "nfe": 1,
            "sample_flops": 1e8, "fid_conjure": fid, "fid_conjure_ci95": [fid - 1, fid + 1], "fid_conjure_floor": 2.0,
            "kid_conjure": 0.1, "precision": 0.7, "recall": recall, "class_accuracy": 0.8, "class_accuracy_real": 0.86,
            "classes_reached": 10, "cluster_coverage": 0.9, "sharpness": 0.2, "sharpness_real": 0.25, "n_samples": 2000,
            "device": "cpu", "torch_threads": 2}


def test_summary_and_best_for_cite_the_winning_numbers():
    runs = {"gan": [_run("gan", 30.0, 0.1)], "ddpm": [_run("ddpm", 10.0, 50.0, recall=0.7), _run("ddpm", 12.0, 50.0, seed=1)]}
    s = summarise(runs)
    assert s["families"]["ddpm"]["fid_spread"] == 1.0 and s["families"]["gan"]["fid_spread"] is None
    assert "fid_conjure 10" in best_for("ddpm", s) and "recall 0.7" in best_for("ddpm", s)
    assert "0.1 ms" in best_for("gan", s)
    md = report_markdown(s)
    assert "| ddpm |" in md and "one seed only" in md
    json.dumps(s)


def test_png_length_grows_with_image_complexity():
    from conjure.lab.demos import png_nats
    g = torch.Generator().manual_seed(0)
    blank = torch.ones(2, 1, 28, 28)
    noisy = torch.rand(2, 1, 28, 28, generator=g) * 2 - 1
    assert (png_nats(noisy) > 3 * png_nats(blank)).all()


def test_side_evaluations_are_tagged_not_written_over_the_standard_one():
    from conjure.lab.evaluate import N_EVAL, result_tag
    assert result_tag() == "" and result_tag(N_EVAL) == ""
    assert result_tag(500, 1000, "ddpm") == "ddpm1000-n500"
    assert result_tag(500) == "default-n500"


def test_seed_spread_compares_runs_at_one_budget_only():
    runs = {"flow": [_run("flow", 20.0, 1.0), _run("flow", 30.0, 1.0, seed=1), _run("flow", 34.0, 1.0, seed=2)]}
    runs["flow"][0]["images_seen"] = 300_000
    for r in runs["flow"][1:]:
        r["images_seen"] = 100_000
    f = summarise(runs)["families"]["flow"]
    assert f["fid_conjure"] == 20.0                                  # the main run: the largest budget
    assert f["fid_spread"] == 2.0 and f["fid_spread_seeds"] == [1, 2] and f["fid_spread_images"] == 100_000
    assert "over seeds [1, 2] at 100,000 images" in report_markdown(summarise(runs))


def test_report_explains_the_pixel_ddpm_from_its_side_evaluation_and_the_denoise_demo():
    runs = {"ddpm": [_run("ddpm", 200.0, 300.0)], "flow": [_run("flow", 20.0, 150.0)]}
    s = summarise(runs)
    s["families"]["ddpm"]["side_evaluations"] = {"ddpm1000-n500": {
        "fid_conjure": 40.0, "fid_conjure_ci95": [38, 42], "fid_conjure_floor": 5.0, "kid_conjure": 1.0,
        "precision": 0.9, "recall": 0.6, "class_accuracy": 0.5, "sharpness": 0.43, "sample_ms": 7000.0, "nfe": 1000,
        "n_samples": 500, "images_seen": 1000}}
    s["demos"] = {
        "denoise": {"n": 500, "rows": [
            {"t": 250, "snr": 1.09, "ddpm_eps_mse": 0.06, "ddpm_x0_rmse": 0.24, "flow_time": 0.51, "flow_x0_rmse": 0.23},
            {"t": 750, "snr": 0.0033, "ddpm_eps_mse": 0.004, "ddpm_x0_rmse": 1.1, "flow_time": 0.05, "flow_x0_rmse": 0.46}]},
        "steps": {"n": 500, "fid_conjure_floor": 5.0, "rows": {"ddpm": [
            {"sampler": "ddim", "steps": 5, "nfe": 5, "fid_conjure": 300.0},
            {"sampler": "ddpm", "steps": 5, "nfe": 5, "fid_conjure": 250.0}]}}}
    md = report_markdown(s)
    assert "ancestral sampler at 1000 steps give fid_conjure 40 on 500 samples" in md
    assert "1.1 against 0.46" in md and "0.24 against 0.23" in md
    assert "| 5 | 300 (5 NFE) | 250 (5 NFE) |" in md and "| 1000 |  | 40 (500 samples) |" in md
    assert "| 750 | 0.0033 | 0.004 | 1.1 | 0.05 | 0.46 |" in md


def test_an_extended_run_keeps_its_earlier_evaluation_for_the_along_training_table(tmp_path):
    from conjure.lab.evaluate import _keep_earlier
    from conjure.lab.report import along_training, along_training_table
    run = tmp_path / "gan-seed0"
    run.mkdir()
    early = _run("gan", 28.0, 1.0)
    early["images_seen"], early["cluster_coverage"] = 150_000, 0.4
    (run / "metrics.json").write_text(json.dumps(early))
    (run / "samples.png").write_bytes(b"png")
    _keep_earlier(run, "", 300_000)                    # a new evaluation at 300k is about to be written
    assert (run / "metrics.at150000.json").is_file() and (run / "samples.at150000.png").is_file()
    assert not (run / "metrics.json").exists()
    late = dict(early, images_seen=300_000, fid_conjure=43.0)
    (run / "metrics.json").write_text(json.dumps(late))
    _keep_earlier(run, "", 300_000)                    # same budget again: nothing is moved
    assert (run / "metrics.json").is_file()
    hist = along_training(tmp_path)
    assert [h["fid_conjure"] for h in hist["gan"]] == [28.0, 43.0]
    assert "| gan | 28 (0.5) | 43 (0.5) |" in "\n".join(along_training_table(hist))


def test_seeds_table_shows_each_seed_and_flags_a_family_unconverged_at_the_small_budget():
    runs = {"gan": [_run("gan", 40.0, 1.0), _run("gan", 30.0, 1.0, seed=1), _run("gan", 50.0, 1.0, seed=2)],
            "ddpm": [_run("ddpm", 50.0, 1.0), _run("ddpm", 380.0, 1.0, seed=1), _run("ddpm", 390.0, 1.0, seed=2)]}
    for rs in runs.values():
        rs[0]["images_seen"] = 300_000
        for r in rs[1:]:
            r["images_seen"] = 100_000
    s = summarise(runs)
    g = s["families"]["gan"]
    assert g["fid_spread_mean"] == 40.0 and g["fid_spread_cv"] == 0.25
    assert [r["fid_conjure"] for r in g["seed_runs"]] == [30.0, 50.0]
    md = report_markdown(s)
    assert "| gan | 2 | 100,000 | 50 |" in md and "40 ± 10 (25%)" in md
    assert "far from their full-budget quality at 100,000 images (mean fid_conjure more than 3x seed 0's): ddpm 385 against 50 (7.7x)." in md
    assert "Closer: gan 40 against 40 (1.0x)." in md
    assert "varies by 25% of the mean (rank 1 of 2" in md
