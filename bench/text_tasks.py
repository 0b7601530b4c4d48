"""token-classification and zero-shot-classification throughput: lightpipe vs transformers.

The model is the real all-MiniLM-L6-v2 encoder (BERT, 6 layers x 384) with a fresh head, built
once per run by transformers in a child: `AutoModelForTokenClassification` (9 BIO labels,
PER/LOC/ORG/MISC) and `AutoModelForSequenceClassification` (contradiction/neutral/entailment).
The head weights and biases are redrawn (normal, std 0.5, seeded) so predictions vary; each is
saved with the MiniLM tokenizer files into a temporary folder that both libraries load.

  ner: `pipeline("ner", aggregation_strategy="simple")` over N seeded sentences of 4-60 words
       with capitalised names, places and organisations, batch_size=32.
  zero-shot: `pipeline("zero-shot-classification")` over N/5 seeded texts of 8-60 words with
       10 candidate labels (N/5 x 10 premise/hypothesis pairs), batch_size=32.

Each (task, library) runs in a fresh child process, so peak memory (ru_maxrss, and its rise
over the baseline after `import torch` and the library's `pipeline` import) is measured
fairly; rounds of all children are interleaved, medians reported. A child builds the pipeline,
warms up on one batch, then times `pipe(texts)`. During that call, light wrappers on the
pipeline instance add up the time spent tokenizing (lightpipe: `preprocess_many`; transformers:
its per-item `preprocess` generator), in the model (`_forward`) and in `postprocess`; the rest
("other") is collation, padding, un-batching and the library's loop. Then the model forward
alone, `model(**batch)`, is timed over length-sorted padded batches of the same inputs.
Outputs of the first round are saved and compared between the libraries: the same entities
(group, word, start, end) or the same label ranking, and the largest score difference.
The machine is shared and noisy: the table also gives each library's best run, the speedup of
each round (adjacent runs) and the 1-minute load average before each run; the JSON keeps every
run. Goal for each task: lightpipe throughput (median) >= 1.5x transformers.

    python bench/text_tasks.py [--n 1000] [--rounds 3] [--tasks ner zero-shot]
    python bench/text_tasks.py --n 100 --rounds 1                  (smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (CHILD_ENV, COMMON_WORDS, OUT_DIR, TOKENIZER_FILES, goal, machine, median,
                    minilm_dir, run_child, table, time_model, write_json)

WORDS = COMMON_WORDS + "meeting visited travelled announced signed agreement".split()
PEOPLE = ("Maria Schmidt", "John Carter", "Aiko Tanaka", "Pierre Dubois", "Olusegun Adeyemi",
          "Elena Petrova", "Rahul Mehta", "Sofia", "Henrik Larsson", "Chen Wei", "Fatima Zahra",
          "Thomas", "Isabella Rossi", "Kwame Mensah", "Lucas Oliveira", "Grace O'Neill")
PLACES = ("Berlin", "Paris", "New York", "Tokyo", "Lagos", "Buenos Aires", "Mumbai", "Lake Geneva",
          "the Amazon", "Cape Town", "Vancouver", "Kraków", "Melbourne", "the Alps", "Cairo",
          "San Francisco", "Reykjavik", "Nairobi")
ORGS = ("Acme Corporation", "the United Nations", "Siemens", "Stanford University", "Toyota",
        "the World Bank", "Greenpeace", "Deutsche Bahn", "Microsoft", "the Red Cross", "Airbus")
NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC")
NLI_LABELS = ("contradiction", "neutral", "entailment")
CANDIDATE_LABELS = ["politics", "sports", "science", "business", "travel", "music", "health",
                    "technology", "education", "weather"]
TASKS = ("ner", "zero-shot")
LIBS = ("lightpipe", "transformers")


def sentences(n: int, min_words: int, max_words: int, seed: int) -> list[str]:
    """English-like word salad; about one word in seven is a name, place or organisation."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = []
        for _ in range(rng.randint(min_words, max_words)):
            draw = rng.random()
            pool = (PEOPLE if draw < 0.06 else PLACES if draw < 0.11 else ORGS if draw < 0.14
                    else WORDS)
            word = rng.choice(pool)
            words.append(word + "," if rng.random() < 0.08 else word)
        text = " ".join(words).rstrip(",")
        texts.append(text[0].upper() + text[1:] + ".")
    return texts


