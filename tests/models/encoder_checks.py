"""Checks shared by the encoder families' tests (MPNet, DeBERTa-v2/v3, ELECTRA): a tiny random
checkpoint saved by the reference next to a tokenizer, and comparisons with the reference of a
model's outputs, a pipeline's results, a tokenizer and the Auto classes' dispatch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers

import lightpipe

from ..conftest import _spread_head, assert_outputs_close
from .test_encoders import OUTPUT_KEYS

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt")
# Pipeline inputs that reach every text path: a pair, accents, an unknown emoji, one word.
TEXTS = ["I love this movie, it is wonderful!", "Paris is the capital of France.",
         "Hugging Face models run in lightpipe; naïve café résumé 🙂.", "ok"]
QUESTIONS = {"question": ["Where do models run?", "What is the capital of France?"],
             "context": "Hugging Face models run in lightpipe. Paris is the capital of France, "
                        "and the weather today is sunny with a chance of rain."}


def save_checkpoint(folder: Path, tokenizer: Path, model_type: str, head: str,
                    **config) -> Path:
    """A random ``head`` (an Auto class or a model class name of the reference) saved by the
    reference into ``folder``, with the tokenizer files of ``tokenizer``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (tokenizer / name).is_file():
            shutil.copy(tokenizer / name, folder / name)
    vocab = json.loads((tokenizer / "tokenizer.json").read_text())["model"]["vocab"]
    settings = {"vocab_size": len(vocab), **config}
    reference_config = transformers.AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(0)
    cls = getattr(transformers, head)
    model = cls.from_config(reference_config) if head.startswith("Auto") else cls(reference_config)
    _spread_head(model)
    model.save_pretrained(folder)
    return folder


def checkpoints(tmp_path_factory, tokenizer: Path, model_type: str):
    """``build(head, **config)`` -> a folder, cached per arguments (for a module fixture)."""
    cache: dict = {}

    def build(head: str = "AutoModel", **config) -> Path:
        key = (head, json.dumps(config, sort_keys=True))
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"{model_type}_{head}")
            cache[key] = save_checkpoint(folder, tokenizer, model_type, head, **config)
        return cache[key]

    return build


def load_pair(folder: Path, head: str, ours_class=None):
    """(ours, reference) for ``head``: an Auto class name, or a reference class name with our
    class passed as ``ours_class``."""
    ours = (ours_class or getattr(lightpipe, head)).from_pretrained(folder)
    theirs = getattr(transformers, head).from_pretrained(folder).eval()
    return ours, theirs


def assert_model_matches(folder: Path, head: str, batch: dict, ours_class=None,
                         keys: list[str] | None = None) -> None:
    """Same class name; same outputs and hidden states on the real tokens of a padded batch,
    and on its first row alone without a mask."""
    ours, theirs = load_pair(folder, head, ours_class)
    assert type(ours).__name__ == type(theirs).__name__
    mask = batch["attention_mask"].bool()
    alone = {name: value[:1, : int(mask[0].sum())] for name, value in batch.items()
             if name != "attention_mask"}
    with torch.inference_mode():
        got = ours(**batch, output_hidden_states=True)
        want = theirs(**batch, output_hidden_states=True)
        got_alone, want_alone = ours(**alone), theirs(**alone)
    for key in keys or OUTPUT_KEYS[head]:
        assert_real_tokens_close(got[key], want[key], mask)
        torch.testing.assert_close(got_alone[key], want_alone[key], rtol=1e-4, atol=1e-5)
    assert len(got.hidden_states) == len(want.hidden_states)
    for mine, reference in zip(got.hidden_states, want.hidden_states):
        assert_real_tokens_close(mine, reference, mask)


def assert_real_tokens_close(got: torch.Tensor, want: torch.Tensor, mask: torch.Tensor) -> None:
    """Values at padding positions are arbitrary in both; only real tokens count."""
    if want.dim() >= 2 and want.shape[:2] == mask.shape:
        got, want = got[mask], want[mask]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def assert_pipeline_matches(task: str, folder: Path, inputs, calls: list[dict],
                            batch_size: int = 2) -> None:
    """Our ``task`` pipeline against the reference's: one input, and the list batched."""
    ours = lightpipe.pipeline(task, model=str(folder))
    theirs = transformers.pipeline(task, model=str(folder))
    for kwargs in calls:
        assert_outputs_close(ours(inputs[0], **kwargs), python(theirs(inputs[0], **kwargs)))
        assert_outputs_close(ours(inputs, batch_size=batch_size, **kwargs),
                             python(theirs(inputs, **kwargs)))


def python(value):
    """The reference's numpy scalars (token-classification scores) as Python numbers: ours
    are Python floats, and the comparison checks their types."""
    if isinstance(value, dict):
        return {key: python(item) for key, item in value.items()}
    if isinstance(value, list):
        return [python(item) for item in value]
    return value.item() if isinstance(value, np.generic) else value


def assert_question_answering_matches(folder: Path, calls: list[dict]) -> None:
    """transformers 5 has no question-answering pipeline: ours runs our model and the
    reference's, and both answer alike (a failure points at the model, not the pipeline)."""
    reference = transformers.AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    ours = lightpipe.pipeline("question-answering", model=str(folder))
    theirs = lightpipe.pipeline("question-answering", model=reference, tokenizer=str(folder))
    for kwargs in calls:
        assert_outputs_close(ours(**QUESTIONS, **kwargs), theirs(**QUESTIONS, **kwargs))


def assert_dispatch(folder: Path, head: str, task: str, tokenizer: str) -> None:
    """The Auto classes and pipeline() pick what the reference picks for this checkpoint."""
    for auto in ("AutoModel", head):
        want = type(getattr(transformers, auto).from_pretrained(folder)).__name__
        assert type(getattr(lightpipe, auto).from_pretrained(folder)).__name__ == want
    assert lightpipe.pipeline(model=str(folder)).task == task
    assert type(lightpipe.AutoTokenizer.from_pretrained(folder)).__name__ == tokenizer


def assert_tokenizer_matches(folder: Path, texts: list[str], pair: str = "a second   text") -> None:
    """Ids, type ids, masks, offsets, word and sequence ids, and decoding as the reference's."""
    ours = lightpipe.AutoTokenizer.from_pretrained(folder)
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    assert sorted(ours.model_input_names) == sorted(theirs.model_input_names)
    for text in texts:
        for args in ((text,), (text, pair)):
            got = ours(*args, return_offsets_mapping=True)
            want = theirs(*args, return_offsets_mapping=True)
            assert dict(got) == dict(want), args
            assert got.word_ids() == want.word_ids() and got.sequence_ids() == want.sequence_ids()
            for skip in (False, True):
                assert ours.decode(got["input_ids"], skip_special_tokens=skip) == \
                    theirs.decode(want["input_ids"], skip_special_tokens=skip)
