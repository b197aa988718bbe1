"""``python -m ddim_keras.report``: the results of the experiments as Markdown tables.

Collects every experiment config (``experiments/*.json``; the dataset is the
name's first word: ``flowers_mse.json`` -> flowers) and every run directory
under ``--runs-dir`` (a run belongs to the experiment of its folder name:
``runs/flowers_mse``). For each one it reads config.json, run.json,
state.json, history.csv, ``sweep/sweep.csv`` and ``kid_*.json``, and writes one
table per dataset, with the published anchors of clear-diffusion-keras beside
them. A value that has no file behind it is written "not run yet" (or "not
recorded"): the report never makes up a number.

The tables go between ``<!-- report:start -->`` and ``<!-- report:end -->`` in
``--output`` (the rest of the file is kept; without the markers the section is
inserted before "## Benchmark", or appended). Sample grids and sweep results
are copied to ``--results-dir/<run>/`` so that the links work in a commit
(runs/ itself is not committed).
"""

import os
import sys

from ddim_keras.cli.args import add_debug_argument
from ddim_keras.cli.runner import ArgumentParser, run_cli
from ddim_keras.core.durable import write_text
from ddim_keras.core.errors import UsageError
from ddim_keras.io.experiments import build_report, load_experiments, load_runs

START = "<!-- report:start -->"


END = "<!-- report:end -->"


def build_parser():
    parser = ArgumentParser(
        prog="python -m ddim_keras.report",
        description="Collect runs (config, history, sweep CSVs, KID JSONs) into per-dataset "
        "Markdown tables, written between report markers in --output.",
    )
    parser.add_argument(
        "--runs-dir", default="runs", help="folder of run directories (default: %(default)s)"
    )
    parser.add_argument(
        "--experiments-dir",
        default="experiments",
        help="folder of experiment configs *.json (default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        default=os.path.join("experiments", "README.md"),
        help="Markdown file to update (default: %(default)s)",
    )
    parser.add_argument(
        "--results-dir",
        help="where sample grids and sweep results are copied (default: results/ beside --output)",
    )
    add_debug_argument(parser)
    return parser


def update_markdown(path, section):
    block = f"{START}\n{section}{END}\n"
    text = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    if START in text and END in text and text.index(START) < text.index(END):
        before = text[: text.index(START)]
        after = text[text.index(END) + len(END) :].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    elif START in text or END in text:
        raise UsageError(f"{path} has only one of the markers {START} and {END}; fix it by hand.")
    elif "\n## Benchmark" in text:
        index = text.index("\n## Benchmark") + 1
        text = text[:index] + block + "\n" + text[index:]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + block
    write_text(path, text, user_error=True)


def report(args):
    if not os.path.isdir(args.experiments_dir):
        raise UsageError(f"--experiments-dir {args.experiments_dir} does not exist.")
    output_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(output_dir):
        raise UsageError(f"the folder of --output {args.output} does not exist.")
    results_dir = args.results_dir or os.path.join(output_dir, "results")
    experiments = load_experiments(args.experiments_dir)
    runs = load_runs(args.runs_dir)
    section = build_report(experiments, runs, results_dir, output_dir)
    update_markdown(args.output, section)
    print(args.output)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return report(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
