"""The ``fetalbench`` command line.

Every user-fixable problem ends as one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fetalbench.errors import FetalbenchError
from fetalbench.paths import cache_dir

EXIT_USER_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the problem and the way out."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in (0, 1]") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value:g} is outside (0, 1]; 0.1 means 10% of labels")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; use a seed >= 0")
    return value


def _cmd_run(args: argparse.Namespace) -> int:
    from fetalbench.run import RunRequest, execute_run

    request = RunRequest(
        method=args.method,
        task=args.task,
        dataset=args.dataset,
        data_root=args.data_root,
        fraction=args.fraction,
        seed=args.seed,
        protocol=args.protocol,
        pool=args.pool,
        profile=args.profile,
    )
    outcome = execute_run(request, args.out, cache_dir(), force=args.force)
    if outcome.record is not None:
        metrics = outcome.record["metrics"]
        synthetic = " (synthetic phantom)" if outcome.record["dataset"]["synthetic"] else ""
        print(
            f"{args.method} / {args.task}{synthetic} / fraction {args.fraction:g} / seed "
            f"{args.seed}: test macro F1 {metrics['macro_f1']:.3f}, accuracy "
            f"{metrics['accuracy']:.3f}, balanced accuracy {metrics['balanced_accuracy']:.3f} "
            f"in {outcome.record['timings']['total_s']:.0f}s"
        )
    print(f"record: {outcome.record_path}")
    return 0


def _cmd_methods(_: argparse.Namespace) -> int:
    from fetalbench.methods import METHODS

    for name in METHODS:
        print(f"{name:24s} {METHODS.get(name).description}")
    return 0


def _cmd_tasks(_: argparse.Namespace) -> int:
    from fetalbench.tasks import TASKS

    for name in TASKS:
        task = TASKS.get(name)
        print(f"{name:10s} {task.label_column}: {', '.join(task.classes)} ({task.description})")
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from fetalbench.datasets.download import download_dataset

    download_dataset(args.root)
    return 0


def _cmd_data_verify(args: argparse.Namespace) -> int:
    from fetalbench.datasets.verify import format_report, verify_dataset

    print(format_report(verify_dataset(args.root)))
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from fetalbench.calibration import calibrate, format_calibration

    print(format_calibration(calibrate(cache_dir(), args.resolution, args.seed)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands: run, methods, tasks, data, calibrate)."""
    from fetalbench.datasets.sources import DATASETS
    from fetalbench.methods.api import POOLS, PROTOCOLS
    from fetalbench.profiles import PROFILES

    parser = OneLineParser(prog="fetalbench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = commands.add_parser("run", help="train and test one method on one task; write a record")
    run.add_argument("--method", required=True, help="a name from `fetalbench methods`")
    run.add_argument("--task", required=True, help="a name from `fetalbench tasks`")
    run.add_argument("--dataset", default="phantom", choices=DATASETS,
                     help="phantom (synthetic, built in; default) or fetal_planes_db (real)")
    run.add_argument("--data-root", type=Path, help="FETAL_PLANES_DB folder (real dataset)")
    run.add_argument("--fraction", type=_fraction, default=1.0,
                     help="share of training labels, in (0, 1] (default 1)")
    run.add_argument("--seed", type=_seed, default=0, help="seed >= 0 (default 0)")
    run.add_argument("--protocol", default="finetune", choices=PROTOCOLS,
                     help="downstream protocol: finetune, or linear (frozen backbone)")
    run.add_argument("--pool", default="task", choices=POOLS,
                     help="unlabelled pool for self-supervised stages: the task's training "
                     "images (default, as in the paper) or every training image of the dataset")
    run.add_argument("--profile", default="quick", choices=list(PROFILES),
                     help="quick (2 CPU cores, default) or paper (GPU, the paper's scale)")
    run.add_argument("--out", type=Path, default=Path("results"),
                     help="folder for run records (default results/)")
    run.add_argument("--force", action="store_true", help="rerun even if the record exists")
    run.set_defaults(handler=_cmd_run)

    commands.add_parser("methods", help="list registered methods").set_defaults(
        handler=_cmd_methods
    )
    commands.add_parser("tasks", help="list registered tasks").set_defaults(handler=_cmd_tasks)

    data = commands.add_parser("data", help="get and check FETAL_PLANES_DB")
    data_commands = data.add_subparsers(dest="data_command", required=True,
                                        parser_class=OneLineParser)
    download = data_commands.add_parser("download", help="fetch the dataset from Zenodo")
    download.add_argument("--root", type=Path, required=True, help="folder to put it in")
    download.set_defaults(handler=_cmd_data_download)
    verify = data_commands.add_parser("verify", help="check a FETAL_PLANES_DB folder")
    verify.add_argument("--root", type=Path, required=True, help="the folder to check")
    verify.set_defaults(handler=_cmd_data_verify)

    calibrate = commands.add_parser(
        "calibrate", help="measure the phantom's difficulty with a fixed ImageNet linear probe"
    )
    calibrate.add_argument("--resolution", type=int, default=128, help="probe input size")
    calibrate.add_argument("--seed", type=_seed, default=0, help="seed of the 5%% subset")
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
