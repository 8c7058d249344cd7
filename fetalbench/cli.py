"""The ``fetalbench`` command line.

Every user-fixable problem ends as one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from fetalbench.checks import check_count, check_fraction, check_patients, check_seed
from fetalbench.errors import FetalbenchError
from fetalbench.paths import cache_dir

T = TypeVar("T")

EXIT_USER_ERROR = 2
MIN_RESOLUTION = 16
QUIET_HELP = "print only the result lines, no progress"
THREADS_HELP = ("intra-op CPU threads of each run (default 1 without a GPU: on a CPU the numbers "
                "depend on it, and the record keeps it)")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the problem and the way out."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _checked(parse: Callable[[str], T], check: Callable[[T], T], kind: str
             ) -> Callable[[str], T]:
    """An argparse type: ``parse`` the text, then apply the library's own ``check`` to it, so
    the command line and the Python API refuse the same values with the same words."""

    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        try:
            return check(value)
        except FetalbenchError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


_fraction = _checked(float, check_fraction, "a number in (0, 1]")
_seed = _checked(int, check_seed, "a whole number")
_positive_int = _checked(int, lambda value: check_count(value, "the value"), "a whole number")
_patients = _checked(int, check_patients, "a whole number")


def _resolution(text: str) -> int:
    value = _positive_int(text)
    if value < MIN_RESOLUTION:
        raise argparse.ArgumentTypeError(
            f"{value} px is too small for the backbone; use at least {MIN_RESOLUTION}, e.g. 128"
        )
    return value


def _writable_ancestor(path: Path, text: str) -> None:
    """Refuse ``path`` unless the nearest existing folder above it can be written to."""
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(
            f"{existing} is a file, so {text} cannot be made under it; pass another path"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"{existing} is not writable; pass a folder you can write to"
        )


def _output_folder(text: str) -> Path:
    """A folder to write into: a folder, or a path where one can be made (checked, not made)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is a file, not a folder; pass a folder (it is made if missing)"
        )
    _writable_ancestor(path, text)
    return path


def _output_file(text: str) -> Path:
    """A file to write: not a folder, in a folder that exists or can be made."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; pass the path of a file")
    _writable_ancestor(path.parent, text)
    return path


def _input_folder(text: str) -> Path:
    """A folder to read; a missing one is left to the command, which says how to make it."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder; pass a folder")
    return path


def _fraction_of(args: argparse.Namespace) -> float | None:
    """The label fraction a command asks for: ``--fraction``, else 1 unless ``--patients``."""
    if args.fraction is not None and args.patients is not None:
        raise FetalbenchError("give a label budget as --fraction or as --patients, not both")
    if args.fraction is None and args.patients is None:
        return 1.0
    return args.fraction


def _cmd_run(args: argparse.Namespace) -> int:
    from fetalbench.data.splits import budget_text
    from fetalbench.runs.execute import execute_run
    from fetalbench.runs.spec import RunRequest

    request = RunRequest(
        method=args.method,
        task=args.task,
        dataset=args.dataset,
        data_root=args.data_root,
        fraction=_fraction_of(args),
        seed=args.seed,
        protocol=args.protocol,
        pool=args.pool,
        profile=args.profile,
        validation=args.validation,
        patients_per_class=args.patients,
        backbone=args.backbone,
    )
    from fetalbench.runs.checkpoints import CHECKPOINTS_DIR

    checkpoint_dir = None if args.no_checkpoint else (
        args.checkpoint_dir or cache_dir() / CHECKPOINTS_DIR
    )
    from fetalbench.methods.engine import progress_bars_shown
    from fetalbench.methods.execution import Execution

    execution = Execution(args.devices, args.num_nodes,
                          **({} if args.threads is None else {"threads": args.threads}))
    with progress_bars_shown(not args.quiet):
        outcome = execute_run(request, args.out, cache_dir(), force=args.force,
                              checkpoint_dir=checkpoint_dir, execution=execution,
                              log=(lambda _: None) if args.quiet else print)
    if outcome.record is not None:
        metrics = outcome.record["metrics"]
        synthetic = " (synthetic phantom)" if outcome.record["dataset"]["synthetic"] else ""
        budget = budget_text(request.fraction, request.patients_per_class)
        knn = metrics.get("knn")
        beside = "" if knn is None else (f" (k-NN beside it: macro F1 {knn['macro_f1']:.3f}, "
                                         f"accuracy {knn['accuracy']:.3f})")
        print(
            f"{args.method} / {args.task}{synthetic} / {args.protocol} / {budget} / seed "
            f"{args.seed}: test macro F1 {metrics['macro_f1']:.3f}, accuracy "
            f"{metrics['accuracy']:.3f}, balanced accuracy {metrics['balanced_accuracy']:.3f}"
            f"{beside} in {outcome.record['timings']['total_s']:.1f}s on {execution.threads} "
            f"CPU thread(s)"
        )
        print(learning_summary(outcome.record["learning"]))
    print(f"record: {outcome.record_path}")
    return 0


