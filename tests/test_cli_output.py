"""`lightpipe run` writes what JSON cannot hold (issue 22, items 2, 3 and 9): images as PNG
files (or data: URIs), audio as WAV files, sentence vectors pooled as the checkpoint says (into
.npy too), and a progress total for a regular file on stdin."""

from __future__ import annotations

import base64
import io
import json
import sys
import wave

import numpy as np
import pytest
from PIL import Image

import lightpipe
from lightpipe.cli import main
from lightpipe.cli_output import ResultWriter, count_lines


def test_depth_maps_are_written_as_png_files(dense_model, test_images, tmp_path, capsys):
    folder = str(dense_model("dpt", "DPTForDepthEstimation"))
    image = test_images["rgba_png"]
    code = main(["run", "depth-estimation", "--model", folder, "--output-dir", str(tmp_path / "out"),
                 "--no-progress", image, image])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and set(lines[0]) == {"predicted_depth", "depth"}
    written = Image.open(lines[0]["depth"])
    want = lightpipe.pipeline("depth-estimation", model=folder)(image)["depth"]
    assert np.array_equal(np.asarray(written), np.asarray(want))
    assert lines[0]["depth"] != lines[1]["depth"] and "wrote 2 file(s)" in err

    code = main(["run", "depth-estimation", "--model", folder, "--data-uris", "--no-progress", image])
    out, _ = capsys.readouterr()
    uri = json.loads(out)["depth"]
    assert uri.startswith("data:image/png;base64,")
    inline = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert np.array_equal(np.asarray(inline), np.asarray(want))

    code = main(["run", "depth-estimation", "--model", folder, "--no-progress", image])
    _, err = capsys.readouterr()
    assert code == 2 and "--output-dir DIR" in err  # a clear line, not a JSON TypeError


def test_audio_results_are_written_as_wav(tmp_path):
    rate = 16000
    tone = 0.5 * np.sin(np.linspace(0, 200 * np.pi, rate)).astype(np.float32)
    stream = io.StringIO()
    writer = ResultWriter(output_dir=str(tmp_path), stream=stream)
    writer.write(0, {"audio": tone[None], "sampling_rate": rate})
    writer.close()
    path = json.loads(stream.getvalue())["audio"]
    with wave.open(path) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (rate, 1, 2)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2") / 32767
    np.testing.assert_allclose(pcm, tone, atol=1 / 32767)


def test_pooled_sentence_vectors_to_npy_equal_sentence_transformers(minilm_path, tmp_path, capsys):
    from sentence_transformers import SentenceTransformer

    texts = ["A man is eating food.", "Stocks fell sharply today.", "A cheetah runs."]
    target = tmp_path / "vectors.npy"
    code = main(["run", "feature-extraction", "--model", str(minilm_path), "--pooling", "auto",
                 "--output", str(target), "--no-progress", *texts])
    assert code == 0, capsys.readouterr().err
    want = SentenceTransformer(str(minilm_path), device="cpu").encode(texts)
    np.testing.assert_allclose(np.load(target), want, atol=2e-5)

    code = main(["run", "feature-extraction", "--model", str(minilm_path), "--pooling", "cls",
                 "--no-progress", texts[0]])
    out, _ = capsys.readouterr()
    assert code == 0 and len(json.loads(out)) == 384

    code = main(["run", "feature-extraction", "--model", str(minilm_path), "--output", str(target),
                 "--no-progress", *texts])
    assert code == 2 and "--pooling" in capsys.readouterr().err  # per-token outputs are not vectors


def test_a_regular_file_on_stdin_gives_the_progress_total(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("one\n\ntwo\nthree\n")
    with open(path) as handle:
        assert count_lines(handle) == 3
        assert handle.readline() == "one\n"  # left where it was
    assert count_lines(io.StringIO("a\nb\n")) is None


def test_a_terminal_without_inputs_is_told_how_to_give_them(tiny_model, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(""))
    code = main(["run", "text-classification", "--model", str(tiny_model("bert", "AutoModelForSequenceClassification",
                                                                        num_labels=2)), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and "end with Ctrl-D" in err and "< inputs.txt" in err
