"""Faults, bad input and untrusted files: nothing written is lost, nothing hostile gets in.

docs/robustness.md lists every fault and bad input tried here (and in test_grid, test_download,
test_catalog, test_cli, test_properties), what happens, and the test that proves it.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import pickle
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, write_suite
from fetalbench.cli import main
from fetalbench.data import fetal_planes_db, image_cache
from fetalbench.data.fetal_planes_db import fingerprint, load_catalog, read_metadata
from fetalbench.data.sources import open_source
from fetalbench.errors import FetalbenchError
from fetalbench.methods import pretraining
from fetalbench.methods.api import Classifier, MethodContext, TaskData
from fetalbench.methods.augment import STRONG
from fetalbench.methods.backbones import create_backbone
from fetalbench.methods.pretraining import (
    FINE_TUNING_ONLY,
    checkpoint_paths,
    load_cached_backbone,
    pretrain_backbone,
    pretraining_key,
    save_backbone,
)
from fetalbench.methods.simclr import SimCLR, SimCLRSettings
from fetalbench.orchestrate.grid import run_grid
from fetalbench.orchestrate.suites import load_suite
from fetalbench.runs.checkpoints import load_classifier, save_classifier
from fetalbench.runs.learning import SELF_SUPERVISED, checked
from fetalbench.runs.records import read_record_status
from fetalbench.runs.spec import RunSpec, resolve_spec
from fetalbench.runs.validation import validate_paths
from fetalbench.storage import locks
from fetalbench.storage.atomic import write_atomic

TESTS = Path(__file__).resolve().parent
SOURCE = TESTS.parent / "fetalbench"
# The console script, with the test suite's ``tiny`` profile registered first.
CLI = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); from conftest import TINY; "
       "from fetalbench.profiles import PROFILES; PROFILES.setdefault('tiny', TINY); "
       "from fetalbench.cli import main; sys.exit(main(sys.argv[1:]))")


def fetalbench(*args: object) -> list[str]:
    return [sys.executable, "-c", CLI, *map(str, args)]


def environment(cache: Path) -> dict[str, str]:
    return {**os.environ, "FETALBENCH_CACHE": str(cache), "FETALBENCH_OFFLINE": "1",
            "OMP_NUM_THREADS": "1"}


def grid_args(suite_file: Path, root: Path, out: Path) -> list[str]:
    return fetalbench("grid", "--suite", suite_file, "--data-root", root, "--out", out)


def outcomes(out: Path) -> dict[str, dict]:
    """What each record says about its run's result (not where or when it ran)."""
    found = {}
    for path in out.rglob("*.json"):
        record = json.loads(path.read_text())
        assert record["spec_hash"] not in found
        notes = record.get("method_notes", {})
        found[record["spec_hash"]] = {
            "status": record["status"],
            "metrics": record.get("metrics"),
            "split": record.get("split"),
            "train_loss": notes.get("final_train_loss"),
            "best_step": notes.get("best_step"),
            "pretraining_loss": (notes.get("pretraining") or {}).get("final_loss"),
        }
    return found


def leftovers(out: Path) -> list[Path]:
    """Files in a results folder other than whole records (temporary files, lock files)."""
    return [path for path in out.rglob("*") if path.is_file() and path.suffix != ".json"]


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_suite(tmp_path_factory.mktemp("suite") / "robustness.toml", profile="tiny")


@pytest.fixture(scope="module")
def reference(suite_file: Path, real_subset_root: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], float]:
    """The records of the suite run once, uninterrupted and alone, and how long that took."""
    folder = tmp_path_factory.mktemp("reference")
    started = time.monotonic()
    subprocess.run(grid_args(suite_file, real_subset_root, folder / "out"),
                   env=environment(folder / "cache"), check=True, capture_output=True)
    expected = outcomes(folder / "out")
    assert len(expected) == 4 and {o["status"] for o in expected.values()} == {"ok"}
    return expected, time.monotonic() - started


# --- crash safety -----------------------------------------------------------------------------