def inputs(task: str, n: int) -> list[str]:
    if task == "ner":
        return sentences(n, 4, 60, seed=2024)
    return sentences(max(1, n // 5), 8, 60, seed=2025)


def build_checkpoints(folder: Path) -> dict[str, str]:
    """Both checkpoints, saved by transformers in a child (the parent never imports torch)."""
    code = (
        "import json, shutil, sys, torch, transformers\n"
        "from pathlib import Path\n"
        "transformers.logging.set_verbosity_error()\n"
        "minilm, out, ner_labels, nli_labels, files = sys.argv[1], Path(sys.argv[2]), *map(json.loads, sys.argv[3:6])\n"
        "generator = torch.Generator().manual_seed(0)\n"
        "for name, cls, labels in (('ner', transformers.AutoModelForTokenClassification, ner_labels),\n"
        "                          ('nli', transformers.AutoModelForSequenceClassification, nli_labels)):\n"
        "    model = cls.from_pretrained(minilm, num_labels=len(labels), id2label=dict(enumerate(labels)),\n"
        "                                label2id={label: i for i, label in enumerate(labels)}).eval()\n"
        "    with torch.no_grad():\n"
        "        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=generator) * 0.5)\n"
        "        model.classifier.bias.copy_(torch.randn(model.classifier.bias.shape, generator=generator) * 0.5)\n"
        "    model.save_pretrained(out / name)\n"
        "    for file in files:\n"
        "        if (Path(minilm) / file).exists():\n"
        "            shutil.copy(Path(minilm) / file, out / name / file)\n")
    subprocess.run([sys.executable, "-c", code, minilm_dir(), str(folder), json.dumps(NER_LABELS),
                    json.dumps(NLI_LABELS), json.dumps(TOKENIZER_FILES)],
                   check=True, env=CHILD_ENV, capture_output=True)
    return {"ner": str(folder / "ner"), "zero-shot": str(folder / "nli")}


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Stopwatch:
    """Adds up the time spent in wrapped methods of one pipeline instance."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, obj, method: str, name: str, generator: bool = False) -> None:
        inner = getattr(obj, method)
        self.seconds[name] = 0.0

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        def timed_generator(*args, **kwargs):  # each next() of a generator method
            iterator = iter(timed(*args, **kwargs))
            while True:
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    self.seconds[name] += time.perf_counter() - start
                    return
                self.seconds[name] += time.perf_counter() - start
                yield item

        setattr(obj, method, timed_generator if generator else timed)

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)


def plain(value):
    """numpy scalars -> Python numbers, for JSON."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def child(task: str, lib: str, folder: str, n: int, batch_size: int, save: bool) -> dict:
    """Runs in a fresh process: one task, one library."""
    import torch

    if lib == "lightpipe":
        from lightpipe import pipeline
    else:
        import transformers
        from transformers import pipeline
        transformers.logging.set_verbosity_error()
    baseline = maxrss_mib()
    texts = inputs(task, n)
    if task == "ner":
        pipe = pipeline("ner", model=folder, aggregation_strategy="simple", dtype=torch.float32,
                        batch_size=batch_size)
        call = {}
    else:
        pipe = pipeline("zero-shot-classification", model=folder, dtype=torch.float32,
                        batch_size=batch_size)
        call = {"candidate_labels": CANDIDATE_LABELS}
    loaded = maxrss_mib()
    watch = Stopwatch()
    if lib == "lightpipe":
        watch.wrap(pipe, "preprocess_many", "tokenize")
    else:
        watch.wrap(pipe, "preprocess", "tokenize", generator=True)
    watch.wrap(pipe, "_forward", "forward")
    watch.wrap(pipe, "postprocess", "postprocess")
    pipe(texts[:batch_size if task == "ner" else max(1, batch_size // len(CANDIDATE_LABELS))], **call)
    watch.reset()
    start = time.perf_counter()
    outputs = pipe(texts, **call)
    pipeline_s = time.perf_counter() - start
    peak = maxrss_mib()
    parts = dict(watch.seconds)
    parts["other"] = pipeline_s - sum(parts.values())
    if save:
        (OUT_DIR / f"text_{task}_{lib}.json").write_text(json.dumps(plain(outputs)))
    entities = sum(len(o) for o in outputs) if task == "ner" else None
    del outputs

    # The model forward alone over length-sorted padded batches of the same inputs.
    tokenizer, model = pipe.tokenizer, pipe.model
    if task == "ner":
        firsts, seconds = texts, None
    else:
        hypotheses = [f"This example is {label}." for label in CANDIDATE_LABELS]
        firsts = [text for text in texts for _ in hypotheses]
        seconds = hypotheses * len(texts)
    lengths = [len(ids) for ids in tokenizer(firsts, text_pair=seconds,
                                             truncation="only_first")["input_ids"]]
    order = sorted(range(len(firsts)), key=lengths.__getitem__)
    batches = []
    for begin in range(0, len(order), batch_size):
        chosen = order[begin:begin + batch_size]
        encoded = tokenizer([firsts[i] for i in chosen],
                            text_pair=None if seconds is None else [seconds[i] for i in chosen],
                            padding=True, truncation="only_first", return_tensors="pt")
        batches.append({k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")
                        if k in encoded})
    model_s = time_model(model, batches)
    return {"task": task, "lib": lib, "pipeline_s": pipeline_s, "parts_s": parts,
            "model_s": model_s, "lengths": lengths, "entities": entities,
            "rss_baseline_mib": baseline, "rss_loaded_mib": loaded, "rss_peak_mib": peak,
            "threads": torch.get_num_threads()}


def padded_tokens(lengths: list[int], batch_size: int, sort: bool) -> int:
    lengths = sorted(lengths) if sort else lengths
    return sum(max(lengths[i:i + batch_size]) * len(lengths[i:i + batch_size])
               for i in range(0, len(lengths), batch_size))


def load_outputs(task: str) -> tuple[list, list] | None:
    try:
        return tuple(json.loads((OUT_DIR / f"text_{task}_{lib}.json").read_text()) for lib in LIBS)
    except OSError:
        return None


def compare(task: str) -> dict | None:
    """Every text's output, lightpipe against transformers: how many agree exactly (entities:
    group, word, start, end; zero-shot: the label ranking) and the largest score difference."""
    loaded = load_outputs(task)
    if loaded is None:
        return None
    ours, theirs = loaded
    same, max_diff, mismatches = 0, 0.0, []
    for index, (a, b) in enumerate(zip(ours, theirs)):
        if task == "ner":
            key = lambda e: (e["entity_group"], e["word"], e["start"], e["end"])  # noqa: E731
            equal = [key(e) for e in a] == [key(e) for e in b]
            pairs = zip(a, b)
        else:
            equal = a["sequence"] == b["sequence"] and a["labels"] == b["labels"]
            pairs = zip([dict(zip(a["labels"], a["scores"]))], [dict(zip(b["labels"], b["scores"]))])
        if equal:
            same += 1
            for x, y in pairs:
                if task == "ner":
                    max_diff = max(max_diff, abs(x["score"] - y["score"]))
                else:
                    max_diff = max(max_diff, max(abs(x[label] - y[label]) for label in x))
        elif len(mismatches) < 3:
            mismatches.append(index)
    return {"texts": len(ours), "same": same, "max_abs_score_diff": max_diff,
            "within_1e-4": same == len(ours) == len(theirs) and max_diff <= 1e-4,
            "first_mismatches": mismatches}


def sample(task: str, index: int = 0) -> str:
    """One text's output from each library, for the eye."""
    loaded = load_outputs(task)
    if loaded is None:
        return ""
    lines = []
    for lib, outputs in zip(LIBS, loaded):
        out = outputs[index]
        if task == "ner":
            shown = ", ".join(f"{e['entity_group']} {e['word']!r} {e['start']}-{e['end']} "
                              f"{e['score']:.6f}" for e in out[:4])
            lines.append(f"  {lib:<12} {len(out)} entities: {shown}, ...")
        else:
            shown = ", ".join(f"{label} {score:.6f}" for label, score in
                              list(zip(out["labels"], out["scores"]))[:4])
            lines.append(f"  {lib:<12} {shown}, ...")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000,
                        help="ner sentences; zero-shot takes n/5 texts (default 1000)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each child")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS),
                        help="run only these tasks (default: both)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--lib", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--save", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    OUT_DIR.mkdir(exist_ok=True)
    if args.child:  # this process is one measurement, run by the parent below
        print(json.dumps(child(args.child, args.lib, args.folder, args.n, args.batch_size,
                               args.save)))
        return

    info = machine()  # at the start: the commit measured; the load average is taken again at the end
    for task in args.tasks:
        for stale in OUT_DIR.glob(f"text_{task}_*.json"):
            stale.unlink()
    me = [sys.executable, str(Path(__file__).resolve())]
    runs: dict[tuple, list[dict]] = {(task, lib): [] for task in args.tasks for lib in LIBS}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="lightpipe-bench-") as tmp:
        folders = build_checkpoints(Path(tmp))
        for round_index in range(args.rounds):
            for task in args.tasks:
                for lib in LIBS:
                    if f"{task} {lib}" in errors:
                        continue
                    argv = me + ["--child", task, "--lib", lib, "--folder", folders[task],
                                 "--n", str(args.n), "--batch-size", str(args.batch_size)]
                    load = os.getloadavg()[0]  # the 1-minute load just before this run
                    try:
                        runs[(task, lib)].append(
                            {**run_child(argv + (["--save"] if round_index == 0 else [])),
                             "round": round_index, "load_1min_before": round(load, 2)})
                    except (RuntimeError, subprocess.TimeoutExpired) as error:
                        errors[f"{task} {lib}"] = str(error).strip().splitlines()[-1]
                    print(f"round {round_index + 1}/{args.rounds}: {task} {lib} done",
                          file=sys.stderr)

    summary: dict[str, dict] = {}
    goals: dict[str, float] = {}
    for task in args.tasks:
        items = len(inputs(task, args.n))
        unit = "sentences" if task == "ner" else "texts"
        rows, parts_rows = [], []
        for lib in LIBS:
            results = runs[(task, lib)]
            if not results:
                rows.append([lib, "failed"] + ["-"] * 6)
                continue

            def med(key, minus=None):
                return median([r[key] - (r[minus] if minus else 0) for r in results])

            seconds = med("pipeline_s")
            parts = {name: median([r["parts_s"][name] for r in results])
                     for name in results[0]["parts_s"]}
            entry = {"pipeline_s": seconds, f"{unit}_per_s": items / seconds,
                     "model_s": med("model_s"), "parts_s": parts,
                     "rss_peak_mib": med("rss_peak_mib"),
                     "rss_rise_mib": med("rss_peak_mib", "rss_baseline_mib"),
                     "rss_loaded_rise_mib": med("rss_loaded_mib", "rss_baseline_mib"),
                     "entities": results[0]["entities"],
                     "runs": [{k: v for k, v in r.items() if k != "lengths"} for r in results]}
            summary[f"{task} {lib}"] = entry
            entry["best_pipeline_s"] = min(r["pipeline_s"] for r in results)
            rows.append([lib, seconds, items / seconds, "", entry["best_pipeline_s"],
                         entry["rss_peak_mib"], entry["rss_rise_mib"], entry["model_s"]])
            parts_rows.append([lib, seconds] + [f"{parts[name]:.2f} ({100 * parts[name] / seconds:.0f}%)"
                                                for name in ("tokenize", "forward", "postprocess", "other")])
        ours, theirs = summary.get(f"{task} lightpipe"), summary.get(f"{task} transformers")
        speedup = ours[f"{unit}_per_s"] / theirs[f"{unit}_per_s"] if ours and theirs else 0.0
        goals[task] = speedup
        per_round = []
        if ours and theirs:
            ours["speedup_vs_transformers"] = speedup
            ours["best_speedup_vs_transformers"] = theirs["best_pipeline_s"] / ours["best_pipeline_s"]
            rows[0][3] = f"{speedup:.2f}x"
            theirs_by_round = {r["round"]: r for r in runs[(task, "transformers")]}
            per_round = [theirs_by_round[r["round"]]["pipeline_s"] / r["pipeline_s"]
                         for r in runs[(task, "lightpipe")] if r["round"] in theirs_by_round]
            ours["per_round_speedups"] = per_round
        lengths = runs[(task, "lightpipe")][0]["lengths"] if runs[(task, "lightpipe")] else []
        padding = ({"real": sum(lengths),
                    "sorted_batches": padded_tokens(lengths, args.batch_size, True),
                    "input_order_batches": padded_tokens(lengths, args.batch_size, False)}
                   if lengths else {})
        agreement = compare(task)
        summary[f"{task} tokens"] = padding
        summary[f"{task} agreement"] = agreement

        what = (f"ner (aggregation_strategy='simple'), {items} sentences" if task == "ner" else
                f"zero-shot-classification, {items} texts x {len(CANDIDATE_LABELS)} labels = "
                f"{len(lengths)} pairs")
        print(f"\n{what} ({padding.get('real', '?')} tokens, "
              f"{min(lengths, default=0)}-{max(lengths, default=0)} per input), "
              f"batch_size={args.batch_size}, median of {args.rounds} interleaved runs")
        print(table(rows, ["library", "pipe s", f"{unit}/s", "speedup", "best pipe s", "peak MiB",
                           "rise MiB", "model s"]))
        if per_round:
            loads = [r["load_1min_before"] for r in runs[(task, "lightpipe")]]
            print(f"per-round speedups (transformers s / lightpipe s): "
                  f"{', '.join(f'{x:.2f}x' for x in per_round)}; best-of-runs speedup "
                  f"{ours['best_speedup_vs_transformers']:.2f}x; 1-min load before the lightpipe "
                  f"runs: {', '.join(f'{x:.1f}' for x in loads)}")
        print("where the time goes (s, share of pipe s):")
        print(table(parts_rows, ["library", "pipe s", "tokenize", "forward", "postprocess",
                                 "other"]))
        if padding:
            print(f"tokens computed incl. padding: sorted batches {padding['sorted_batches']}, "
                  f"input-order batches {padding['input_order_batches']} (real {padding['real']})")
        if task == "ner" and ours and theirs:
            print(f"entities found: lightpipe {ours['entities']}, transformers {theirs['entities']}")
        if agreement:
            print(f"agreement over all {agreement['texts']} {unit}: {agreement['same']} give the same "
                  f"{'entities (group, word, start, end)' if task == 'ner' else 'label ranking'}; "
                  f"max |score diff| {agreement['max_abs_score_diff']:.2e} "
                  f"(within 1e-4: {'yes' if agreement['within_1e-4'] else 'NO'})"
                  + (f"; first mismatches at {agreement['first_mismatches']}"
                     if agreement["first_mismatches"] else ""))
            print(f"{unit[:-1]} 0:\n{sample(task)}")
    for name, error in errors.items():
        print(f"FAILED {name}: {error}")
    print()
    for task in args.tasks:
        print(f"{task}: lightpipe / transformers throughput {goals[task]:.2f}x "
              f"(goal >= 1.5x: {goal(goals[task] >= 1.5)})")
    name = "text_tasks.json" if len(args.tasks) == len(TASKS) else f"text_tasks_{args.tasks[0]}.json"
    path = write_json(name, {
        "machine": info, "load_average_end": machine()["load_average_1_5_15min"], "n": args.n,
        "batch_size": args.batch_size, "rounds": args.rounds,
        "candidate_labels": CANDIDATE_LABELS, "results": summary, "errors": errors,
        **{f"goal_{task}_speedup>=1.5x": goals[task] >= 1.5 for task in args.tasks}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
