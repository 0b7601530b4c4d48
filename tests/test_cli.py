"""The `lightpipe` command: run (args, stdin, kwargs, batching), tasks, help, errors.

Most tests call ``lightpipe.cli.main(argv)`` in-process; a few run ``python -m lightpipe``
in a subprocess where the process itself matters (imports, tracebacks, streaming stdin).
"""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys

import pytest

import lightpipe
from lightpipe.cli import main
from lightpipe.pipelines import SUPPORTED_TASKS

TEXTS = ["I love this movie!", "This was terrible and boring.", "Paris is the capital of France."]


@pytest.fixture(scope="module")
def classifier(tiny_model):
    return tiny_model("bert", "AutoModelForSequenceClassification", num_labels=3)


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return tiny_model("bert", "AutoModel")


def run_cli(capsys, monkeypatch, argv: list[str], stdin: str | None = None):
    """main(argv) in-process -> (exit code, stdout JSON lines parsed, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    results = [json.loads(line) for line in out.splitlines()] if code == 0 else out
    return code, results, err


def cli_process(*argv: str, stdin: str | None = None, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "lightpipe", *argv], input=stdin, text=True,
                          capture_output=True, timeout=60, env={**os.environ, **(env or {})})


def assert_same_labels(ours: list, theirs: list) -> None:
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs):
        mine, reference = (mine, reference) if isinstance(mine, list) else ([mine], [reference])
        assert [r["label"] for r in mine] == [r["label"] for r in reference]
        for a, b in zip(mine, reference):
            assert abs(a["score"] - b["score"]) < 1e-5


# --- run ---

def test_run_inputs_match_python_pipeline(capsys, monkeypatch, classifier):
    code, results, _ = run_cli(capsys, monkeypatch, ["run", "text-classification", "--model",
                                                     str(classifier), "--no-progress", *TEXTS])
    assert code == 0
    expected = lightpipe.pipeline("text-classification", model=str(classifier))(list(TEXTS))
    assert all(isinstance(r, dict) for r in results)
    assert {r["label"] for r in results} <= {"LABEL_0", "LABEL_1", "LABEL_2"}
    assert_same_labels(results, expected)


def test_inputs_may_follow_options(capsys, monkeypatch, classifier):
    code, before, _ = run_cli(capsys, monkeypatch, ["run", "sentiment-analysis", *TEXTS,
                                                    "--model", str(classifier)])
    assert code == 0
    code, after, _ = run_cli(capsys, monkeypatch, ["run", "sentiment-analysis", "--model",
                                                   str(classifier), TEXTS[0], "--batch-size",
                                                   "2", *TEXTS[1:]])
    assert code == 0 and len(after) == 3
    assert_same_labels(after, before)


def test_stdin_lines_and_json_pairs_in_order(classifier):
    pair = {"text": "I love it", "text_pair": "It is great"}
    lines = [TEXTS[0], "", json.dumps(pair), "   ", json.dumps("a quoted string"), TEXTS[1]]
    proc = cli_process("run", "text-classification", "--model", str(classifier), "--no-progress",
                       stdin="\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    pipe = lightpipe.pipeline("text-classification", model=str(classifier))
    expected = pipe([TEXTS[0], pair, "a quoted string", TEXTS[1]])
    assert_same_labels(results, expected)
    assert results[1] != pipe(pair["text"])[0]  # the pair was run as a pair, not as its text


def test_stdin_streams_results_before_eof(classifier):
    """With stdin still open, results of the lines read so far are printed and flushed."""
    proc = subprocess.Popen([sys.executable, "-m", "lightpipe", "run", "text-classification",
                             "--model", str(classifier), "--batch-size", "1", "--no-progress"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("".join(f"text number {i}\n" for i in range(16)))  # one window
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no result printed while stdin was open"
        first = json.loads(proc.stdout.readline())
        assert set(first) == {"label", "score"}
        proc.stdin.write("one more\n")
        proc.stdin.close()
        rest = proc.stdout.read().splitlines()
        assert proc.wait(timeout=30) == 0
        assert len(rest) == 16
    finally:
        proc.kill()


def test_batch_size_gives_the_same_results(capsys, monkeypatch, classifier):
    stdin = "\n".join(TEXTS * 3) + "\n"
    base = ["run", "text-classification", "--model", str(classifier)]
    code_one, one, _ = run_cli(capsys, monkeypatch, base + ["--batch-size", "1"], stdin)
    code_four, four, _ = run_cli(capsys, monkeypatch, base + ["--batch-size", "4"], stdin)
    assert code_one == code_four == 0 and len(four) == 9
    assert_same_labels(four, one)
    code, out, err = run_cli(capsys, monkeypatch, base + ["--batch-size", "0", "x"])
    assert code == 2 and "positive integer" in err


def test_kwargs_are_call_arguments(capsys, monkeypatch, classifier):
    code, results, _ = run_cli(capsys, monkeypatch, ["run", "text-classification", "--model",
                                                     str(classifier), "--kwargs",
                                                     '{"top_k": 2, "function_to_apply": "sigmoid"}',
                                                     *TEXTS])
    assert code == 0
    assert all(isinstance(r, list) and len(r) == 2 for r in results)
    pipe = lightpipe.pipeline("text-classification", model=str(classifier))
    assert_same_labels(results, pipe(list(TEXTS), top_k=2, function_to_apply="sigmoid"))
    assert results[0][0]["score"] >= results[0][1]["score"]


def test_feature_extraction_shape(capsys, monkeypatch, encoder):
    code, results, _ = run_cli(capsys, monkeypatch, ["run", "feature-extraction", "--model",
                                                     str(encoder), "hello world", "a b c d e f"])
    assert code == 0 and len(results) == 2
    tokenizer = lightpipe.AutoTokenizer.from_pretrained(str(encoder))
    for text, features in zip(["hello world", "a b c d e f"], results):
        assert len(features) == 1
        assert len(features[0]) == len(tokenizer(text)["input_ids"])
        assert {len(vector) for vector in features[0]} == {32}
    expected = lightpipe.pipeline("feature-extraction", model=str(encoder))("hello world")
    assert abs(results[0][0][1][5] - expected[0][1][5]) < 1e-5


def test_progress_bar_on_stderr(capsys, monkeypatch, classifier):
    argv = ["run", "text-classification", "--model", str(classifier)]
    stdin = "\n".join(TEXTS) + "\n"
    code, results, err = run_cli(capsys, monkeypatch, argv + ["--progress"], stdin)
    assert code == 0 and len(results) == 3
    assert "3 inputs" in err and "inputs/s" in err
    code, _, err = run_cli(capsys, monkeypatch, argv, stdin)  # stderr is not a terminal
    assert code == 0 and "inputs/s" not in err


# --- tasks, help, version ---

def test_tasks_table_lists_every_task(capsys):
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines if line.strip()}
    for name, task in SUPPORTED_TASKS.items():
        assert name in rows, name
        assert task.default[0] in rows[name]
        assert ("ready" if task.available else "not yet") in rows[name]
    assert " ready " in rows["text-classification"] and "sentiment-analysis" in rows["text-classification"]
    assert " ready " in rows["text-to-audio"] and "text-to-speech" in rows["text-to-audio"]


def test_tasks_json(capsys):
    assert main(["tasks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == list(SUPPORTED_TASKS)
    by_name = {row["name"]: row for row in rows}
    assert by_name["text-classification"]["ready"] is True
    assert by_name["text-classification"]["aliases"] == ["sentiment-analysis"]
    assert by_name["depth-estimation"]["ready"] is True
    assert by_name["keypoint-matching"]["ready"] is False


def test_help_and_tasks_do_not_import_torch():
    script = ("import sys, contextlib, io\nfrom lightpipe.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
              "    codes = [main(['--help']), main(['tasks']), main(['run', '--help'])]\n"
              "assert codes == [0, 0, 0], codes\nassert 'TASK' in out.getvalue()\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\nprint('ok')")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_python_m_version_and_help():
    proc = cli_process("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"lightpipe {lightpipe.__version__}"
    proc = cli_process("run", "--help")
    assert proc.returncode == 0 and "--kwargs" in proc.stdout and "--no-progress" in proc.stdout


# --- errors ---

def test_unknown_task_suggests_closest_name_without_traceback():
    proc = cli_process("run", "sentimnt-analysis", "hello")
    assert proc.returncode == 2
    assert proc.stderr.startswith("lightpipe: error: Unknown task 'sentimnt-analysis'")
    assert "Did you mean 'sentiment-analysis'?" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_missing_model_folder(capsys, monkeypatch, tmp_path):
    missing = tmp_path / "no-such-model"
    code, out, err = run_cli(capsys, monkeypatch, ["run", "text-classification", "--model",
                                                   str(missing), "hi"])
    assert code == 2 and out == ""
    assert err.startswith("lightpipe: error:") and "no-such-model" in err


@pytest.mark.parametrize("kwargs, message", [('{"top_k": 2', "--kwargs is not valid JSON"),
                                             ("[1, 2]", "--kwargs must be a JSON object"),
                                             ('{"top_k": 0}', "top_k must be a positive integer")])
def test_bad_kwargs(capsys, monkeypatch, classifier, kwargs, message):
    code, _, err = run_cli(capsys, monkeypatch, ["run", "text-classification", "--model",
                                                 str(classifier), "--kwargs", kwargs, "hi"])
    assert code == 2 and message in err and "Traceback" not in err


def test_bad_json_line_on_stdin(capsys, monkeypatch, classifier):
    code, out, err = run_cli(capsys, monkeypatch, ["run", "text-classification", "--model",
                                                   str(classifier)], "fine\n{not json\n")
    assert code == 2 and "stdin line 2" in err


def test_task_not_built_yet_and_debug_reraises(capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(capsys, monkeypatch, ["run", "keypoint-matching", "x"])
    assert code == 2 and "not implemented in lightpipe yet" in err
    with pytest.raises(lightpipe.UnknownTaskError):
        main(["--debug", "run", "no-such-task", "x"])
    with pytest.raises(lightpipe.UnknownTaskError):
        main(["run", "no-such-task", "--debug", "x"])


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["run"]) == 2
    assert main(["run", "text-classification", "--dtype", "float64", "x"]) == 2
    assert main(["run", "text-classification", "--bogus", "x"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_run_without_model_uses_the_task_default(tmp_path):
    proc = cli_process("run", "sentiment-analysis", "hi",
                       env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})  # an empty cache
    default = SUPPORTED_TASKS["text-classification"].default[0]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"defaulted to {default}" in proc.stderr
    assert f"lightpipe: error: '{default}'" in proc.stderr and "not in the local" in proc.stderr


def test_run_takes_image_and_audio_files(capsys, monkeypatch, vision_model, test_images,
                                         wav2vec2_folder, speech_files):
    """`lightpipe run` with file paths (arguments or stdin lines) for image and audio tasks."""
    vit = str(vision_model("vit", "AutoModelForImageClassification"))
    image = test_images["rgb_jpeg"]
    code, results, err = run_cli(capsys, monkeypatch, ["run", "image-classification", "--model", vit, image])
    assert code == 0, err
    assert results == [lightpipe.pipeline("image-classification", model=vit)(image)]
    asr = str(wav2vec2_folder())
    wav, flac = str(speech_files["wav"]), str(speech_files["flac"])
    code, results, err = run_cli(capsys, monkeypatch, ["run", "automatic-speech-recognition",
                                                       "--model", asr], f"{wav}\n{flac}\n")
    assert code == 0, err
    assert results == lightpipe.pipeline("automatic-speech-recognition", model=asr)([wav, flac])