def test_grid_killed_at_random_moments_ends_with_the_records_of_an_uninterrupted_one(
    reference, suite_file: Path, real_subset_root: Path, tmp_path: Path
) -> None:
    expected, seconds = reference
    schedule = random.Random(8)
    out, cache = tmp_path / "out", tmp_path / "cache"
    interrupted = []
    for _ in range(4):
        process = subprocess.Popen(grid_args(suite_file, real_subset_root, out),
                                   env=environment(cache), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(schedule.uniform(0.3, 1.0) * seconds)
        interrupted.append(process.poll() is None)
        process.send_signal(signal.SIGKILL)
        process.wait()
        print(f"killed: {interrupted[-1]}, records: {len(list(out.rglob('*.json')))}")
        if out.is_dir():  # whatever the kill left, every record is whole and passes validation
            # but for the official-dataset checks, which no subset of the real CSV passes
            assert all({finding.check for finding in report.findings}
                       <= {"official_csv", "official_split"}
                       for report in validate_paths([out]).reports)
            assert all(read_record_status(path) == "ok" for path in out.rglob("*.json"))
    assert interrupted[0]  # the first kill, at most the reference's duration in, hit a live grid
    subprocess.run(grid_args(suite_file, real_subset_root, out), env=environment(cache),
                   check=True, capture_output=True)
    assert outcomes(out) == expected
    assert leftovers(out) == []


def test_writer_that_dies_half_way_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    target.write_text('{"status": "ok"}')

    def half_then_fail(stream) -> None:
        stream.write(b'{"status": "fa')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_text() == '{"status": "ok"}'
    assert list(tmp_path.iterdir()) == [target]
    killed = subprocess.run(
        [sys.executable, "-c",
         "import os, signal, sys; from fetalbench.storage.atomic import write_atomic; "
         "write_atomic(sys.argv[1], lambda s: (s.write(b'{\"half'), s.flush(), "
         "os.kill(os.getpid(), signal.SIGKILL)))", str(target)])
    assert killed.returncode == -signal.SIGKILL
    assert target.read_text() == '{"status": "ok"}'
    (partial,) = [path for path in tmp_path.iterdir() if path != target]
    assert partial.name.startswith(".") and partial.suffix == ".tmp"  # no reader looks at it


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "index without checksum"])
def test_corrupt_image_cache_is_rebuilt(damage: str, real_subset_root: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog(real_subset_root).head(12)
    key = fingerprint(real_subset_root, catalog)
    original = np.array(image_cache.load_images(catalog, key, 16, tmp_path, workers=1))
    array_path, index_path = image_cache.cache_paths(tmp_path, key, 16)
    if damage == "flip a byte":
        data = bytearray(array_path.read_bytes())
        data[-5] ^= 0xFF
        array_path.write_bytes(bytes(data))
    elif damage == "truncate":
        array_path.write_bytes(array_path.read_bytes()[:-100])
    else:
        index = json.loads(index_path.read_text())
        del index["sha256"]
        index_path.write_text(json.dumps(index))
    decoded = []
    real_decode = image_cache._decode_all
    monkeypatch.setattr(image_cache, "_decode_all",
                        lambda *args: decoded.append(1) or real_decode(*args))
    assert np.array_equal(image_cache.load_images(catalog, key, 16, tmp_path), original)
    assert decoded == [1]
    assert np.array_equal(image_cache.load_images(catalog, key, 16, tmp_path), original)
    assert decoded == [1]  # the rebuilt cache passes its checksum


def tiny_record(classifier_path: Path, digest: str | None) -> dict:
    return {"spec": {"profile": dataclasses.asdict(TINY)}, "spec_hash": "0123456789abcdef",
            "classes": ["a", "b", "c"], "checkpoint": str(classifier_path),
            "checkpoint_sha256": digest}


@pytest.mark.parametrize("damage", ["flip a byte", "truncate"])
def test_corrupt_run_checkpoint_is_reported_with_the_fix(damage: str, tmp_path: Path) -> None:
    path = tmp_path / "run.safetensors"
    classifier = Classifier(create_backbone(TINY.backbone, "random"), 3)
    record = tiny_record(path, save_classifier(classifier, path, "0123456789abcdef"))
    load_classifier(record, path)
    data = path.read_bytes()
    if damage == "flip a byte":
        path.write_bytes(data[:-7] + bytes([data[-7] ^ 0xFF]) + data[-6:])
    else:
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FetalbenchError) as refused:
        load_classifier(record, path)
    message = str(refused.value)
    assert "is corrupt" in message and "--force" in message and "\n" not in message


# --- untrusted checkpoints ----------------------------------------------------------------------