def learning_summary(section: dict) -> str:
    """One line per checked stage of a record's ``learning`` section, after the run's verdict."""
    lines = [f"learning check: {section['verdict']}"]
    for stage in section["stages"]:
        chance = ("" if stage["chance_loss"] is None
                  else f" (chance {stage['chance_loss']:.3f})")
        probe = ("" if stage["probe_start"] is None
                 else f", k-NN probe {stage['probe_start']:.3f} -> {stage['probe_end']:.3f}")
        best = "" if stage["best_step"] is None else f", best step {stage['best_step']}"
        reasons = "".join(f"; {reason}" for reason in stage["reasons"])
        lines.append(f"  {stage['name']}: {stage['verdict']}, final loss "
                     f"{stage['final_loss']:.3f}{chance}{probe}, {stage['steps_run']} of "
                     f"{stage['steps']} steps{best}{reasons}")
    return "\n".join(lines)


def _cmd_explain(args: argparse.Namespace) -> int:
    from fetalbench.explain.explain import explain_run, figure_folder_name
    from fetalbench.runs.records import find_record, read_ok_record

    if args.record is not None and (args.method or args.task):
        raise FetalbenchError("give either --record PATH or --method/--task, not both")
    if args.record is None and not (args.method and args.task):
        raise FetalbenchError("name the run: --record PATH, or --method M --task T "
                              "[--fraction F] [--seed S] [--protocol P] [--results DIR]")
    path = args.record or find_record(args.results, args.method, args.task, args.fraction,
                                      args.seed, args.protocol)
    record = read_ok_record(path)
    out = args.out or args.results / "figures" / "explain" / figure_folder_name(record)
    outcome = explain_run(record, out, cache_dir(), args.per_class, args.data_root)
    embedding, localisation = outcome.explanation.embedding, outcome.explanation.localisation

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print(f"record: {path}")
    print(f"test embeddings: silhouette {number(embedding.silhouette)}, 5-NN accuracy "
          f"{number(embedding.knn_accuracy)}")
    if localisation is None:
        print("localisation: not computed (the dataset has no Masks/ folder)")
    else:
        print(f"localisation: Grad-CAM pointing game {number(localisation.pointing_game)} "
              f"over {localisation.n} test images")
    print(f"gradcam: {outcome.gradcam_path}")
    print(f"tsne: {outcome.tsne_path}")
    return 0


