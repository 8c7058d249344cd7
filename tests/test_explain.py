"""Explanations: pointing game, Grad-CAM, embedding scores, checkpoints and `fetalbench explain`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fetalbench.cli import main
from fetalbench.data.phantom.render import (
    DEFINING_STRUCTURES,
    LEGEND,
    PhantomSettings,
    generate_phantom,
)
from fetalbench.errors import FetalbenchError
from fetalbench.explain.cam import default_target_layer, grad_cam
from fetalbench.explain.embedding import embedding_scores, tsne_coordinates
from fetalbench.explain.explain import explain_run
from fetalbench.explain.figures import plot_tsne
from fetalbench.explain.pointing import (
    defining_masks,
    pointing_game,
    pointing_hits,
    pointing_tolerance,
)
from fetalbench.methods.api import Classifier
from fetalbench.methods.backbones import GrayscaleBackbone, create_backbone
from fetalbench.runs.checkpoints import load_classifier
from fetalbench.runs.execute import execute_run
from fetalbench.runs.records import find_record, read_ok_record
from fetalbench.runs.spec import RunRequest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# --- pointing game ------------------------------------------------------------------------------


def square_masks(n: int, size: int = 32) -> np.ndarray:
    masks = np.zeros((n, size, size), dtype=bool)
    masks[:, 10:16, 20:26] = True
    return masks


def peaked_cams(n: int, y: int, x: int, size: int = 32) -> np.ndarray:
    cams = np.random.default_rng(0).uniform(0.0, 0.5, (n, size, size))
    cams[:, y, x] = 1.0
    return cams


def test_pointing_game_is_one_on_the_structure_and_zero_off_it() -> None:
    masks = square_masks(5)
    on = pointing_game(peaked_cams(5, 12, 22), masks, tolerance=0.0)
    off = pointing_game(peaked_cams(5, 28, 3), masks, tolerance=pointing_tolerance(64))
    assert (on.pointing_game, on.n) == (1.0, 5)
    assert (off.pointing_game, off.n) == (0.0, 5)


def test_pointing_tolerance_scales_from_15px_at_224() -> None:
    assert pointing_tolerance(224) == 15.0
    assert pointing_tolerance(64) == pytest.approx(15 * 64 / 224)
    masks = square_masks(1)
    three_below = peaked_cams(1, 15 + 3, 22)  # 3 px below the square's last row
    assert not pointing_hits(three_below, masks, tolerance=2.9)[0]
    assert pointing_hits(three_below, masks, tolerance=3.0)[0]
    diagonal = peaked_cams(1, 15 + 3, 25 + 3)  # 3*sqrt(2) = 4.24 px from the corner
    assert not pointing_hits(diagonal, masks, tolerance=4.2)[0]
    assert pointing_hits(diagonal, masks, tolerance=4.3)[0]


def test_pointing_game_skips_empty_masks_and_misses_flat_maps() -> None:
    masks = square_masks(4)
    masks[3] = False
    cams = peaked_cams(4, 12, 22)
    cams[1] = 0.0  # no peak at all
    result = pointing_game(cams, masks, tolerance=4.0)
    assert result.n == 3
    assert result.pointing_game == pytest.approx(2 / 3)
    assert pointing_game(cams, np.zeros_like(masks), 4.0).pointing_game is None


def test_defining_masks_follow_the_legend_and_the_class(tmp_path: Path) -> None:
    ids = {name: int(label) for label, name in LEGEND.items()}
    labels = np.zeros((20, 40), dtype=np.uint8)
    labels[:, :10] = ids["femur"]
    labels[:, 10:20] = ids["skull"]
    labels[:, 20:] = ids["thalami"]
    (tmp_path / "Masks").mkdir()
    Image.fromarray(labels).save(tmp_path / "Masks" / "a.png")
    (tmp_path / "Masks" / "legend.json").write_text(json.dumps({str(k): v
                                                                for k, v in LEGEND.items()}))
    femur, brain, thalamic = defining_masks(tmp_path, ["a"] * 3, ["Fetal femur", "Fetal brain",
                                                                  "Trans-thalamic"], 8)
    assert "skull" in DEFINING_STRUCTURES["Fetal brain"]
    assert femur[:, :2].all() and not femur[:, 2:].any()
    assert brain[:, 2:].all() and not brain[:, :2].any()
    assert thalamic[:, 4:].all() and not thalamic[:, :4].any()
    with pytest.raises(FetalbenchError, match="no defining structures"):
        defining_masks(tmp_path, ["a"], ["Not A Plane"], 8)


# --- Grad-CAM -----------------------------------------------------------------------------------


class BrightnessNet(nn.Module):
    """Channel 0 detects bright pixels, channel 1 dark ones; pooled features, no training."""

    num_features = 2

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 2, 3, padding=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        with torch.no_grad():
            self.features.weight[0] = 1.0 / 27
            self.features.weight[1] = -1.0 / 27

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.features(images))).flatten(1)


def blob_classifier() -> Classifier:
    classifier = Classifier(GrayscaleBackbone(BrightnessNet(), (0.5,) * 3, (0.5,) * 3, "toy"), 2)
    with torch.no_grad():
        classifier.head.weight.copy_(torch.eye(2))
        classifier.head.bias.zero_()
    return classifier


def blob_images(centres: list[tuple[int, int]], size: int = 32) -> torch.Tensor:
    y, x = np.mgrid[:size, :size]
    images = [255 * (((y - cy) ** 2 + (x - cx) ** 2) <= 9) for cy, cx in centres]
    return torch.from_numpy(np.array(images, dtype=np.uint8)).unsqueeze(1)


def test_grad_cam_peak_follows_the_informative_blob() -> None:
    classifier = blob_classifier()
    centres = [(6, 6), (6, 25), (25, 14)]
    assert default_target_layer(classifier, 32) == "features"
    maps = grad_cam(classifier, blob_images(centres), torch.zeros(3, dtype=torch.long))
    assert maps.shape == (3, 32, 32)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    for cam, (cy, cx) in zip(maps.numpy(), centres, strict=True):
        py, px = np.unravel_index(cam.argmax(), cam.shape)
        assert abs(py - cy) <= 3 and abs(px - cx) <= 3
        assert cam[cy, cx] == 1.0 and cam[(cy + 16) % 32, (cx + 16) % 32] == 0.0


def test_grad_cam_on_efficientnet_uses_the_deepest_4x4_map_and_frozen_weights() -> None:
    torch.manual_seed(0)
    classifier = Classifier(create_backbone("tf_efficientnet_lite0", "random"), 3)
    assert [default_target_layer(classifier, r) for r in (32, 64, 224)] == [
        "blocks.2", "blocks.4", "bn2"]
    classifier.backbone.requires_grad_(False)  # the linear protocol freezes the backbone
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 1, 32, 32),
                                                                 dtype=np.uint8))
    maps = grad_cam(classifier, images, torch.tensor([0, 1, 2, 0]))
    assert maps.shape == (4, 32, 32)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert all(float(m.max() - m.min()) > 0 for m in maps)
    assert all(p.grad is None for p in classifier.parameters())


# --- embedding scores ---------------------------------------------------------------------------


def test_separated_clusters_score_high_and_random_ones_at_chance() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    directions = np.eye(16)[:3] * 5
    clustered = directions[labels] + rng.normal(0, 0.3, (90, 16))
    patients = np.arange(90) // 3  # three images of one class per patient
    good = embedding_scores(clustered, labels, patients, seed=0)
    assert good.silhouette > 0.5 and good.knn_accuracy == 1.0
    noise = embedding_scores(rng.normal(0, 1, (90, 16)), labels, patients, seed=0)
    assert abs(noise.silhouette) < 0.1
    assert 0.1 < noise.knn_accuracy < 0.6
    one_class = embedding_scores(clustered, np.zeros(90, dtype=int), patients, seed=0)
    assert one_class.silhouette is None and one_class.knn_accuracy is None
    one_patient = embedding_scores(clustered, labels, np.zeros(90, dtype=int), seed=0)
    assert one_patient.silhouette == good.silhouette and one_patient.knn_accuracy is None


def test_knn_folds_keep_patients_together() -> None:
    # 90 patients of one class each (30 per class), 6 images per patient. Each embedding is its
    # patient's random direction plus a little noise: it identifies the patient, not the class.
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(90), 6)
    labels = patients % 3
    embeddings = rng.normal(0, 1, (90, 32))[patients] + rng.normal(0, 0.1, (540, 32))
    ungrouped = embedding_scores(embeddings, labels, np.arange(540), seed=0)
    assert ungrouped.knn_accuracy > 0.9  # neighbours: the same patient's other images
    grouped = embedding_scores(embeddings, labels, patients, seed=0)
    assert grouped.knn_accuracy < 0.5  # chance is 1/3


def test_tsne_and_its_figure_are_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    embeddings, labels = rng.normal(0, 1, (40, 8)), np.repeat(np.arange(2), 20)
    first, second = tsne_coordinates(embeddings, 3), tsne_coordinates(embeddings, 3)
    np.testing.assert_array_equal(first, second)
    plot_tsne(first, labels, ("a", "b"), "t", tmp_path / "1.png")
    plot_tsne(second, labels, ("a", "b"), "t", tmp_path / "2.png")
    assert (tmp_path / "1.png").read_bytes() == (tmp_path / "2.png").read_bytes()


# --- runs, checkpoints and `fetalbench explain` -------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(real_subset_root: Path, tmp_path_factory) -> tuple[Path, dict, Path]:
    out, cache = tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("cache")
    request = RunRequest(method="supervised_scratch", task="planes", dataset="fetal_planes_db",
                         data_root=real_subset_root, profile="tiny")
    outcome = execute_run(request, out, cache, log=lambda _: None)
    return out, outcome.record, cache


def test_every_run_records_embedding_scores_and_a_checkpoint(finished_run) -> None:
    out, record, cache = finished_run
    (path,) = out.rglob("*.json")
    assert json.loads(path.read_text()) == record
    embedding = record["metrics"]["embedding"]
    assert -1.0 <= embedding["silhouette"] <= 1.0 and 0.0 <= embedding["knn_accuracy"] <= 1.0
    assert "localisation" not in record["metrics"]  # real FETAL_PLANES_DB rows have no masks
    assert record["checkpoint"] == (
        f"checkpoints/{path.relative_to(out).with_suffix('.safetensors').as_posix()}")
    checkpoint = cache / record["checkpoint"]  # records name it in the cache
    assert record["timings"]["explain_s"] >= 0
    classifier = load_classifier(record, checkpoint)
    assert classifier.head.out_features == len(record["classes"])
    with pytest.raises(FetalbenchError, match="belongs to run"):
        load_classifier({**record, "spec_hash": "0" * 16}, checkpoint)


def png_ok(path: Path) -> bool:
    data = path.read_bytes()
    with Image.open(path) as image:
        image.verify()
    return data.startswith(PNG_SIGNATURE) and len(data) > 5_000


def test_explain_writes_figures_and_reproduces_the_numbers(
    finished_run, real_subset_root, tmp_path, capsys, monkeypatch
) -> None:
    out, record, cache = finished_run
    monkeypatch.setenv("FETALBENCH_CACHE", str(cache))  # reuse the run's image cache
    figures = tmp_path / "figures"
    arguments = ["explain", "--method", "supervised_scratch", "--task", "planes", "--results",
                 str(out), "--out", str(figures), "--per-class", "2"]
    with pytest.raises(FetalbenchError, match="pass --data-root DIR"):  # records name no folder
        explain_run(record, figures, cache, 2)
    assert main([*arguments, "--data-root", str(real_subset_root)]) == 0
    printed = capsys.readouterr().out
    assert png_ok(figures / "gradcam.png") and png_ok(figures / "tsne.png")
    assert f"silhouette {record['metrics']['embedding']['silhouette']:.3f}" in printed
    assert "not computed" in printed and str(figures / "tsne.png") in printed


def test_explain_needs_the_checkpoint_and_one_matching_record(finished_run, real_subset_root,
                                                              tmp_path) -> None:
    out, record, _ = finished_run
    with pytest.raises(FetalbenchError, match=rf"saved no checkpoint.*{real_subset_root}.*--force"):
        explain_run({**record, "checkpoint": None}, tmp_path, tmp_path, data_root=real_subset_root)
    with pytest.raises(FetalbenchError, match="missing; rerun"):
        explain_run({**record, "checkpoint": str(tmp_path / "gone.safetensors")}, tmp_path,
                    tmp_path, data_root=real_subset_root)
    (path,) = out.rglob("*.json")
    twin = json.loads(path.read_text())
    twin["spec"]["seed"] = 7
    copy = tmp_path / "results" / path.relative_to(out)
    shutil.copytree(out, tmp_path / "results")
    copy.with_name("twin.json").write_text(json.dumps(twin))
    with pytest.raises(FetalbenchError, match=r"2 records .* --fraction/--seed/--protocol"):
        find_record(tmp_path / "results", "supervised_scratch", "planes")
    assert find_record(tmp_path / "results", "supervised_scratch", "planes", seed=0) == copy
    # the same cell's linear evaluation differs only by its protocol
    twin["spec"] = {**twin["spec"], "seed": 0, "protocol": "linear"}
    copy.with_name("twin.json").write_text(json.dumps(twin))
    with pytest.raises(FetalbenchError, match=r"2 records .* with seed 0 "):
        find_record(tmp_path / "results", "supervised_scratch", "planes", seed=0)
    assert find_record(tmp_path / "results", "supervised_scratch", "planes", seed=0,
                       protocol="finetune") == copy
    assert find_record(tmp_path / "results", "supervised_scratch", "planes",
                       protocol="linear") == copy.with_name("twin.json")
    with pytest.raises(FetalbenchError, match="no successful record"):
        find_record(out, "supervised_scratch", "brain")
    not_a_record = tmp_path / "other.json"
    not_a_record.write_text("[]")
    with pytest.raises(FetalbenchError, match="not a run record"):
        read_ok_record(not_a_record)


def test_phantom_runs_play_the_pointing_game(tmp_path: Path) -> None:
    root = tmp_path / "phantom"
    generate_phantom(root, PhantomSettings(n_images=120, width=128, height=96), workers=1)
    request = RunRequest(method="supervised_scratch", task="planes", dataset="fetal_planes_db",
                         data_root=root, profile="tiny")
    record = execute_run(request, tmp_path / "out", tmp_path / "cache", log=lambda _: None,
                         checkpoint_dir=None).record
    localisation = record["metrics"]["localisation"]
    assert 0.0 <= localisation["pointing_game"] <= 1.0
    assert 0 < localisation["n"] <= record["split"]["test"]
    assert record["checkpoint"] is None
    assert not list((tmp_path / "cache").glob("checkpoints"))
