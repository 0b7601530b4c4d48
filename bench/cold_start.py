"""Cold start: wall time from process start to the first result, in fresh processes.

Cases (each a new Python process, timed from spawn to exit by the parent):
  python      `python -c pass`                       the interpreter alone
  torch       `python -c "import torch"`             the floor for any PyTorch library
  lightpipe   pipeline("text-classification", model=TINY)("hello")
  transformers  the same with transformers.pipeline
  cli --help, cli tasks   the `lightpipe` console script (n/a while lightpipe.cli is missing);
              a separate check says whether each imports torch.
TINY is a 2-layer, 32-wide BERT classifier built here, so model size hardly matters: the
figure is the import and setup cost. Runs are interleaved (rounds of every case, rotated)
after one unrecorded warm-up round, so the file cache is warm and noise is spread; medians
are reported. Goals: lightpipe / transformers <= 0.4, lightpipe - torch <= 0.2 s.

    python bench/cold_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import sysconfig
import tempfile
from pathlib import Path

from common import build_tiny_checkpoint, goal, machine, median, table, timed_run, write_json

PIPELINE_CODE = ("from {lib} import pipeline\n"
                 "p = pipeline('text-classification', model={folder!r})\n"
                 "print(p('hello'))\n")

# Runs the CLI's main() in-process and reports whether torch got imported.
CLI_TORCH_CHECK = ("import sys\n"
                   "sys.argv = ['lightpipe'] + sys.argv[1:]\n"
                   "from lightpipe.cli import main\n"
                   "try:\n    main()\nexcept SystemExit:\n    pass\n"
                   "print('TORCH_IMPORTED=' + str('torch' in sys.modules), file=sys.stderr)\n")


def cli_script() -> str | None:
    """The installed `lightpipe` console script (not a pyenv shim), if lightpipe.cli exists."""
    if importlib.util.find_spec("lightpipe.cli") is None:
        return None
    script = Path(sysconfig.get_path("scripts")) / "lightpipe"
    return str(script) if script.exists() else None


def cases(folder: str) -> dict[str, list[str]]:
    python = sys.executable
    found = {
        "python": [python, "-c", "pass"],
        "torch": [python, "-c", "import torch"],
        "lightpipe": [python, "-c", PIPELINE_CODE.format(lib="lightpipe", folder=folder)],
        "transformers": [python, "-c", PIPELINE_CODE.format(lib="transformers", folder=folder)],
    }
    script = cli_script()
    if script:
        found["cli --help"] = [python, script, "--help"]
        found["cli tasks"] = [python, script, "tasks"]
    return found


def cli_imports_torch(args: list[str]) -> bool | str:
    _, proc = timed_run([sys.executable, "-c", CLI_TORCH_CHECK, *args])
    for line in proc.stderr.splitlines():
        if line.startswith("TORCH_IMPORTED="):
            return line.endswith("True")
    return f"error: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per case (default 7)")
    args = parser.parse_args()

    info = machine()  # at the start: the commit measured
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_checkpoint(Path(tmp) / "tiny-bert")
        commands = cases(folder)
        names = list(commands)
        times: dict[str, list[float]] = {name: [] for name in names}
        outputs: dict[str, str] = {}
        for round_index in range(args.runs + 1):  # round 0 is the warm-up
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                seconds, proc = timed_run(commands[name])
                if proc.returncode != 0:
                    sys.exit(f"{name} failed:\n{proc.stderr[-2000:]}")
                outputs[name] = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
                if round_index:
                    times[name].append(seconds)
            print(f"round {round_index}/{args.runs} done", file=sys.stderr)

    med = {name: median(values) for name, values in times.items()}
    ratio = med["lightpipe"] / med["transformers"]
    over_torch = med["lightpipe"] - med["torch"]
    cli = {}
    for name, argv in (("cli --help", ["--help"]), ("cli tasks", ["tasks"])):
        cli[name] = {"seconds": med.get(name), "imports_torch": cli_imports_torch(argv)
                     if name in med else None}

    rows = [[name, med[name], min(times[name]), max(times[name]), med[name] - med["torch"]]
            for name in names]
    for name in ("cli --help", "cli tasks"):
        if name not in med:
            rows.append([name, "n/a", "n/a", "n/a", "n/a"])
    print(f"\nCold start, {args.runs} runs each (seconds; wall time spawn -> exit)")
    print(table(rows, ["case", "median", "min", "max", "minus torch"]))
    print(f"\nfirst results: lightpipe {outputs['lightpipe']}  transformers {outputs['transformers']}")
    print(f"lightpipe / transformers   {ratio:.3f}   (goal <= 0.4: {goal(ratio <= 0.4)})")
    print(f"lightpipe - import torch   {over_torch:.3f} s (goal <= 0.2 s: {goal(over_torch <= 0.2)})")
    for name, info in cli.items():
        if info["seconds"] is None:
            print(f"{name:<13} n/a (lightpipe.cli not found)")
        else:
            print(f"{name:<13} {info['seconds']:.3f} s, imports torch: {info['imports_torch']}")

    path = write_json("cold_start.json", {
        "machine": info, "load_average_end": machine()["load_average_1_5_15min"], "runs": args.runs, "seconds": times, "median": med,
        "ratio_lightpipe_over_transformers": ratio, "lightpipe_minus_torch_s": over_torch,
        "goals": {"ratio<=0.4": ratio <= 0.4, "minus_torch<=0.2s": over_torch <= 0.2},
        "cli": cli, "first_results": outputs})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
