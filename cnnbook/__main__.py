"""``python -m cnnbook <command>``: the book's command line.

Commands:
  data       where each dataset was found, or how to get it
  execute    run chapters top to bottom in a fresh kernel and store their outputs
  bench      the speed benchmark (cnnbook's loop against a d2l-style loop; --nproc N: its scaling
             over N processes under torchrun)
  assign     student copies of chapters: solutions and hidden tests removed
  grade      run submitted notebooks, each in its own kernel, and write a grade report
             (--shard K/N grades one slice of the class; `grade merge` joins the slices)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _command_data(args) -> int:
    from cnnbook.datafiles import (
        CorruptDatasetError,
        DatasetNotFoundError,
        DownloadSkipped,
        read_cifar10,
        read_fashion_mnist,
    )

    def refuse_download(_target):
        raise DownloadSkipped("python -m cnnbook data only looks; add --download to fetch what is missing")

    status = 0
    for name, reader in (("Fashion-MNIST", read_fashion_mnist), ("CIFAR-10", read_cifar10)):
        try:
            train, test = reader(args.root, download=None if args.download else refuse_download)
            print(
                f"{name}: {len(train.labels):,} training and {len(test.labels):,} test images "
                f"in {train.source}"
            )
        except (DatasetNotFoundError, CorruptDatasetError) as err:  # found nothing usable: say why
            print(f"{name}: {err}\n")
            status = 1
    return status


def _command_execute(args) -> int:
    from cnnbook.classroom.execute import execute_notebook

    failed = 0
    for path in args.notebooks:
        start = time.perf_counter()
        print(f"executing {path} ...", flush=True)
        try:
            execute_notebook(Path(path), timeout=args.timeout, addendum=args.addendum)
        except Exception as err:  # report and go on with the other chapters
            failed += 1
            print(f"  FAILED: {type(err).__name__}: {err}", file=sys.stderr)
            continue
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return 1 if failed else 0


def _command_grade_merge(args) -> int:
    from cnnbook.classroom.shards import ShardError, merge

    try:
        merge([Path(p) for p in args.shards], Path(args.out))
    except ShardError as err:
        print(err, file=sys.stderr)
        return 2
    print((Path(args.out) / "summary.md").read_text())
    return 0


def _command_bench(args) -> int:
    from cnnbook.speed.bench import main as bench_main

    return bench_main(args)


def _command_assign(args) -> int:
    from cnnbook.classroom.assign import assign

    assign([Path(p) for p in args.sources], Path(args.out))
    return 0


def _command_grade(args) -> int:
    from cnnbook.classroom.grade import Limits, grade
    from cnnbook.classroom.sandbox import SandboxLimits, SandboxUnavailable
    from cnnbook.classroom.shards import ShardError, parse_shard

    sources = [Path(p) for p in args.source]
    sources = [n for p in sources for n in (sorted(p.glob("*.ipynb")) if p.is_dir() else [p])]
    if not sources:
        print(f"no source notebooks in {', '.join(args.source)}", file=sys.stderr)
        return 2
    resources = SandboxLimits(memory=int(args.memory * 2**30), processes=args.processes)
    limits = Limits(
        args.cell_timeout, args.time_limit, args.profile, args.jobs, not args.unsafe_no_sandbox, resources
    )
    try:
        shard = parse_shard(args.shard) if args.shard else None
        grade(Path(args.submissions), sources, Path(args.out), limits, args.keep_executed, args.resume, shard)
    except (SandboxUnavailable, ShardError) as err:
        print(err, file=sys.stderr)
        return 2
    print((Path(args.out) / "summary.md").read_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m cnnbook``."""
    parser = argparse.ArgumentParser(
        prog="python -m cnnbook", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="where each dataset was found, or how to get it")
    data.add_argument("--root", default=None, help="a folder to search first")
    data.add_argument("--download", action="store_true", help="download what is missing")
    data.set_defaults(run=_command_data)

    execute = commands.add_parser("execute", help="run chapters and store their outputs in place")
    execute.add_argument("notebooks", nargs="+", help="the .ipynb files to run")
    execute.add_argument(
        "--timeout", type=int, default=None, help="seconds allowed per cell (default: no limit)"
    )
    execute.add_argument(
        "--addendum",
        action="store_true",
        help="run only the cells tagged 'addendum' (a second run, e.g. CPU measurements beside a GPU run)",
    )
    execute.set_defaults(run=_command_execute)

    try:
        from cnnbook.speed.bench import add_arguments
    except ImportError:
        pass
    else:
        bench = commands.add_parser("bench", help="cnnbook's training loop against a d2l-style loop")
        add_arguments(bench)
        bench.set_defaults(run=_command_bench)

    assign = commands.add_parser("assign", help="student copies: solutions and hidden tests removed")
    assign.add_argument("sources", nargs="+", help="the chapters (.ipynb) to hand out")
    assign.add_argument("--out", required=True, help="folder for the student notebooks")
    assign.set_defaults(run=_command_assign)

    grade = commands.add_parser("grade", help="run submitted notebooks and write grades.csv and summary.md")
    grade.add_argument("submissions", help="a folder per student holding their notebooks (or STUDENT.ipynb)")
    grade.add_argument("--out", required=True, help="folder for grades.csv and summary.md")
    chapters = Path(__file__).resolve().parent.parent / "chapters"
    grade.add_argument(
        "--source",
        nargs="+",
        default=[str(chapters)],
        help="the instructor's notebooks, or folders of them (default: the book's chapters)",
    )
    grade.add_argument("--cell-timeout", type=int, default=300, help="seconds per cell (default 300)")
    grade.add_argument("--time-limit", type=int, default=1800, help="seconds per notebook (default 1800)")
    grade.add_argument("--profile", default="quick", choices=["quick", "full"], help="default: quick")
    grade.add_argument("--jobs", type=int, default=1, help="notebooks graded side by side (default 1)")
    grade.add_argument("--keep-executed", action="store_true", help="keep executed notebooks in OUT/executed")
    grade.add_argument("--resume", action="store_true", help="keep the results already in OUT/results")
    grade.add_argument("--memory", type=float, default=3, help="GiB of memory per notebook (default 3)")
    grade.add_argument("--processes", type=int, default=512, help="processes and threads per notebook")
    grade.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run kernels without the bubblewrap sandbox: only for submissions you trust",
    )
    grade.add_argument(
        "--shard", default=None, help="K/N: grade only the K-th of N slices of the class (merge them after)"
    )
    grade.set_defaults(run=_command_grade)

    # `python -m cnnbook grade merge ...` (main() routes it here: `grade` takes a folder name first)
    merge = commands.add_parser("grade-merge", help="merge the reports of `grade --shard K/N` into one")
    merge.add_argument("shards", nargs="+", help="the --out folders of the shards")
    merge.add_argument("--out", required=True, help="folder for the merged grades.csv and summary.md")
    merge.set_defaults(run=_command_grade_merge)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cnnbook`` and the ``cnnbook`` script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["grade", "merge"]:
        argv = ["grade-merge", *argv[2:]]
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
