"""`lightpipe tasks --families` (issue 17: "`lightpipe tasks` shows them"): per task, the model
families (config.json model_type) that serve it, derived from the family registry and each
family's HEADS. Checked against the reference: every family listed for a task is one that
transformers' Auto class for that task's head maps too; families added to the registry appear
with no other change; families whose head serves a more specific task stay out."""

from __future__ import annotations

import json
import sys

import pytest

from lightpipe.cli import main
from lightpipe.families import FAMILIES, Family
from lightpipe.pipelines import SUPPORTED_TASKS

_RENAMED = {"AutoModelForVision2Seq": "AutoModelForImageTextToText"}


@pytest.fixture(scope="module")
def table():
    """{task: [model_type, ...]} as `lightpipe tasks --families --json` prints it."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["tasks", "--families", "--json"]) == 0
    rows = json.loads(out.getvalue())
    assert [row["name"] for row in rows] == list(SUPPORTED_TASKS)
    return {row["name"]: row["families"] for row in rows}


def test_every_ready_task_has_families_and_the_others_none(table):
    for name, task in SUPPORTED_TASKS.items():
        assert bool(table[name]) == task.available, name
        assert all(model_type in FAMILIES for model_type in table[name])
        assert len(set(table[name])) == len(table[name])


def test_families_agree_with_the_reference_auto_classes(table):
    """Each (task, family) we list: transformers' Auto class for one of the task's heads maps
    that model_type as well (so the reference's pipeline loads such a checkpoint too)."""
    transformers = pytest.importorskip("transformers")
    for name, model_types in table.items():
        mapped: set[str] = set()
        for head in SUPPORTED_TASKS[name].heads:
            # transformers 5 merged AutoModelForVision2Seq into AutoModelForImageTextToText
            auto = getattr(transformers, head, None) or getattr(transformers, _RENAMED.get(head, ""), None)
            if auto is not None:
                mapped |= set(auto._model_mapping._model_mapping)
        assert mapped, name
        strays = [t for t in model_types if t not in mapped]
        assert not strays, f"{name}: {strays} are not served by the reference's {SUPPORTED_TASKS[name].heads}"


def test_specific_hints_and_modalities_are_respected(table):
    assert "vits" in table["text-to-audio"] and "sam" in table["mask-generation"]
    assert "clap" in table["zero-shot-audio-classification"]
    # a family's hint wins over its head's generic task
    assert "clip" in table["zero-shot-image-classification"]
    assert "clip" not in table["image-feature-extraction"] and "clip" not in table["feature-extraction"]
    assert "marian" in table["translation"] and "marian" not in table["summarization"]
    assert "tapas" in table["table-question-answering"] and "tapas" not in table["question-answering"]
    assert "layoutlm" in table["document-question-answering"]
    assert "llava" in table["image-text-to-text"] and "llava" not in table["image-to-text"]
    assert "llava_onevision" in table["image-text-to-text"]
    vlms = [t for t, f in FAMILIES.items() if f.tasks.get("AutoModelForVision2Seq") == "image-text-to-text"]
    assert vlms and not set(vlms) & set(table["image-to-text"])
    # heads shared by tasks of the same kind: NLI classifiers, seq2seq LMs
    assert set(table["text-classification"]) <= set(table["zero-shot-classification"])
    assert {"t5", "bart"} <= set(table["summarization"]) & set(table["translation"])
    # modality: an audio family's sequence classifier classifies audio, not text
    assert "wav2vec2" in table["audio-classification"] and "wav2vec2" not in table["text-classification"]
    assert "vit" in table["image-feature-extraction"] and "vit" not in table["feature-extraction"]
    assert "mask-generation" not in [t for t, f in table.items() if "vit" in f]


def test_a_family_added_to_the_registry_appears(monkeypatch):
    from lightpipe.pipelines.task_families import task_families

    monkeypatch.setitem(FAMILIES, "my-bert", Family("bert"))
    monkeypatch.setitem(FAMILIES, "my-voice", Family("vits", tasks={"AutoModel": "text-to-audio"}))
    monkeypatch.setitem(FAMILIES, "broken", Family("no_such_module"))
    derived = task_families()
    for name in ("text-classification", "fill-mask", "feature-extraction", "question-answering"):
        assert "my-bert" in derived[name]
    assert "my-voice" in derived["text-to-audio"] and "my-voice" not in derived["feature-extraction"]
    assert not any("broken" in families for families in derived.values())


def test_text_table_prints_families_under_each_task(capsys):
    assert main(["tasks", "--families"]) == 0
    lines = capsys.readouterr().out.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("text-to-audio "))
    assert lines[index + 1].startswith("    families: ") and "vits" in lines[index + 1]
    index = next(i for i, line in enumerate(lines) if line.startswith("keypoint-matching "))
    assert not lines[index + 1].startswith("    families:")  # not built: nothing listed
    assert main(["tasks", "--json"]) == 0  # without the flag: no families (and no torch needed)
    assert all("families" not in row for row in json.loads(capsys.readouterr().out))


def test_vision_language_checkpoints_infer_image_text_to_text():
    """A LLaVA-OneVision checkpoint's ...ForConditionalGeneration is image-text-to-text (it
    used to be inferred as text2text-generation)."""
    from lightpipe.pipelines import _infer_task

    for model_type, architecture in (("llava", "LlavaForConditionalGeneration"),
                                     ("llava_onevision", "LlavaOnevisionForConditionalGeneration")):
        config = {"model_type": model_type, "architectures": [architecture]}
        assert _infer_task(config) == "image-text-to-text"
    assert _infer_task({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]}) == \
        "text2text-generation"
    assert sys.modules.get("lightpipe.pipelines.task_families") is not None