def _cmd_grid(args: argparse.Namespace) -> int:
    from fetalbench.orchestrate.grid import run_grid, worker_threads
    from fetalbench.orchestrate.suites import load_suite

    if args.launcher == "slurm":
        if args.workers != 1:
            raise FetalbenchError("--workers applies to --launcher local; on Slurm each job is "
                                  "one worker, so drop --workers")
        return _submit_grid_to_slurm(args)
    given = [f"--{name.replace('_', '-')}" for name in (*SLURM_OPTIONS, "wait")
             if getattr(args, name) not in (None, False)]
    if given:
        raise FetalbenchError(f"{' '.join(given)} apply only to --launcher slurm; add "
                              "--launcher slurm or drop them")
    from fetalbench.methods.execution import Execution

    suite = load_suite(args.suite)
    execution = Execution(threads=worker_threads(args.workers, args.threads))
    summary = run_grid(suite, args.data_root, args.out, cache_dir(), execution, args.quiet,
                       args.workers)
    print(
        f"grid {suite.name}: {summary.total} runs, {summary.skipped} already done, "
        f"{summary.succeeded} ran, {summary.failed} failed, {summary.running_elsewhere} "
        f"running elsewhere, {summary.pretraining_runs} "
        f"pre-training stage(s) trained and {summary.pretraining_reused} reused, "
        f"in {summary.seconds:.0f}s"
    )
    return 1 if summary.failed else 0


SLURM_OPTIONS = ("partition", "gpus_per_node", "time", "mem", "cpus_per_task")


