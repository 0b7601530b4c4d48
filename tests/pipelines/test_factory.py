"""pipeline(): task names and aliases, defaults, devices, dtypes and the errors around them."""

from __future__ import annotations

import logging

import pytest
import torch

import lightpipe
from lightpipe.errors import ModelNotFoundError, UnknownTaskError, UnsupportedModelError
from lightpipe.pipelines import SUPPORTED_TASKS, TASK_ALIASES, check_task

HEAD = "AutoModelForSequenceClassification"


def test_unknown_task_lists_tasks_and_suggests_the_closest():
    with pytest.raises(UnknownTaskError) as info:
        lightpipe.pipeline("sentimnt-analysis", model="unused")
    message = str(info.value)
    assert "Did you mean 'sentiment-analysis'" in message
    assert "text-classification" in message and "feature-extraction" in message
    with pytest.raises(KeyError):  # what a transformers user would catch
        lightpipe.pipeline("no-such-task")


def test_every_reference_task_is_in_the_table():
    import transformers.pipelines as reference

    for task in reference.SUPPORTED_TASKS:
        if task not in ("any-to-any", "decision"):
            assert task in SUPPORTED_TASKS, task
    for alias, task in reference.TASK_ALIASES.items():
        assert TASK_ALIASES[alias] == task
    # the 4.x tasks transformers 5 dropped are kept
    for task in ("question-answering", "summarization", "translation", "text2text-generation",
                 "image-to-text", "visual-question-answering", "image-to-image"):
        assert task in SUPPORTED_TASKS
    assert check_task("translation_en_to_fr") == ("translation", SUPPORTED_TASKS["translation"],
                                                  {"src_lang": "en", "tgt_lang": "fr"})


def test_task_not_built_yet_says_so(tiny_model):
    with pytest.raises(UnsupportedModelError, match="not implemented in lightpipe yet.*text-classification"):
        lightpipe.pipeline("keypoint-matching", model=tiny_model("bert", HEAD))


def test_default_model_is_named_in_a_warning(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="lightpipe"):
        with pytest.raises(ModelNotFoundError, match="distilbert-base-uncased-finetuned-sst-2-english.*HF_HUB_OFFLINE"):
            lightpipe.pipeline("sentiment-analysis")
    assert "defaulted to distilbert/distilbert-base-uncased-finetuned-sst-2-english" in caplog.text


def test_needs_a_task_or_a_model():
    with pytest.raises(ValueError, match="task, a model"):
        lightpipe.pipeline()


@pytest.mark.parametrize("dtype", [torch.bfloat16, "bfloat16", "float16"])
def test_dtype(tiny_model, dtype):
    clf = lightpipe.pipeline("text-classification", model=tiny_model("bert", HEAD), dtype=dtype)
    expected = dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype)
    assert clf.model.dtype == expected and clf.dtype == expected
    assert isinstance(clf("hello world")[0]["score"], float)


def test_model_kwargs_and_device_map(tiny_model):
    clf = lightpipe.pipeline("text-classification", model=tiny_model("bert", HEAD), device_map="auto",
                             model_kwargs={"dtype": torch.bfloat16})
    assert clf.model.dtype == torch.bfloat16
    assert clf.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        lightpipe.pipeline("text-classification", model=tiny_model("bert", HEAD), device="tpu:7")


def test_batch_size_validation(tiny_model):
    clf = lightpipe.pipeline("text-classification", model=tiny_model("bert", HEAD), batch_size=4)
    assert len(clf(["a", "b", "c", "d", "e"])) == 5
    with pytest.raises(ValueError, match="batch_size"):
        clf(["a"], batch_size=0)


def test_task_inferred_for_every_modality(whisper_folder, wav2vec2_folder, vision_model):
    """pipeline(model=folder) with no task: the task the checkpoint's architecture (and family)
    serves, as the Hub's pipeline_tag would name it."""
    from pathlib import Path

    golden = Path(__file__).resolve().parents[1] / "golden" / "seq2seq"
    cases = [(whisper_folder(), "automatic-speech-recognition"),
             (wav2vec2_folder(), "automatic-speech-recognition"),
             (wav2vec2_folder("AutoModelForAudioClassification"), "audio-classification"),
             (vision_model("vit", "AutoModelForImageClassification"), "image-classification"),
             (vision_model("vit", "AutoModel"), "image-feature-extraction"),
             (vision_model("detr", "AutoModelForObjectDetection"), "object-detection"),
             (vision_model("clip", "AutoModel"), "zero-shot-image-classification"),
             (golden / "bart", "text2text-generation"), (golden / "opus-mt-en-de", "translation")]
    for folder, task in cases:
        assert lightpipe.pipeline(model=str(folder)).task == task, folder
