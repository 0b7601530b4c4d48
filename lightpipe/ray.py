"""Batch inference over a Ray cluster with the same pipeline (the ``ray`` extra).

    import ray, lightpipe.ray
    ds = ray.data.read_parquet("s3://bucket/reviews/")                 # any Ray Dataset
    out = lightpipe.ray.run_on_ray("text-classification", "distilbert/...", ds,
                                   input_column="text", concurrency=4, num_gpus=1)
    out.write_parquet("s3://bucket/labelled/")

Each Ray actor builds the pipeline once (``PipelinePredictor``) and maps blocks of rows through
it; inside a block lightpipe's own length-sorted batching runs. Ray Data schedules the actors,
streams blocks with backpressure, and retries a failed actor's blocks on a restarted actor
(``max_restarts`` / ``max_task_retries``), so no row is lost or repeated. The output keeps the
input's row order (``preserve_order``). Model files reach each worker through the Hugging Face
cache (or a path all nodes share). On a multi-node cluster, start it with ``ray start`` and pass
``ray.init(address=...)`` (or ``lightpipe run ... --ray ADDRESS``); ``num_gpus=1`` gives each
actor a GPU and its pipeline runs there.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import InputError, missing_extra


def _ray():
    try:
        import ray
    except ImportError:
        raise missing_extra("ray") from None
    return ray


def _plain(value: Any) -> Any:
    """Results as Arrow stores them: numpy / torch values to lists and numbers."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


class PipelinePredictor:
    """A callable class for ``Dataset.map_batches``: the pipeline is built once per actor;
    each batch of rows gets ``output_column`` (the pipeline's result per row; a JSON string
    with ``as_json=True``, for results whose shape varies from row to row)."""

    def __init__(self, task: str, model: Any = None, *, input_column: str = "text",
                 output_column: str = "result", batch_size: int = 32, as_json: bool = False,
                 pipeline_kwargs: dict | None = None, call_kwargs: dict | None = None):
        from .pipelines import pipeline

        self.pipe = pipeline(task, model=model, **(pipeline_kwargs or {}))
        self.input_column, self.output_column = input_column, output_column
        self.batch_size, self.as_json = batch_size, as_json
        self.call_kwargs = dict(call_kwargs or {})

    def __call__(self, batch: dict) -> dict:
        if self.input_column not in batch:
            raise InputError(f"The dataset has no column {self.input_column!r}; it has "
                             f"{', '.join(batch)}. Pass input_column=...")
        inputs = [_python(value) for value in batch[self.input_column]]
        results = self.pipe(inputs, batch_size=self.batch_size, **self.call_kwargs)
        if self.as_json:
            results = [json.dumps(_plain(result), ensure_ascii=False) for result in results]
        else:
            results = [_plain(result) for result in results]
        return {**batch, self.output_column: results}


def _python(value: Any) -> Any:
    """An Arrow/numpy cell as the pipeline takes it (numpy strings and bytes to Python)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def run_on_ray(task: str, model: Any, dataset: Any, *, input_column: str = "text",
               output_column: str = "result", batch_size: int = 32, rows_per_call: int = 256,
               concurrency: int = 1, num_gpus: float = 0, num_cpus: float | None = None,
               as_json: bool = False, max_restarts: int = 3, pipeline_kwargs: dict | None = None,
               **call_kwargs: Any) -> Any:
    """``dataset`` (a Ray Dataset) with ``output_column`` added: ``task``'s pipeline over
    ``input_column``, on ``concurrency`` actors (each with ``num_gpus`` GPUs and ``num_cpus``
    CPUs), ``rows_per_call`` rows per pipeline call and ``batch_size`` per forward pass.
    Lazy, as every Ray Dataset: it runs when read or written."""
    ray = _ray()
    if concurrency < 1 or rows_per_call < 1 or batch_size < 1:
        raise InputError("concurrency, rows_per_call and batch_size must be positive integers.")
    pipeline_kwargs = dict(pipeline_kwargs or {})
    if num_gpus and "device" not in pipeline_kwargs:
        pipeline_kwargs["device"] = "cuda"
    # Ray's actor options, passed through map_batches: a dead actor is restarted and its
    # blocks retried, up to max_restarts times.
    options: dict[str, Any] = {"max_restarts": max_restarts, "max_task_retries": max_restarts}
    if num_gpus:
        options["num_gpus"] = num_gpus
    if num_cpus is not None:
        options["num_cpus"] = num_cpus
    out = dataset.map_batches(
        PipelinePredictor, fn_constructor_args=(task, model),
        fn_constructor_kwargs=dict(input_column=input_column, output_column=output_column,
                                   batch_size=batch_size, as_json=as_json,
                                   pipeline_kwargs=pipeline_kwargs, call_kwargs=call_kwargs),
        batch_size=rows_per_call, batch_format="numpy", concurrency=concurrency, **options)
    out.context.execution_options.preserve_order = True  # rows leave in the order they came
    return out


def read_dataset(path: str) -> Any:
    """A Ray Dataset from a .jsonl / .json, .parquet or .csv file (or folder of them)."""
    ray = _ray()
    readers = {".jsonl": ray.data.read_json, ".json": ray.data.read_json,
               ".parquet": ray.data.read_parquet, ".csv": ray.data.read_csv}
    for suffix, reader in readers.items():
        if str(path).endswith(suffix):
            return reader(str(path))
    raise InputError(f"--input {path}: give a .jsonl, .parquet or .csv file.")


def write_dataset(dataset: Any, path: str) -> int:
    """Write ``dataset`` as one .parquet or .jsonl file, streaming its blocks in order; the
    number of rows written."""
    rows = 0
    if str(path).endswith(".parquet"):
        import pyarrow.parquet as pq

        writer = None
        try:
            for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                writer = writer or pq.ParquetWriter(str(path), table.schema)
                writer.write_table(table)
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
        return rows
    if str(path).endswith(".jsonl"):
        with open(path, "w", encoding="utf-8") as handle:
            for row in dataset.iter_rows():
                handle.write(json.dumps(_plain(dict(row)), ensure_ascii=False) + "\n")
                rows += 1
        return rows
    raise InputError(f"--output {path}: with --ray, write a .parquet or .jsonl file.")


__all__ = ["PipelinePredictor", "read_dataset", "run_on_ray", "write_dataset"]


def run_cli(args: Any, model: Any, pipeline_kwargs: dict, call_kwargs: dict) -> int:
    """``lightpipe run TASK --model M --input FILE --output FILE --ray [ADDRESS]``."""
    import sys

    if args.ray is None or args.input is None or args.output is None:
        raise InputError("--input and --ray go together, with --output: lightpipe run TASK --model M "
                         "--input data.jsonl --output out.parquet --ray [ADDRESS]")
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=None if args.ray == "local" else args.ray, log_to_driver=False,
                 include_dashboard=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = sys.stderr.isatty() if args.progress is None else bool(args.progress)
    dataset = read_dataset(args.input)
    out = run_on_ray(args.task, model, dataset, input_column=args.input_column,
                     batch_size=args.batch_size or 32,
                     pipeline_kwargs={k: v for k, v in pipeline_kwargs.items() if v is not None},
                     **call_kwargs)
    rows = write_dataset(out, args.output)
    print(f"lightpipe: wrote {rows} rows to {args.output}", file=sys.stderr)
    return 0
