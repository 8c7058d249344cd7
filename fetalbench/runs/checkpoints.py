"""Trained classifiers as safetensors files (no pickle), written atomically, one per run.

A run's checkpoint lives at ``<checkpoint_dir>/<dataset>/<task>/<method>/<record stem>.safetensors``
(the record's own relative path with another suffix) and carries the run's spec hash, so
``fetalbench explain`` can rebuild exactly the model a record measured. Loading reads tensors
only: a checkpoint cannot run code. The record keeps the file's sha256 (written and checked by
:mod:`fetalbench.storage.artifacts`), so a corrupt checkpoint is refused rather than loaded.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from fetalbench.errors import FetalbenchError
from fetalbench.methods.api import Classifier
from fetalbench.methods.backbones import create_backbone
from fetalbench.paths import CHECKPOINTS_DIR as CHECKPOINTS_DIR  # the cache's folder of them
from fetalbench.profiles import Profile
from fetalbench.runs.spec import RunSpec
from fetalbench.storage.artifacts import Refusal, check_data, write_hashed

SUFFIX = ".safetensors"


def checkpoint_path(spec: RunSpec, checkpoint_dir: Path) -> Path:
    """Where the classifier of ``spec`` is saved: the record's path under ``checkpoint_dir``."""
    return spec.record_path(checkpoint_dir).with_suffix(SUFFIX)


def save_classifier(classifier: Classifier, path: Path, spec_hash: str) -> str:
    """Write the state dict of ``classifier`` to ``path`` as safetensors, atomically.

    Tensors are copied to contiguous CPU memory (channels-last weights are not contiguous, which
    safetensors refuses); the run's spec hash goes into the file's metadata. Returns the sha256
    of the file's bytes, which the run's record keeps (``checkpoint_sha256``).
    """
    tensors = {
        name: tensor.detach().to("cpu").contiguous()
        for name, tensor in classifier.state_dict().items()
    }
    return write_hashed(path, save(tensors, metadata={"spec_hash": spec_hash}))


def load_classifier(record: dict, checkpoint: Path) -> Classifier:
    """The classifier of ``record`` rebuilt from the safetensors file ``checkpoint``.

    The architecture comes from the record's profile (backbone, number of classes); weights are
    loaded strictly, so a checkpoint of another architecture is an error, not a partial load, and
    a checkpoint of another run (its spec hash differs from the record's) is refused. When the
    record holds the checkpoint's sha256 (records before it do not), a file whose bytes differ
    (corrupt, truncated or replaced) is refused before it is parsed.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FetalbenchError(
            f"checkpoint {checkpoint} is missing; rerun the run with checkpoints on "
            f"(fetalbench run ... --force, without --no-checkpoint)"
        )
    expected = record.get("checkpoint_sha256")
    refused = None if expected is None else check_data(checkpoint, expected)
    if refused is not None:
        problem = (f"cannot be read ({refused.detail})" if refused.reason is Refusal.UNREADABLE
                   else "is corrupt (its sha256 differs from the one in the run's record)")
        raise FetalbenchError(
            f"checkpoint {checkpoint} {problem}; rerun the run with --force to write a new one"
        )
    profile = Profile(**record["spec"]["profile"])
    classifier = Classifier(create_backbone(profile.backbone, "random"), len(record["classes"]))
    try:
        with safe_open(checkpoint, framework="pt") as handle:
            saved_hash = (handle.metadata() or {}).get("spec_hash")
            if saved_hash != record["spec_hash"]:
                raise FetalbenchError(
                    f"checkpoint {checkpoint} belongs to run {saved_hash}, not to this record's "
                    f"run {record['spec_hash']}; rerun the run with --force to write its own"
                )
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        classifier.load_state_dict(tensors)
    except (SafetensorError, RuntimeError, OSError) as error:
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise FetalbenchError(
            f"checkpoint {checkpoint} is corrupt or does not fit the record's model "
            f"({type(error).__name__}: {first_line[:160]}); rerun the run with --force to write "
            "a new one"
        ) from None
    return classifier.eval()