class Payload:
    """Unpickling this creates ``marker``: stands for any code a hostile pickle would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickled_checkpoint(path: Path, marker: Path) -> bytes:
    """A torch (pickle) checkpoint whose loading runs :class:`Payload`."""
    torch.save({"state_dict": Payload(marker), "global_step": 1}, path)
    return path.read_bytes()


def test_the_payload_is_live_and_weights_only_loading_refuses_it(tmp_path: Path) -> None:
    live = tmp_path / "live-marker"
    path = tmp_path / "evil.ckpt"
    pickled_checkpoint(path, live)
    torch.load(path, weights_only=False)  # what a careless loader would do
    assert live.exists()
    marker = tmp_path / "marker"
    pickled_checkpoint(path, marker)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)
    assert not marker.exists()


def test_every_torch_load_in_fetalbench_is_weights_only_and_no_pickle_is_read() -> None:
    calls = []
    for file in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if name == "torch.load":
                calls.append(file.name)
                assert keywords.get("weights_only") == "True", f"{file}: {ast.unparse(node)}"
            assert not name.startswith(("pickle.", "dill.", "joblib.load")), f"{file}: {name}"
            if name == "np.load":
                assert keywords.get("allow_pickle", "False") == "False", f"{file}"
    assert calls  # the scan found the loaders it polices


@pytest.mark.parametrize("record_has_checksum", [True, False])
def test_pickled_run_checkpoint_is_refused_without_running_it(
    record_has_checksum: bool, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "run.safetensors"
    data = pickled_checkpoint(path, marker)
    record = tiny_record(path, hashlib.sha256(data).hexdigest() if record_has_checksum else None)
    with pytest.raises(FetalbenchError, match="--force"):
        load_classifier(record, path)
    assert not marker.exists()


def tiny_context(cache_root: Path, log: list[str]) -> MethodContext:
    images = torch.randint(0, 255, (16, 1, TINY.resolution, TINY.resolution), dtype=torch.uint8)
    labels = torch.arange(16) % 2
    data = TaskData(classes=("a", "b"), labelled_images=images, labelled_labels=labels,
                    validation_images=images, validation_labels=labels,
                    unlabelled_images=images)
    spec = RunSpec(method="simclr", task="planes", dataset="test", dataset_fingerprint="f" * 64,
                   fraction=1.0, seed=0, protocol="finetune", pool="task", profile=TINY)
    return MethodContext(spec, data, cache_root, log=log.append)


def stage_files(context: MethodContext) -> tuple[dict, Path, Path]:
    key = pretraining_key(context, "simclr", "random", SimCLRSettings(), SimCLR.version)
    return key, *checkpoint_paths(context.cache_root, key)


def pretrain(context: MethodContext) -> dict:
    return pretrain_backbone(context, "simclr", SimCLR, SimCLRSettings(), "random")[1]


def test_changing_the_views_or_an_objectives_version_separates_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = tiny_context(tmp_path, [])
    key, weights, _ = stage_files(context)
    assert pretraining_key(context, "simclr", "random", SimCLRSettings(), SimCLR.version + 1) != key
    monkeypatch.setattr(pretraining, "PRETRAINING_AUGMENT",
                        dataclasses.replace(STRONG, noise_std=STRONG.noise_std + 0.1))
    changed = pretraining_key(context, "simclr", "random", SimCLRSettings(), SimCLR.version)
    assert changed != key
    assert checkpoint_paths(tmp_path, changed)[0] != weights


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(TINY)])
def test_a_stage_is_shared_across_fine_tuning_settings_only(field: str, tmp_path: Path) -> None:
    """Changing a profile field gives another stage unless pre-training never reads it."""
    context = tiny_context(tmp_path, [])
    value = getattr(TINY, field)
    other = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v / 2,
             str: lambda v: v + "-other"}[type(value)](value)
    changed = dataclasses.replace(context, spec=dataclasses.replace(
        context.spec, profile=dataclasses.replace(TINY, **{field: other})))
    shared = stage_files(context)[1] == stage_files(changed)[1]
    assert shared == (field in FINE_TUNING_ONLY)


@pytest.mark.parametrize("damage", ["flip a byte", "sidecar without checksum", "pickle payload"])
def test_corrupt_or_hostile_pretraining_checkpoint_is_retrained(damage: str, tmp_path: Path
                                                                 ) -> None:
    log: list[str] = []
    context = tiny_context(tmp_path, log)
    assert pretrain(context)["reused"] is False
    assert pretrain(context)["reused"] is True
    key, weights, sidecar = stage_files(context)
    trusted = weights.read_bytes()
    marker = tmp_path / "marker"
    if damage == "flip a byte":
        weights.write_bytes(trusted[:-9] + bytes([trusted[-9] ^ 0x01]) + trusted[-8:])
    elif damage == "sidecar without checksum":
        info = json.loads(sidecar.read_text())
        del info["sha256"]
        sidecar.write_text(json.dumps(info))
    else:  # a payload with a sidecar that vouches for it: the checksum passes, parsing refuses
        evil = pickled_checkpoint(weights, marker)
        info = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**info, "sha256": hashlib.sha256(evil).hexdigest()}))
    log.clear()
    assert load_cached_backbone(create_backbone(TINY.backbone, "random"), tmp_path, key,
                                log.append) is None
    expected = "does not load" if damage == "pickle payload" else "does not match the sha256"
    assert any(expected in line and "training the stage again" in line for line in log), log
    assert pretrain(context)["reused"] is False
    assert weights.read_bytes() == trusted  # retrained to the same weights (same seed)
    assert pretrain(context)["reused"] is True
    assert not marker.exists()


# --- concurrency --------------------------------------------------------------------------------

def test_two_grids_on_one_folder_execute_each_run_exactly_once(
    reference, suite_file: Path, real_subset_root: Path, tmp_path: Path
) -> None:
    expected, _ = reference
    out, cache = tmp_path / "out", tmp_path / "cache"
    processes = [subprocess.Popen(grid_args(suite_file, real_subset_root, out),
                                  env=environment(cache), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [process.communicate(timeout=900)[0] for process in processes]  # grid lines: stdout
    assert [process.returncode for process in processes] == [0, 0], logs
    executed = [(run, process.pid) for log, process in zip(logs, processes, strict=True)
                for run in re.findall(r"\(run ([0-9a-f]{16})\)", log)]
    assert sorted(run for run, _ in executed) == sorted(expected)  # each run once, by someone
    trained_stages = 0
    for path in out.rglob("*.json"):
        record = json.loads(path.read_text())
        assert (record["spec_hash"], record["executor"]["pid"]) in executed
        pretraining = record["method_notes"].get("pretraining")
        trained_stages += pretraining is not None and not pretraining["reused"]
    assert trained_stages == 1  # the stage lock: one simclr stage, trained by one grid
    assert outcomes(out) == expected
    assert leftovers(out) == []


def dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    return int(finished.stdout)


def test_grid_skips_a_run_held_by_a_live_process_and_takes_over_a_dead_ones(
    real_subset_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    suite_file = write_suite(tmp_path / "s.toml", profile="tiny", methods=["supervised_scratch"])
    suite = load_suite(str(suite_file))
    out, cache = tmp_path / "out", tmp_path / "cache"
    source = open_source(suite.dataset, real_subset_root, cache)
    live, dead = (resolve_spec(r, source).record_path(out) for r in suite.requests(
        real_subset_root))
    corpse = dead_pid()
    locks.lock_path(dead).parent.mkdir(parents=True)
    locks.lock_path(dead).write_text(json.dumps({"pid": corpse, "host": socket.gethostname(),
                                                 "since": "2024-01-01T00:00:00+00:00"}))
    with locks.locked(locks.lock_path(live)):
        summary = run_grid(suite, real_subset_root, out, cache)
        assert (summary.succeeded, summary.running_elsewhere, summary.failed) == (1, 1, 0)
        assert read_record_status(dead) == "ok" and not live.exists()
        assert not locks.lock_path(dead).exists()
        printed = capsys.readouterr().out
        assert f"running elsewhere (pid {os.getpid()} on host" in printed
        assert f"taking over the lock of pid {corpse}" in printed
        request = suite.requests(real_subset_root)[0]
        code = main(["run", "--method", request.method, "--task", request.task, "--dataset",
                     request.dataset, "--data-root", str(real_subset_root), "--fraction",
                     str(request.fraction), "--profile", "tiny", "--out", str(out)])
        error = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in error
        assert f"is held by pid {os.getpid()}" in error and "wait for it" in error
    assert not live.exists()  # nobody ran it while it was held


def test_a_lock_dies_with_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "run.json.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from fetalbench.storage.locks import acquire; "
         "acquire(sys.argv[1]); print('held', flush=True); time.sleep(600)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.LockedElsewhere) as busy:
            locks.acquire(path)
        assert busy.value.holder["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with locks.locked(path) as lock:
        assert lock.took_over["pid"] == holder.pid
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_second_pretraining_of_a_stage_waits_for_the_first_and_reuses_it(tmp_path: Path) -> None:
    log: list[str] = []
    context = tiny_context(tmp_path, log)
    key, weights, _ = stage_files(context)
    first = create_backbone(TINY.backbone, "random")
    with torch.no_grad():
        next(iter(first.parameters())).fill_(0.125)
    result: list[dict] = []
    with locks.locked(locks.lock_path(weights)):  # the "first process", mid-training
        waiter = threading.Thread(target=lambda: result.append(pretrain(context)))
        waiter.start()
        deadline = time.monotonic() + 60
        while not any("waiting for" in line for line in log) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(f"waiting for pid {os.getpid()}" in line for line in log), log
        assert waiter.is_alive()
        check = checked(name="pre-training simclr", kind=SELF_SUPERVISED, steps=2, steps_run=2,
                        loss_curve=(0.7, 0.5), final_loss=0.5, probe_start=0.5, probe_end=0.75)
        save_backbone(first, tmp_path, key, {"seconds": 1.0,
                                             "result": {"final_loss": 0.5, "steps": 2},
                                             "check": check.as_record()})
    waiter.join(60)
    assert result and result[0]["reused"] is True and result[0]["final_loss"] == 0.5
    assert not any(line.startswith("pre-training simclr") for line in log)
    assert context.checks == [check]  # the reused stage's learning check goes into the record


# --- hostile CSV ---------------------------------------------------------------------------------

def test_oversized_csv_is_refused_before_it_is_parsed(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / fetal_planes_db.CSV_NAME
    path.write_text(";".join(fetal_planes_db.COLUMNS) + "\n" + "x;1;Other;Other;a;b;1\n" * 50)
    monkeypatch.setattr(fetal_planes_db, "MAX_CSV_BYTES", 1024)
    with pytest.raises(FetalbenchError, match=r"bytes, over the 1024 a metadata CSV can be"):
        read_metadata(path)


# --- bad input on the command line ---------------------------------------------------------------

def snapshot(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["grid", "--suite", "smoke", "--out", "FILE"], "is a file, not a folder"),
        (["grid", "--suite", "smoke", "--out", "FILE/sub"], "cannot be made under it"),
        (["grid", "--suite", "smoke", "--out", "/proc/1/results"], "is not writable"),
        (["grid", "--suite", "MISSING.toml"], "unknown suite"),
        (["grid", "--suite", "smoke", "--data-root", "FILE"], "is a file, not a folder"),
        (["run", "--method", "simclr", "--task", "brain", "--out", "FILE"],
         "is a file, not a folder"),
        (["run", "--method", "simclr", "--task", "brain", "--checkpoint-dir", "FILE"],
         "is a file, not a folder"),
        (["leaderboard", "--results", "MISSING", "--output", "NEW"], "does not exist"),
        (["leaderboard", "--results", "FILE"], "is a file, not a folder"),
        (["leaderboard", "--output", "DIR"], "is a folder; pass the path of a file"),
        (["explain", "--record", "MISSING.json"], "cannot read run record"),
        (["explain", "--record", "FILE"], "cannot read run record"),
        (["explain", "--record", "FILE", "--per-class", "0"], "must be a whole number >= 1"),
        (["explain", "--record", "FILE", "--out", "FILE"], "is a file, not a folder"),
        (["bench", "--steps", "0"], "must be a whole number >= 1"),
        (["bench", "--steps", "ten"], "not a whole number"),
        (["bench", "--json", "DIR"], "is a folder"),
        (["calibrate", "--resolution", "0"], "must be a whole number >= 1"),
        (["calibrate", "--resolution", "8"], "too small"),
        (["calibrate", "--seed", "-1"], "negative"),
        (["data", "verify", "--root", "MISSING"], "does not exist"),
        (["data", "verify", "--root", "FILE"], "is a file, not a folder"),
        (["data", "download", "--root", "FILE"], "is a file, not a folder"),
    ],
)
def test_bad_command_line_input_is_one_line_and_touches_nothing(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "FILE").write_text("precious")
    (existing / "DIR").mkdir()
    (existing / "DIR" / "inside").write_text("also precious")
    before = snapshot(existing)
    names = {"FILE": existing / "FILE", "DIR": existing / "DIR",
             "MISSING": tmp_path / "missing", "MISSING.toml": tmp_path / "missing.toml",
             "MISSING.json": tmp_path / "missing.json", "NEW": tmp_path / "new.md"}
    argv = [str(names[a]) if a in names else a.replace("FILE", str(existing / "FILE"))
            for a in args]
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(argv))
    assert exited.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(error_lines) == 1 and expected in error_lines[0], error_lines
    assert snapshot(existing) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]