def _submit_grid_to_slurm(args: argparse.Namespace) -> int:
    """``grid --launcher slurm``: submit one job per pre-training group; with --wait, block."""
    from fetalbench.orchestrate.slurm import SlurmOptions, submit_grid, wait_for_jobs
    from fetalbench.orchestrate.suites import load_suite

    suite = load_suite(args.suite)
    options = SlurmOptions(**{name: getattr(args, name) for name in SLURM_OPTIONS})
    submission = submit_grid(suite, args.data_root, args.out, cache_dir(), options,
                             args.threads)
    runs = sum(len(group) for group in submission.groups)
    print(f"grid {suite.name} on Slurm: {submission.total} runs, {submission.skipped} already "
          f"done, {runs} to run in {len(submission.jobs)} job(s)")
    if not submission.jobs:
        return 0
    print(f"job ids: {' '.join(job.job_id for job in submission.jobs)}")
    print(f"job logs: {submission.folder}")
    if not args.wait:
        return 0
    summary = wait_for_jobs(submission)
    for failure in summary.failed_jobs:
        print(f"job {failure}", file=sys.stderr)
    print(f"grid {suite.name} on Slurm: {summary.succeeded} ran, {summary.failed} failed, "
          f"{summary.done_already} done meanwhile, {summary.running_elsewhere} running "
          f"elsewhere, waited {summary.seconds:.0f}s")
    return 1 if summary.failed else 0


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from fetalbench.report.leaderboard import check_leaderboard, write_leaderboard

    if args.check:
        if not check_leaderboard(args.results, args.output):
            print(f"fetalbench: error: {args.output} is stale: it differs from what the records "
                  f"in {args.results}/ produce; run `fetalbench leaderboard` and commit it",
                  file=sys.stderr)
            return 1
        print(f"{args.output} is up to date with {args.results}/")
        return 0
    write_leaderboard(args.results, args.output, args.results / "figures")
    print(f"wrote {args.output} and figures under {args.results / 'figures'}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    """``fetalbench validate``: one line per failing record, then the summary; 1 if any fails."""
    from fetalbench.runs.validation import validate_paths

    validation = validate_paths(args.paths)
    for report in validation.failed:
        print(report.line())
    print(validation.summary())
    return 1 if validation.failed else 0


def _cmd_records_migrate(args: argparse.Namespace) -> int:
    """``fetalbench records migrate``: bring old records up to this version's format."""
    from fetalbench.runs.migration import migrate_records

    migration = migrate_records(args.paths)
    print(f"migrated {len(migration.changed)} of {migration.examined} records to this version's "
          f"format (current schema; checkpoints named in the cache, no dataset folder or host); "
          f"{migration.examined - len(migration.changed)} were already current")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from fetalbench.methods.engine import progress_bars_shown
    from fetalbench.runs.records import records_under
    from fetalbench.runs.reproduce import (
        format_reproduction,
        reproduce_record,
        sample_cheap_records,
    )

    if args.sample:
        records = sample_cheap_records(args.records, args.sample, args.sample_seed,
                                       args.max_seconds)
        print(f"sample of {len(records)} record(s) rerun in at most {args.max_seconds:g} s "
              f"(seed {args.sample_seed}): {', '.join(map(str, records))}")
    else:
        records = records_under(args.records)
    failed = 0
    for path in records:
        with progress_bars_shown(args.verbose):
            reproduction = reproduce_record(path, cache_dir(), args.data_root,
                                            log=print if args.verbose else lambda _: None)
        print(format_reproduction(reproduction, args.tolerance))
        failed += bool(reproduction.failing(args.tolerance))
    print(f"reproduced {len(records)} record(s): {len(records) - failed} pass, {failed} fail")
    return 1 if failed else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from fetalbench.devtools.bench import format_measurements, run_benchmarks, save_measurements
    from fetalbench.profiles import get_profile

    profile = get_profile(args.profile)
    rows = run_benchmarks(profile, cache_dir(), steps=args.steps, repeats=args.repeats)
    print(format_measurements(rows, profile))
    if args.json:
        save_measurements(rows, profile, args.json)
    return 0


def _cmd_methods(_: argparse.Namespace) -> int:
    from fetalbench.methods import METHODS

    for name in METHODS:
        description = METHODS.declared_description(name) or METHODS.get(name).description
        print(f"{name:24s} {description}")
    return 0


def _cmd_tasks(_: argparse.Namespace) -> int:
    from fetalbench.data.tasks import TASKS

    for name in TASKS:
        task = TASKS.get(name)
        print(f"{name:10s} {task.label_column}: {', '.join(task.classes)} ({task.description})")
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from fetalbench.data.download import download_dataset

    download_dataset(args.root)
    return 0


def _cmd_data_verify(args: argparse.Namespace) -> int:
    from fetalbench.data.verify import format_report, verify_dataset

    report = verify_dataset(args.root)
    print(format_report(report))
    if report.undecodable:
        raise FetalbenchError(
            f"{len(report.undecodable)} of {report.images} images under {args.root} do not "
            f"decode (listed above); replace them with the dataset's originals, e.g. "
            f"`fetalbench data download --root DIR` into an empty folder"
        )
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from fetalbench.data.phantom.calibration import (
        calibration_report,
        measure_calibration,
        record_calibration,
    )

    command = f"fetalbench calibrate --profile {args.profile}"
    if args.resolution is not None:
        command += f" --resolution {args.resolution}"
    if args.seed:
        command += f" --seed {args.seed}"
    fresh = measure_calibration(cache_dir(), args.profile, args.resolution, args.seed, command)
    print(calibration_report(fresh))
    if args.record:
        print(f"recorded in {record_calibration(fresh)}")
    return 0


def _budget_options(parser: argparse.ArgumentParser) -> None:
    """``--fraction`` and ``--patients``: a label budget, one or the other."""
    parser.add_argument("--fraction", type=_fraction,
                        help="share of training labels, in (0, 1] (default 1)")
    parser.add_argument("--patients", type=_patients,
                        help="label budget in patients: the images of K training patients per "
                        "class (nested, seeded; FetalCLIP's few-label protocol), instead of "
                        "--fraction")


def _cmd_splits(args: argparse.Namespace) -> int:
    from fetalbench.data.split_files import write_split_files

    written = write_split_files(args.out, args.task, args.dataset, args.data_root,
                                _fraction_of(args), args.patients, args.seed, args.validation,
                                args.pool, args.profile, cache_dir())
    for path in written.files:
        print(f"wrote {path}")
    print(f"split checksum {written.checksum} (records of runs on these images carry it as "
          "split.checksum)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (run, explain, grid, leaderboard, validate, records, reproduce, bench,
    splits, methods, tasks, data, calibrate)."""
    from fetalbench.data.sources import DATASETS
    from fetalbench.data.splits import VALIDATION_SETTINGS
    from fetalbench.methods.registry import POOLS, PROTOCOLS
    from fetalbench.profiles import PROFILES

    parser = OneLineParser(prog="fetalbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = commands.add_parser("run", help="train and test one method on one task; write a record")
    run.add_argument("--method", required=True, help="a name from `fetalbench methods`")
    run.add_argument("--task", required=True, help="a name from `fetalbench tasks`")
    run.add_argument("--dataset", default="phantom", choices=DATASETS.names(),
                     help="a registered dataset (default phantom): " + ", ".join(
                         f"{name} ({'synthetic' if DATASETS.get(name).synthetic else 'real'})"
                         for name in DATASETS.names()))
    run.add_argument("--data-root", type=_input_folder,
                     help="FETAL_PLANES_DB folder (real dataset)")
    _budget_options(run)
    run.add_argument("--seed", type=_seed, default=0, help="seed >= 0 (default 0)")
    run.add_argument("--protocol", default="finetune", choices=PROTOCOLS,
                     help="finetune (default), or linear: the linear evaluation of the frozen "
                     "encoder, logistic regression on its cached features with k-NN beside it")
    run.add_argument("--backbone",
                     help="any timm model name in place of the profile's backbone (ImageNet "
                     "weights from the Hugging Face hub or its cache); recorded in the spec")
    run.add_argument("--pool", default="task", choices=POOLS,
                     help="unlabelled pool for self-supervised stages: the task's training "
                     "images (default, as in the paper) or every training image of the dataset")
    run.add_argument("--profile", default="quick", choices=list(PROFILES),
                     help="quick (2 CPU cores, default) or paper (GPU, the paper's scale)")
    run.add_argument("--validation", default="fixed", choices=VALIDATION_SETTINGS,
                     help="labelled images for model selection: fixed (the whole 20%% "
                     "patient carve-out, default) or scaled (no more than the labelled set)")
    run.add_argument("--out", type=_output_folder, default=Path("results"),
                     help="folder for run records (default results/)")
    run.add_argument("--force", action="store_true", help="rerun even if the record exists")
    run.add_argument("--checkpoint-dir", type=_output_folder,
                     help="folder for the trained model's safetensors checkpoint (default "
                     "$FETALBENCH_CACHE/checkpoints, i.e. ~/.cache/fetalbench/checkpoints)")
    run.add_argument("--no-checkpoint", action="store_true",
                     help="do not save the trained model (`fetalbench explain` then cannot run)")
    run.add_argument("--devices", type=_positive_int, default=1,
                     help="train on N devices (GPUs, or CPU processes) per node with Lightning "
                     "DDP; the global batch stays the profile's (default 1)")
    run.add_argument("--num-nodes", type=_positive_int, default=1,
                     help="train on M nodes (start the command on each, e.g. with srun; "
                     "default 1)")
    run.add_argument("--threads", type=_positive_int, help=THREADS_HELP)
    run.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    run.set_defaults(handler=_cmd_run)

    explain = commands.add_parser(
        "explain", help="Grad-CAM and t-SNE figures of a finished run (needs its checkpoint)"
    )
    explain.add_argument("--record", type=Path, help="the run's record (JSON)")
    explain.add_argument("--method", help="find the record by method (with --task)")
    explain.add_argument("--task", help="find the record by task (with --method)")
    explain.add_argument("--fraction", type=_fraction, help="label fraction of the run")
    explain.add_argument("--seed", type=_seed, help="seed of the run")
    explain.add_argument("--protocol", choices=PROTOCOLS,
                         help="protocol of the run (a cell's fine-tuning run and its linear "
                              "evaluation share method, task, fraction and seed)")
    explain.add_argument("--results", type=_input_folder, default=Path("results"),
                         help="folder of run records (default results/)")
    explain.add_argument("--out", type=_output_folder,
                         help="folder for the figures (default results/figures/explain/"
                         "<dataset>_<task>_<method>_f<fraction>_s<seed>/)")
    explain.add_argument("--per-class", type=_positive_int, default=4,
                         help="Grad-CAM samples per class (default 4)")
    explain.add_argument("--data-root", type=_input_folder,
                         help="FETAL_PLANES_DB folder, for a run on the real dataset (records "
                         "name the dataset, not its folder)")
    explain.set_defaults(handler=_cmd_explain)

    grid = commands.add_parser("grid", help="run a suite's grid of runs (resumable)")
    grid.add_argument("--suite", required=True,
                      help="smoke, phantom, paper, full, or the path of a suite .toml file")
    grid.add_argument("--data-root", type=_input_folder,
                      help="FETAL_PLANES_DB folder (real dataset)")
    grid.add_argument("--out", type=_output_folder, default=Path("results"),
                      help="folder for run records (default results/)")
    grid.add_argument("--launcher", choices=("local", "slurm"), default="local",
                      help="local: run here, one run after another (default); slurm: submit one "
                      "job per pre-training group through submitit and return")
    grid.add_argument("--partition", help="Slurm partition (overrides the suite's [slurm])")
    grid.add_argument("--gpus-per-node", type=_positive_int, help="Slurm GPUs per job")
    grid.add_argument("--time", type=_positive_int,
                      help="Slurm time limit per job in minutes (default 60)")
    grid.add_argument("--mem", type=_positive_int, help="Slurm memory per job in GB")
    grid.add_argument("--cpus-per-task", type=_positive_int, help="Slurm CPUs per job")
    grid.add_argument("--wait", action="store_true",
                      help="with --launcher slurm: wait for the jobs and print a summary")
    grid.add_argument("--threads", type=_positive_int, help=THREADS_HELP)
    grid.add_argument("--workers", type=_positive_int, default=1,
                      help="runs at once on this machine (default 1), each in its own process "
                      "with --threads threads (default: the default thread count divided among "
                      "them, at least 1)")
    grid.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    grid.set_defaults(handler=_cmd_grid)

    board = commands.add_parser("leaderboard", help="write leaderboard.md from the records")
    board.add_argument("--results", type=_input_folder, default=Path("results"),
                       help="folder of run records (default results/)")
    board.add_argument("--output", type=_output_file, default=Path("leaderboard.md"),
                       help="the file to write or check (default leaderboard.md)")
    board.add_argument("--check", action="store_true",
                       help="exit non-zero when the file differs from what the records produce")
    board.set_defaults(handler=_cmd_leaderboard)

    validate = commands.add_parser(
        "validate", help="check run records before accepting them (hash, numbers, dataset)"
    )
    validate.add_argument("paths", nargs="*", type=Path, default=[Path("results")],
                          metavar="PATH", help="record files or folders (default results/)")
    validate.set_defaults(handler=_cmd_validate)

    records = commands.add_parser("records", help="maintain run records")
    records_commands = records.add_subparsers(dest="records_command", required=True,
                                              parser_class=OneLineParser)
    migrate = records_commands.add_parser(
        "migrate", help="rewrite old records in this version's format (schema, portable paths)"
    )
    migrate.add_argument("paths", nargs="*", type=Path, default=[Path("results")],
                         metavar="PATH", help="record files or folders (default results/)")
    migrate.set_defaults(handler=_cmd_records_migrate)

    reproduce = commands.add_parser(
        "reproduce", help="rerun records under their recorded conditions and compare metrics"
    )
    reproduce.add_argument("records", nargs="+", type=Path, metavar="RECORD",
                           help="run records (.json) to rerun, or folders of them")
    reproduce.add_argument("--sample", type=_positive_int,
                           help="rerun a seeded random sample of this many cheap records only")
    reproduce.add_argument("--sample-seed", type=_seed, default=0,
                           help="seed of the --sample draw (default 0)")
    reproduce.add_argument("--max-seconds", type=float, default=90.0,
                           help="with --sample: records whose rerun costs at most this long, "
                           "a reused pre-training stage included (default 90)")
    reproduce.add_argument("--data-root", type=_input_folder,
                           help="FETAL_PLANES_DB folder (for records made on it)")
    reproduce.add_argument("--tolerance", type=float, default=0.0,
                           help="largest absolute metric difference still counted as "
                           "identical on the kind of machine that made the record (default 0: "
                           "exactly equal); on another kind, the headline metrics must agree "
                           "within 0.162, the spread of thread counts")
    reproduce.add_argument("--verbose", action="store_true", help="show the reruns' progress")
    reproduce.set_defaults(handler=_cmd_reproduce)

    bench = commands.add_parser(
        "bench", help="measure data pipeline and training-loop speed against a bare PyTorch loop"
    )
    bench.add_argument("--profile", default="quick", choices=list(PROFILES))
    bench.add_argument("--steps", type=_positive_int, default=10,
                       help="timed steps of each loop per repeat (default 10)")
    bench.add_argument("--repeats", type=_positive_int, default=5,
                       help="repeats of each loop comparison, each with fresh models; the "
                            "loops' steps alternate and the ratio is the median over all step "
                            "pairs (default 5)")
    bench.add_argument("--json", type=_output_file,
                       help="also write the measurements to this file")
    bench.set_defaults(handler=_cmd_bench)

    splits = commands.add_parser(
        "splits", help="write a run's image lists (labelled, validation, unlabelled pool, test) "
        "and their checksum, for code outside fetalbench"
    )
    splits.add_argument("--task", required=True, help="a name from `fetalbench tasks`")
    splits.add_argument("--dataset", default="phantom", choices=DATASETS.names(),
                        help="a registered dataset (default phantom)")
    splits.add_argument("--data-root", type=_input_folder,
                        help="FETAL_PLANES_DB folder (real dataset)")
    _budget_options(splits)
    splits.add_argument("--seed", type=_seed, default=0, help="seed >= 0 (default 0)")
    splits.add_argument("--validation", default="fixed", choices=VALIDATION_SETTINGS,
                        help="validation setting, as `run` takes it (default fixed)")
    splits.add_argument("--pool", default="task", choices=POOLS,
                        help="unlabelled pool, as `run` takes it (default task)")
    splits.add_argument("--profile", default="quick", choices=list(PROFILES),
                        help="the profile whose validation carve-out the split uses (default "
                        "quick)")
    splits.add_argument("--out", type=_output_folder, required=True,
                        help="folder for the lists (made if missing)")
    splits.set_defaults(handler=_cmd_splits)

    commands.add_parser("methods", help="list registered methods").set_defaults(
        handler=_cmd_methods
    )
    commands.add_parser("tasks", help="list registered tasks").set_defaults(handler=_cmd_tasks)

    data = commands.add_parser("data", help="get and check FETAL_PLANES_DB")
    data_commands = data.add_subparsers(dest="data_command", required=True,
                                        parser_class=OneLineParser)
    download = data_commands.add_parser("download", help="fetch the dataset from Zenodo")
    download.add_argument("--root", type=_output_folder, required=True,
                          help="folder to put it in")
    download.set_defaults(handler=_cmd_data_download)
    verify = data_commands.add_parser("verify", help="check a FETAL_PLANES_DB folder")
    verify.add_argument("--root", type=_input_folder, required=True,
                        help="the folder to check")
    verify.set_defaults(handler=_cmd_data_verify)

    calibrate = commands.add_parser(
        "calibrate", help="measure the phantom's difficulty: the linear evaluation of the frozen "
                          "ImageNet encoder (supervised_imagenet --protocol linear)"
    )
    calibrate.add_argument("--profile", default="quick", choices=list(PROFILES),
                           help="whose resolution, backbone and validation carve-out the probe "
                                "uses (default quick)")
    calibrate.add_argument("--resolution", type=_resolution, default=None,
                           help=f"probe input size, at least {MIN_RESOLUTION}; overrides the "
                                f"profile's")
    calibrate.add_argument("--seed", type=_seed, default=0,
                           help="the runs' seed: their validation carve-out and 5%% subset")
    calibrate.add_argument("--record", action="store_true",
                           help="write the numbers into the committed calibration.json "
                                "(docs/calibration.md)")
    calibrate.set_defaults(handler=_cmd_calibrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fetalbench`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except FetalbenchError as error:
        print(f"fetalbench: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("fetalbench: interrupted; records already written are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
