"""Hub weights: offline, a missing file is one line naming it and where to put it; with a hub
cache the test writes (tiny random weights), --backbone resnet18 and FetalCLIP run end to end and
their records name the weights' sha256; a corrupt blob is refused; without the extra, one line."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save as save_safetensors

from fetalbench.cli import main
from fetalbench.methods import METHODS, foundation

TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                            "patch_size": 8},
             "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                          "layers": 1}}
"""A tiny random CLIP of FetalCLIP's kind (a ViT image tower, a transformer text tower)."""


def write_hub_file(cache: Path, repository: str, filename: str, content: bytes) -> str:
    """Put ``content`` into a hub cache as ``hf_hub_download`` lays it out (an LFS blob named by
    its sha256, a snapshot link, ``refs/main``); its sha256."""
    sha256 = hashlib.sha256(content).hexdigest()
    folder = cache / ("models--" + repository.replace("/", "--"))
    commit = hashlib.sha1(repository.encode()).hexdigest()
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    (folder / "blobs" / sha256).write_bytes(content)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / filename).symlink_to(Path("../../blobs") / sha256)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return sha256


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache in place of the machine's (the session is offline: conftest)."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def run(root: Path, out: Path, *options: str) -> int:
    return main(["run", "--task", "brain", "--dataset", "fetal_planes_db", "--data-root",
                 str(root), "--profile", "tiny", "--out", str(out), "--quiet", *options])


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("fetalbench: error: "), err
    return err


@pytest.mark.parametrize("options", [
    ("--method", "supervised_imagenet", "--backbone", "resnet18", "--protocol", "linear"),
    ("--method", "fetalclip", "--protocol", "linear"),
    ("--method", "dinov2_vits14", "--protocol", "linear"),
])
def test_offline_each_missing_weight_file_is_one_line_naming_it(
    options: tuple[str, ...], hub_cache: Path, real_subset_root: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(real_subset_root, tmp_path / "out", *options) == 2
    err = one_line_error(capsys)
    assert str(hub_cache) in err and "`hf download " in err
    assert "FetalCLIP_weights.pt" in err if "fetalclip" in options else "model.safetensors" in err
    assert not list((tmp_path / "out").rglob("*.json"))


def test_backbone_resnet18_from_a_hub_cache_runs_and_names_its_weights(
    hub_cache: Path, real_subset_root: Path, tmp_path: Path,
) -> None:
    weights = timm.create_model("resnet18").state_dict()
    sha256 = write_hub_file(hub_cache, "timm/resnet18.a1_in1k", "model.safetensors",
                            save_safetensors(weights))
    for protocol in ("linear", "finetune"):
        assert run(real_subset_root, tmp_path / "out", "--method", "supervised_imagenet",
                   "--backbone", "resnet18", "--protocol", protocol) == 0
    for path in (tmp_path / "out").rglob("*.json"):
        record = json.loads(path.read_text())
        assert record["spec"]["profile"]["backbone"] == "resnet18"
        assert record["encoder"]["weights"] == {"source": "hub",
                                                "repository": "timm/resnet18.a1_in1k",
                                                "file": "model.safetensors", "sha256": sha256}
        assert record["encoder"]["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_a_corrupt_blob_is_refused_in_one_line(hub_cache: Path, real_subset_root: Path,
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    sha256 = write_hub_file(hub_cache, "timm/resnet18.a1_in1k", "model.safetensors", b"weights")
    (hub_cache / "models--timm--resnet18.a1_in1k" / "blobs" / sha256).write_bytes(b"changed")
    assert run(real_subset_root, tmp_path, "--method", "supervised_imagenet", "--backbone",
               "resnet18", "--protocol", "linear") == 2
    assert "corrupt or replaced" in one_line_error(capsys)


@pytest.fixture
def tiny_fetalclip(tmp_path: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """FetalCLIP's loading code on a tiny random configuration: the configuration file in place
    of the published one, its random weights as FetalCLIP_weights.pt in the hub cache."""
    open_clip = pytest.importorskip("open_clip")
    config = tmp_path / "configs" / "FetalCLIP.json"
    config.parent.mkdir()
    config.write_text(json.dumps(TINY_CLIP))
    monkeypatch.setattr(foundation, "FETALCLIP", replace(foundation.FETALCLIP, config=config))
    open_clip.add_model_config(config)
    buffer = io.BytesIO()
    torch.save(open_clip.create_model("FetalCLIP").state_dict(), buffer)
    return write_hub_file(hub_cache, foundation.FETALCLIP.repository, foundation.FETALCLIP.file,
                          buffer.getvalue())


def test_fetalclip_from_a_hub_cache_runs_end_to_end_and_names_its_weights(
    tiny_fetalclip: str, real_subset_root: Path, tmp_path: Path,
) -> None:
    assert run(real_subset_root, tmp_path / "out", "--method", "fetalclip", "--protocol",
               "linear") == 0
    (path,) = (tmp_path / "out").rglob("*.json")
    record = json.loads(path.read_text())
    assert record["encoder"]["weights"] == {"source": "hub",
                                            "repository": "numansaeed/fetalclip-model",
                                            "file": "FetalCLIP_weights.pt",
                                            "sha256": tiny_fetalclip}
    preprocessing = record["encoder"]["preprocessing"]
    assert preprocessing["resolution"] == TINY_CLIP["vision_cfg"]["image_size"]
    assert preprocessing["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert record["learning"]["stages"][0]["name"] == "linear evaluation"
    assert 0 <= record["metrics"]["knn"]["accuracy"] <= 1


def test_fetalclip_weights_of_another_architecture_are_one_line(
    tiny_fetalclip: str, hub_cache: Path, real_subset_root: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = json.loads(foundation.FETALCLIP.config.read_text())
    config["embed_dim"] = 8
    foundation.FETALCLIP.config.write_text(json.dumps(config))
    assert run(real_subset_root, tmp_path, "--method", "fetalclip", "--protocol", "linear") == 2
    assert "does not load into FetalCLIP's architecture" in one_line_error(capsys)


def test_without_the_extra_one_line_names_it(monkeypatch: pytest.MonkeyPatch,
                                            real_subset_root: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(foundation.importlib.util, "find_spec", lambda name: None)
    assert run(real_subset_root, tmp_path, "--method", "fetalclip", "--protocol", "linear") == 2
    assert "pip install 'fetalbench[foundation]'" in one_line_error(capsys)


def test_foundation_encoders_take_only_the_linear_evaluation_and_no_backbone(
    real_subset_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("fetalclip", "biomedclip", "dinov2_vits14"):
        assert METHODS.get(name).protocols == ("linear",)
    assert run(real_subset_root, tmp_path, "--method", "fetalclip") == 2
    assert "pass --protocol linear" in one_line_error(capsys)
    assert run(real_subset_root, tmp_path, "--method", "fetalclip", "--protocol", "linear",
               "--backbone", "resnet18") == 2
    assert "drop --backbone" in one_line_error(capsys)
