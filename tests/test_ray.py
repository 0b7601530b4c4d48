"""lightpipe on Ray (issue 21): a local Ray cluster (127.0.0.1, 2 CPUs) runs the pipeline over a
Ray Dataset with results equal, row for row, to the single-process pipeline; an actor that dies
mid-job is restarted and its rows are neither lost nor repeated; `lightpipe run --ray`."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")  # the `ray` extra: installed by the test extra

import lightpipe  # noqa: E402
from lightpipe.cli import main  # noqa: E402
from lightpipe.ray import PipelinePredictor, run_on_ray  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def _texts(n: int) -> list[str]:
    words = ["good", "bad", "movie", "plot", "great", "boring", "actor", "music", "long", "fun"]
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 12)))) for _ in range(n)]


def test_2000_rows_of_text_classification_equal_the_single_process_pipeline(cluster, tiny_model):
    folder = str(tiny_model("bert", "AutoModelForSequenceClassification", num_labels=3))
    texts = _texts(2000)
    dataset = ray.data.from_items([{"id": i, "text": text} for i, text in enumerate(texts)])
    rows = run_on_ray("text-classification", folder, dataset, rows_per_call=250, concurrency=2).take_all()
    want = lightpipe.pipeline("text-classification", model=folder)(texts, batch_size=32)
    assert [row["id"] for row in rows] == list(range(2000))  # the input's order, no row lost or repeated
    for row, expected in zip(rows, want):
        assert row["result"]["label"] == expected["label"]
        assert abs(row["result"]["score"] - expected["score"]) < 1e-5


def test_200_rows_of_image_classification_from_bytes(cluster, vision_model, test_images):
    from PIL import Image

    folder = str(vision_model("vit", "AutoModelForImageClassification"))
    rng = np.random.default_rng(1)
    images = []
    for _ in range(200):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (int(rng.integers(8, 40)), 24, 3), dtype=np.uint8)).save(buffer, "PNG")
        images.append(buffer.getvalue())
    dataset = ray.data.from_items([{"image": data} for data in images])
    rows = run_on_ray("image-classification", folder, dataset, input_column="image", rows_per_call=50,
                      as_json=True, top_k=2).take_all()
    want = lightpipe.pipeline("image-classification", model=folder)(images, top_k=2)
    assert len(rows) == 200
    for row, expected in zip(rows, want):
        got = json.loads(row["result"])
        assert [r["label"] for r in got] == [r["label"] for r in expected]
        assert np.allclose([r["score"] for r in got], [r["score"] for r in expected], atol=1e-5)


class DiesOnce(PipelinePredictor):
    """Exits its process on its second batch, once (a marker file remembers it died)."""

    def __init__(self, *args, marker: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.marker, self.calls = marker, 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 2 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().__call__(batch)


def test_an_actor_killed_mid_job_loses_and_repeats_nothing(cluster, tiny_model, tmp_path):
    folder = str(tiny_model("bert", "AutoModelForSequenceClassification", num_labels=3))
    texts = _texts(600)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    dataset = ray.data.from_items([{"id": i, "text": text} for i, text in enumerate(texts)])
    marker = str(tmp_path / "died")
    out = dataset.map_batches(DiesOnce, fn_constructor_args=("text-classification", folder),
                              fn_constructor_kwargs={"marker": marker}, batch_size=100, batch_format="numpy",
                              concurrency=1, max_restarts=3, max_task_retries=3)
    rows = out.take_all()
    assert os.path.exists(marker)  # it did die
    assert [row["id"] for row in rows] == list(range(600))
    want = lightpipe.pipeline("text-classification", model=folder)(texts)
    assert [row["result"]["label"] for row in rows] == [w["label"] for w in want]


def test_cli_run_with_ray(cluster, tiny_model, tmp_path, capsys):
    import pyarrow.parquet as pq

    folder = str(tiny_model("bert", "AutoModelForSequenceClassification", num_labels=3))
    texts = _texts(300)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)))
    target = tmp_path / "out.parquet"
    assert main(["run", "text-classification", "--model", folder, "--input", str(source),
                 "--output", str(target), "--ray", "auto", "--no-progress"]) == 0, capsys.readouterr().err
    table = pq.read_table(target).to_pylist()
    want = lightpipe.pipeline("text-classification", model=folder)(texts)
    assert [row["n"] for row in table] == list(range(300))
    assert [row["result"]["label"] for row in table] == [w["label"] for w in want]
