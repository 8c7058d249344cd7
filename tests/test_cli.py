"""The command line: a real run end to end on real CSV rows, and one-line errors for bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fetalbench.cli import main


def run_cli(*args: str) -> int:
    return main(list(args))


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


@pytest.fixture(scope="module")
def finished_run(real_subset_root: Path, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("results")
    code = run_cli("run", "--method", "supervised_imagenet", "--task", "planes", "--dataset",
                   "fetal_planes_db", "--data-root", str(real_subset_root), "--fraction", "0.5",
                   "--profile", "tiny", "--out", str(out))
    assert code == 0
    (record,) = out.rglob("*.json")
    return out, record


def test_run_on_real_csv_rows_writes_a_full_record(finished_run) -> None:
    _, path = finished_run
    record = json.loads(path.read_text())
    assert record["status"] == "ok"
    assert record["dataset"]["name"] == "fetal_planes_db"
    assert record["dataset"]["synthetic"] is False
    assert record["spec"]["method"] == "supervised_imagenet"
    assert record["spec"]["profile"]["name"] == "tiny"
    assert path.name.endswith(f"{record['spec_hash']}.json")
    metrics = record["metrics"]
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert len(metrics["confusion_matrix"]) == 6
    assert sum(map(sum, metrics["confusion_matrix"])) == record["split"]["test"]
    assert set(metrics["sensitivity"]) == set(record["classes"])
    assert record["method_notes"]["weights"] == "offline-package"
    assert record["versions"]["torch"] and record["hardware"]["cpu_count"]
    assert record["split"]["labelled"] < record["split"]["train"]


def test_brain_task_also_runs_on_real_rows(real_subset_root: Path, tmp_path: Path) -> None:
    assert run_cli("run", "--method", "supervised_scratch", "--task", "brain", "--dataset",
                   "fetal_planes_db", "--data-root", str(real_subset_root), "--profile", "tiny",
                   "--out", str(tmp_path)) == 0
    (record,) = tmp_path.rglob("*.json")
    assert json.loads(record.read_text())["classes"] == [
        "Trans-thalamic", "Trans-cerebellum", "Trans-ventricular"]


def test_existing_record_is_reused_not_rewritten(finished_run, real_subset_root, capsys) -> None:
    out, _ = finished_run
    before = snapshot(out)
    assert run_cli("run", "--method", "supervised_imagenet", "--task", "planes", "--dataset",
                   "fetal_planes_db", "--data-root", str(real_subset_root), "--fraction", "0.5",
                   "--profile", "tiny", "--out", str(out)) == 0
    assert "record exists" in capsys.readouterr().out
    assert snapshot(out) == before


def broken_root(kind: str, real_subset_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / kind
    shutil.copytree(real_subset_root, root)
    csv = root / "FETAL_PLANES_DB_data.csv"
    if kind == "no_column":
        csv.write_text(csv.read_text().replace(";US_Machine;", ";Machine;", 1))
    elif kind == "corrupt_png":
        next((root / "Images").glob("*.png")).write_bytes(b"not a png at all")
    return root


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--method", "simclr_imagenett_x"], "unknown method"),
        (["--method", "supervised_imagenett"], "did you mean supervised_imagenet"),
        (["--task", "brians"], "did you mean brain"),
        (["--fraction", "0"], "outside (0, 1]"),
        (["--fraction", "1.5"], "outside (0, 1]"),
        (["--fraction", "ten"], "not a number"),
        (["--seed", "-1"], "negative"),
        (["--data-root", "MISSING"], "does not exist"),
        (["--data-root", "no_column"], "missing column(s) US_Machine"),
        (["--data-root", "corrupt_png"], "does not decode"),
        (["--dataset", "fetal_planes_db", "--data-root", "SAMPLE", "--task", "brain"],
         "only 'Trans-ventricular'"),
        (["--dataset", "imagenet"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_touches_nothing(
    args: list[str], expected: str, finished_run, real_subset_root, sample_root, tmp_path, capsys
) -> None:
    out, _ = finished_run
    before = snapshot(out)
    defaults = {"--method": "supervised_scratch", "--task": "planes", "--profile": "tiny",
                "--dataset": "fetal_planes_db", "--data-root": str(real_subset_root)}
    given = dict(zip(args[::2], args[1::2], strict=True))
    if given.get("--data-root") == "MISSING":
        given["--data-root"] = str(tmp_path / "missing")
    elif given.get("--data-root") == "SAMPLE":
        given["--data-root"] = str(sample_root)
    elif given.get("--data-root") in ("no_column", "corrupt_png"):
        given["--data-root"] = str(broken_root(given["--data-root"], real_subset_root, tmp_path))
    argv = ["run", *[x for key, value in {**defaults, **given}.items() for x in (key, value)],
            "--out", str(out)]
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(argv))
    assert exited.value.code == 2
    captured = capsys.readouterr()
    error_lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(error_lines) == 1, captured.err
    assert expected in error_lines[0]
    assert "Traceback" not in captured.err
    assert snapshot(out) == before


def test_console_script_lists_methods_and_tasks() -> None:
    exe = Path(sys.executable).with_name("fetalbench")
    listing = subprocess.run([str(exe), "methods"], capture_output=True, text=True, check=True)
    assert "supervised_imagenet" in listing.stdout and "supervised_scratch" in listing.stdout
    tasks = subprocess.run([str(exe), "tasks"], capture_output=True, text=True, check=True)
    assert "Trans-cerebellum" in tasks.stdout
    failing = subprocess.run([str(exe), "run", "--method", "nope", "--task", "brain"],
                             capture_output=True, text=True)
    assert failing.returncode == 2 and failing.stderr.count("\n") == 1
