"""table-question-answering: lightpipe vs transformers on a TAPAS-base-sized model.

The model is a random TapasForQuestionAnswering the size of google/tapas-base-finetuned-wtq
(hidden 768, 12 layers, 12 heads, aggregation head, relative positions per cell) saved by
transformers with a small WordPiece vocab.txt (TapasTokenizer). The table has N_ROWS rows of 4
columns (names, years, counts, dates), so drop_rows_to_fit truncates it to 512 tokens.

Each (library, round) runs in a fresh child process with torch.set_num_threads(2): it builds
`pipeline("table-question-answering", model=folder)`, warms up, then times
`pipe(table=table, query=queries)` (all queries in one batch, the reference's way) and
`sequential=True`. transformers gets a pandas DataFrame, lightpipe the dict. Rounds are
interleaved; medians are reported with each round's ratio; answers are compared. The machine
is shared and noisy (the 1-minute load average is recorded).

    python bench/table_qa.py [--queries 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CHILD_ENV, machine, median, run_child, table, write_json

N_ROWS = 120

BUILD = r"""
import sys, torch, transformers
from pathlib import Path
folder = Path(sys.argv[1])
words = ("[PAD] [EMPTY] [UNK] [CLS] [SEP] [MASK] the of a how many what is are was in name year "
         "count date total average which june march before after than more less 1 2 3 4 5 6 7 "
         "8 9 0 19 ##0 ##1 ##2 ##3 ##4 ##5 ##6 ##7 ##8 ##9 , . ?").split()
(folder / "vocab.txt").write_text("\n".join(words) + "\n")
transformers.TapasTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
config = transformers.TapasConfig(vocab_size=len(words), num_aggregation_labels=4,
    aggregation_labels={0: "NONE", 1: "SUM", 2: "AVERAGE", 3: "COUNT"},
    no_aggregation_label_index=0, architectures=["TapasForQuestionAnswering"])
torch.manual_seed(0)
transformers.TapasForQuestionAnswering(config).eval().save_pretrained(folder)
"""

CHILD = r"""
import json, os, sys, time
import torch
torch.set_num_threads(2)
library, folder, n_queries, n_rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = {"Name": [f"name {i}" for i in range(n_rows)],
        "Year": [str(1900 + i % 110) for i in range(n_rows)],
        "Count": [str(i * 7 % 97) for i in range(n_rows)],
        "Date": [f"{i % 28 + 1} june 19{i % 90 + 10}" for i in range(n_rows)]}
queries = [f"what is the total count of year {1900 + 3 * i}?" if i % 2 else
           f"which name was before june 19{20 + i}?" for i in range(n_queries)]
if library == "lightpipe":
    import lightpipe as lib
    tab = data
else:
    import pandas as pd
    import transformers as lib
    lib.logging.set_verbosity_error()
    tab = pd.DataFrame.from_dict(data)
pipe = lib.pipeline("table-question-answering", model=folder)
load = os.getloadavg()[0]
pipe(table=tab, query=queries[:2])  # warm-up
out = {"library": library, "load_1min": load}
start = time.perf_counter()
out["answers"] = pipe(table=tab, query=queries)
out["batch_q_per_s"] = n_queries / (time.perf_counter() - start)
start = time.perf_counter()
out["seq_answers"] = pipe(table=tab, query=queries, sequential=True)
out["seq_q_per_s"] = n_queries / (time.perf_counter() - start)
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"lightpipe": [], "transformers": []}
    with tempfile.TemporaryDirectory(prefix="lightpipe_tqa_bench_") as folder:
        subprocess.run([sys.executable, "-c", BUILD, folder], check=True, env=CHILD_ENV,
                       capture_output=True)
        for round_index in range(args.rounds):
            order = (["lightpipe", "transformers"] if round_index % 2 == 0
                     else ["transformers", "lightpipe"])
            for library in order:
                result = run_child([sys.executable, "-c", CHILD, library, folder,
                                    str(args.queries), str(N_ROWS)])
                runs[library].append(result)
                print(f"round {round_index + 1} {library}: {result['batch_q_per_s']:.2f} q/s "
                      f"batched, {result['seq_q_per_s']:.2f} q/s sequential "
                      f"(load {result['load_1min']:.1f})", flush=True)
    ours, theirs = runs["lightpipe"], runs["transformers"]
    same = ours[0]["answers"] == theirs[0]["answers"]  # both as JSON: coordinates are lists
    same_seq = ours[0]["seq_answers"] == theirs[0]["seq_answers"]
    batch = [median([r["batch_q_per_s"] for r in rs]) for rs in (ours, theirs)]
    seq = [median([r["seq_q_per_s"] for r in rs]) for rs in (ours, theirs)]
    per_round = [a["batch_q_per_s"] / b["batch_q_per_s"] for a, b in zip(ours, theirs)]
    print(table([["lightpipe", batch[0], seq[0]], ["transformers", batch[1], seq[1]]],
                ["library", "q/s batched (median)", "q/s sequential (median)"]))
    print(f"batched ratio lightpipe/transformers: {batch[0] / batch[1]:.2f}x (rounds: "
          f"{', '.join(f'{r:.2f}' for r in per_round)}); sequential: {seq[0] / seq[1]:.2f}x")
    print(f"answers equal: batched {same}, sequential {same_seq}")
    for runs_of in runs.values():
        for run in runs_of:
            run.pop("answers")
            run.pop("seq_answers")
    path = write_json("table_qa.json", {"machine": machine(), "queries": args.queries,
                                        "rows": N_ROWS, "threads": 2, "runs": runs,
                                        "ratio_batched": batch[0] / batch[1],
                                        "ratio_sequential": seq[0] / seq[1],
                                        "answers_equal": same, "seq_answers_equal": same_seq})
    print(f"wrote {path}")


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent)
    main()
