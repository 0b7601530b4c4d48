"""Parity of lightpipe.tokenization with transformers' AutoTokenizer on the same folders:
the real MiniLM (BERT WordPiece, with and without tokenizer.json), DistilBERT-style configs,
and byte-level BPE tokenizers in RoBERTa and GPT-2 style (with and without tokenizer.json)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError, ModelNotFoundError, RemoteCodeError
from lightpipe.tokenization import AutoTokenizer, BatchEncoding, Tokenizer

FOLDERS = ["minilm", "bert_vocab", "distilbert", "distilbert_type_only", "roberta",
           "roberta_files", "gpt2", "gpt2_files"]
WORDPIECE = {"minilm", "bert_vocab", "distilbert", "distilbert_type_only"}

TEXTS = [
    "Hello world, isn't it? The capital of France is Paris.",
    "Héllo wörld — naïve café, ÀÉÎÕÜ!",
    "東京 and 北京 are cities; 你好世界",
    "emoji 😀🎉 test 👍🏽",
    "",
    "  leading and   trailing spaces  ",
    "The quick brown fox jumps over the lazy dog. " * 4,
    "special [CLS] tokens [SEP] <s> inside </s> text <mask> <|endoftext|> [MASK]",
]
PAIRS = [
    ("What is the capital of France?", "Paris is the capital of France, and a big city."),
    ("short", "a much longer second sequence that keeps going on and on and on and on"),
    ("a first sequence that is clearly longer than the second one here", "tiny"),
    ("", "empty first"),
]


def plain(value):
    """Tensors, arrays and tuples to nested Python lists, for comparisons."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def assert_same(ours, theirs):
    assert list(ours.keys()) == list(theirs.keys())
    for key in theirs.keys():
        assert plain(ours[key]) == plain(theirs[key]), key


def both(ours_fn, theirs_fn):
    """Run the same call on both libraries: equal results, or both refuse (ours with our own
    InputError)."""
    try:
        expected = theirs_fn()
    except Exception:
        with pytest.raises(InputError):
            ours_fn()
        return None
    result = ours_fn()
    assert_same(result, expected)
    return result


@pytest.fixture(scope="session")
def distilbert_type_only_path(distilbert_path, tmp_path_factory):
    """DistilBERT model_type with no tokenizer_class: transformers 5 then uses BertTokenizer."""
    import shutil

    folder = tmp_path_factory.mktemp("distilbert_type_only")
    for path in distilbert_path.iterdir():
        shutil.copy(path, folder / path.name)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["tokenizer_class"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="session")
def load(request):
    """load(name, **kwargs) -> (ours, reference), each loaded once per session."""
    cache = {}

    def load_pair(name, **kwargs):
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            path = request.getfixturevalue(f"{name}_path")
            cache[key] = (AutoTokenizer.from_pretrained(path, **kwargs),
                          transformers.AutoTokenizer.from_pretrained(path, **kwargs))
        return cache[key]

    return load_pair


# --- encoding -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", FOLDERS)
def test_single_texts_and_batch(load, name):
    ours, theirs = load(name)
    extras = dict(return_offsets_mapping=True, return_special_tokens_mask=True,
                  return_length=True)
    for text in TEXTS:
        out = both(lambda: ours(text, **extras), lambda: theirs(text, **extras))
        assert all(isinstance(i, int) for i in out["input_ids"])  # one text: flat lists
        assert ours.tokenize(text) == theirs.tokenize(text)
        assert ours.encode(text) == theirs.encode(text)
    batch = both(lambda: ours(TEXTS, **extras), lambda: theirs(TEXTS, **extras))
    assert isinstance(batch, BatchEncoding) and len(batch["input_ids"]) == len(TEXTS)
    assert_same(ours(TEXTS, add_special_tokens=False), theirs(TEXTS, add_special_tokens=False))


@pytest.mark.parametrize("name", FOLDERS)
def test_text_pairs(load, name):
    ours, theirs = load(name)
    firsts, seconds = zip(*PAIRS)
    both(lambda: ours(list(firsts), list(seconds), return_offsets_mapping=True,
                      return_token_type_ids=True),
         lambda: theirs(list(firsts), list(seconds), return_offsets_mapping=True,
                        return_token_type_ids=True))
    both(lambda: ours(list(PAIRS)), lambda: theirs(list(PAIRS)))  # a list of (a, b) tuples
    for first, second in PAIRS:
        out = both(lambda: ours(first, second), lambda: theirs(first, second))
        assert out["input_ids"]
    assert ours.num_special_tokens_to_add(pair=True) == theirs.num_special_tokens_to_add(True)
    assert ours.num_special_tokens_to_add() == theirs.num_special_tokens_to_add()


@pytest.mark.parametrize("name", FOLDERS)
def test_padding(load, name):
    ours, theirs = load(name)
    for kwargs in [dict(padding=True), dict(padding="longest", pad_to_multiple_of=8),
                   dict(padding=True, padding_side="left", return_special_tokens_mask=True),
                   dict(padding="max_length", max_length=16, truncation=True)]:
        out = both(lambda: ours(TEXTS, **kwargs), lambda: theirs(TEXTS, **kwargs))
        assert len({len(row) for row in out["input_ids"]}) == 1
    # max_length padding without truncation leaves longer rows as they are
    out = both(lambda: ours(TEXTS, padding="max_length", max_length=48),
               lambda: theirs(TEXTS, padding="max_length", max_length=48))
    assert min(len(row) for row in out["input_ids"]) == 48
    pairs = both(lambda: ours(*map(list, zip(*PAIRS)), padding=True),
                 lambda: theirs(*map(list, zip(*PAIRS)), padding=True))
    assert len({len(row) for row in pairs["attention_mask"]}) == 1


@pytest.mark.parametrize("name", FOLDERS)
def test_truncation_strategies(load, name):
    ours, theirs = load(name)
    firsts, seconds = map(list, zip(*PAIRS))
    for truncation in [True, "longest_first", "only_first", "only_second", False]:
        for max_length in (9, 14):
            kwargs = dict(truncation=truncation, max_length=max_length)
            both(lambda: ours(firsts, seconds, **kwargs), lambda: theirs(firsts, seconds, **kwargs))
            for first, second in PAIRS:
                both(lambda: ours(first, second, **kwargs),
                     lambda: theirs(first, second, **kwargs))
    # max_length alone turns truncation on, as in transformers
    out = both(lambda: ours(TEXTS, max_length=6), lambda: theirs(TEXTS, max_length=6))
    assert max(len(row) for row in out["input_ids"]) == 6


@pytest.mark.parametrize("name", FOLDERS)
def test_overflow_windows_with_stride(load, name):
    ours, theirs = load(name)
    kwargs = dict(truncation=True, max_length=12, stride=3, return_overflowing_tokens=True,
                  return_offsets_mapping=True, padding=True)
    out = both(lambda: ours(TEXTS, **kwargs), lambda: theirs(TEXTS, **kwargs))
    assert len(out["overflow_to_sample_mapping"]) > len(TEXTS)  # long texts gave windows
    single = both(lambda: ours(TEXTS[6], **kwargs), lambda: theirs(TEXTS[6], **kwargs))
    assert set(single["overflow_to_sample_mapping"]) == {0}
    # question answering windows: truncate the context only
    qa = dict(kwargs, truncation="only_second", max_length=20, stride=4)
    questions = ["What is the capital?", "Who jumps?"]
    contexts = [TEXTS[0] * 2, TEXTS[6]]
    out = both(lambda: ours(questions, contexts, **qa), lambda: theirs(questions, contexts, **qa))
    for row in range(len(out["input_ids"])):
        assert out.sequence_ids(row) == theirs(questions, contexts, **qa).sequence_ids(row)


@pytest.mark.parametrize("name", ["minilm", "roberta", "gpt2"])
@pytest.mark.parametrize("tensors", ["pt", "np"])
def test_return_tensors(load, name, tensors):
    ours, theirs = load(name)
    out = both(lambda: ours(TEXTS, padding=True, return_tensors=tensors,
                            return_offsets_mapping=True),
               lambda: theirs(TEXTS, padding=True, return_tensors=tensors,
                              return_offsets_mapping=True))
    kind = torch.Tensor if tensors == "pt" else np.ndarray
    assert all(isinstance(value, kind) for value in out.values())
    assert out["input_ids"].dtype == (torch.int64 if tensors == "pt" else np.int64)
    single = both(lambda: ours(TEXTS[0], return_tensors=tensors),
                  lambda: theirs(TEXTS[0], return_tensors=tensors))
    assert single["input_ids"].shape[0] == 1 and single["input_ids"].ndim == 2
    assert_same(ours(TEXTS[0]), theirs(TEXTS[0]))  # None: plain lists
    assert isinstance(ours(TEXTS[0])["input_ids"], list)


@pytest.mark.parametrize("name", FOLDERS)
def test_split_into_words(load, name):
    ours, theirs = load(name)
    words = [["Hello", "world", "naïve", "café"], ["東京", "😀", "jumps", "over"], ["x"]]
    out = both(lambda: ours(words, is_split_into_words=True, padding=True),
               lambda: theirs(words, is_split_into_words=True, padding=True))
    ref = theirs(words, is_split_into_words=True, padding=True)
    for row in range(len(words)):
        assert out.word_ids(row) == ref.word_ids(row)
    single = both(lambda: ours(words[0], is_split_into_words=True),
                  lambda: theirs(words[0], is_split_into_words=True))
    assert isinstance(single["input_ids"][0], int)


@pytest.mark.parametrize("name", FOLDERS)
def test_decode(load, name):
    ours, theirs = load(name)
    batch = theirs(TEXTS, padding=True)["input_ids"]
    for ids in batch:
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == \
                theirs.decode(ids, skip_special_tokens=skip)
        assert ours.decode(ids, clean_up_tokenization_spaces=True) == \
            theirs.decode(ids, clean_up_tokenization_spaces=True)
        assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
        assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == \
            theirs.convert_ids_to_tokens(ids, skip_special_tokens=True)
    expected = theirs.batch_decode(batch, skip_special_tokens=True)
    assert ours.batch_decode(batch, skip_special_tokens=True) == expected
    assert ours.batch_decode(torch.tensor(batch), skip_special_tokens=True) == expected
    assert ours.decode(np.array(batch), skip_special_tokens=True) == expected  # 2-D -> list
    assert ours.decode(torch.tensor(batch[0])) == theirs.decode(batch[0])
    assert ours.decode(batch[0][1]) == theirs.decode(batch[0][1])  # a single id


@pytest.mark.parametrize("name", FOLDERS)
def test_vocabulary_and_special_tokens(load, name):
    ours, theirs = load(name)
    assert ours.get_vocab() == theirs.get_vocab()
    assert ours.vocab_size == theirs.vocab_size and len(ours) == len(theirs)
    assert ours.model_input_names == theirs.model_input_names
    assert ours.model_max_length == theirs.model_max_length
    assert ours.padding_side == theirs.padding_side
    assert ours.clean_up_tokenization_spaces == theirs.clean_up_tokenization_spaces
    for attr in ["pad_token", "cls_token", "sep_token", "mask_token", "unk_token", "bos_token",
                 "eos_token"]:
        assert getattr(ours, attr) == getattr(theirs, attr), attr
        assert getattr(ours, attr + "_id") == getattr(theirs, attr + "_id"), attr
    assert ours.all_special_tokens == theirs.all_special_tokens
    assert ours.all_special_ids == theirs.all_special_ids
    assert ours.special_tokens_map == theirs.special_tokens_map
    tokens = ["hello", "world", "[CLS]", "<s>", "not-a-token-at-all"]
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids("hello") == theirs.convert_tokens_to_ids("hello")
    expect_types = name in {"minilm", "bert_vocab", "distilbert_type_only"}
    assert ("token_type_ids" in ours("x")) is expect_types


def test_from_pretrained_overrides(load):
    ours, theirs = load("minilm", model_max_length=16, padding_side="left")
    assert ours.model_max_length == 16 and ours.padding_side == "left"
    out = both(lambda: ours(TEXTS, padding=True, truncation=True),
               lambda: theirs(TEXTS, padding=True, truncation=True))
    assert len(out["input_ids"][0]) == 16 and out["attention_mask"][4][0] == 0
    both(lambda: ours(TEXTS, padding="max_length"), lambda: theirs(TEXTS, padding="max_length"))
    ours_ws, theirs_ws = load("roberta", add_prefix_space=True)
    words = [["Hello", "world"], ["quick", "brown", "fox"]]
    both(lambda: ours_ws(words, is_split_into_words=True, padding=True),
         lambda: theirs_ws(words, is_split_into_words=True, padding=True))
    both(lambda: ours_ws(TEXTS[0]), lambda: theirs_ws(TEXTS[0]))
    assert ours_ws(TEXTS[0])["input_ids"] != load("roberta")[0](TEXTS[0])["input_ids"]


@pytest.fixture(scope="session")
def generic_path(gpt2_path, tmp_path_factory):
    """The GPT-2 tokenizer.json under the generic class (TokenizersBackend in transformers 5),
    with an add_bos_token in its config that a tokenizer.json makes transformers ignore."""
    import shutil

    folder = tmp_path_factory.mktemp("generic")
    for path in gpt2_path.iterdir():
        shutil.copy(path, folder / path.name)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="PreTrainedTokenizerFast", add_bos_token=True)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("kwargs", [{}, {"add_bos_token": True, "add_eos_token": True}])
def test_generic_tokenizer_json(load, kwargs):
    ours, theirs = load("generic", **kwargs)
    assert type(theirs).__name__ == "TokenizersBackend"
    firsts, seconds = map(list, zip(*PAIRS))
    out = both(lambda: ours(firsts, seconds, return_token_type_ids=True, padding=True),
               lambda: theirs(firsts, seconds, return_token_type_ids=True, padding=True))
    assert (out["input_ids"][0][0] == ours.bos_token_id) is bool(kwargs)
    both(lambda: ours(TEXTS, return_offsets_mapping=True),
         lambda: theirs(TEXTS, return_offsets_mapping=True))


def test_padding_baked_into_tokenizer_json(generic_path, tmp_path):
    """A tokenizer.json's own padding settings supply the pad token and side defaults."""
    import shutil

    for path in generic_path.iterdir():
        shutil.copy(path, tmp_path / path.name)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    del config["pad_token"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    backend = json.loads((tmp_path / "tokenizer.json").read_text())
    backend["padding"] = {"strategy": "BatchLongest", "direction": "Left",
                          "pad_to_multiple_of": None, "pad_id": 1, "pad_type_id": 0,
                          "pad_token": "<pad>"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(backend))
    ours = AutoTokenizer.from_pretrained(tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert (ours.pad_token, ours.padding_side) == (theirs.pad_token, theirs.padding_side) == \
        ("<pad>", "left")
    both(lambda: ours(TEXTS, padding=True), lambda: theirs(TEXTS, padding=True))
    both(lambda: ours(TEXTS), lambda: theirs(TEXTS))  # no padding unless asked


def test_setting_special_tokens(gpt2_path):
    import copy
    import pickle

    ours = AutoTokenizer.from_pretrained(gpt2_path, pad_token=None)
    theirs = transformers.AutoTokenizer.from_pretrained(gpt2_path, pad_token=None)
    assert ours.pad_token is None and ours.pad_token_id is None
    ours.pad_token = ours.eos_token
    theirs.pad_token = theirs.eos_token
    both(lambda: ours(TEXTS, padding=True), lambda: theirs(TEXTS, padding=True))
    ours.pad_token_id = 3
    assert ours.pad_token == ours.convert_ids_to_tokens(3) and ours.pad_token_id == 3
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert clone(TEXTS, padding=True)["input_ids"] == ours(TEXTS, padding=True)["input_ids"]


def test_unlimited_model_max_length(load):
    ours, theirs = load("roberta")
    assert ours.model_max_length == theirs.model_max_length > 10**29
    # truncation=True without max_length and no real limit: nothing is cut
    both(lambda: ours(TEXTS, truncation=True), lambda: theirs(TEXTS, truncation=True))
    both(lambda: ours(TEXTS, padding="max_length"), lambda: theirs(TEXTS, padding="max_length"))


@pytest.mark.parametrize("name", ["minilm", "roberta", "gpt2"])
def test_pad_collate(load, name):
    ours, theirs = load(name)
    rows = [dict(theirs(text, return_special_tokens_mask=True)) for text in TEXTS[:5]]
    both(lambda: ours.pad(rows), lambda: theirs.pad(rows))
    both(lambda: ours.pad(rows, padding="max_length", max_length=40, return_tensors="pt"),
         lambda: theirs.pad(rows, padding="max_length", max_length=40, return_tensors="pt"))
    both(lambda: ours.pad(rows, pad_to_multiple_of=8, padding_side="left"),
         lambda: theirs.pad(rows, pad_to_multiple_of=8, padding_side="left"))
    ids_only = [{"input_ids": row["input_ids"]} for row in rows]
    out = both(lambda: ours.pad(ids_only, return_tensors="np"),
               lambda: theirs.pad(ids_only, return_tensors="np"))
    assert out["attention_mask"].sum() == sum(len(row["input_ids"]) for row in rows)
    def tensors():  # a fresh dict per call: the reference converts its input in place
        return {"input_ids": [torch.tensor(row["input_ids"]) for row in rows]}

    out = both(lambda: ours.pad(tensors()), lambda: theirs.pad(tensors()))
    assert isinstance(out["input_ids"], torch.Tensor)


# --- chat templates -----------------------------------------------------------------------

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Unknown role: ' + message['role']) }}{% endif %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] | trim }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if tools %}<|tools|>{{ tools | tojson }}\n{% endif %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CHAT = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Héllo, what's the capital of France? 😀"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And \"Japan\" <tag>?", "name": None}]


@pytest.fixture(scope="session")
def chat_pair(gpt2_path, tmp_path_factory):
    import shutil

    folder = tmp_path_factory.mktemp("chat")
    for path in gpt2_path.iterdir():
        shutil.copy(path, folder / path.name)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(chat_template=CHAT_TEMPLATE, bos_token="<s>", eos_token="</s>")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


def test_chat_template_matches_reference(chat_pair):
    ours, theirs = chat_pair
    for prompt in (False, True):
        text = ours.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=prompt)
        assert text == theirs.apply_chat_template(CHAT, tokenize=False,
                                                  add_generation_prompt=prompt)
        assert text.startswith("<s><|system|>\nYou are terse.</s>")
        assert text.endswith("<|assistant|>\n") is prompt
        ids = ours.apply_chat_template(CHAT, add_generation_prompt=prompt, return_dict=False)
        assert ids == theirs.apply_chat_template(CHAT, add_generation_prompt=prompt,
                                                 return_dict=False)
        # transformers 5's default is return_dict=True: a BatchEncoding
        default = ours.apply_chat_template(CHAT, add_generation_prompt=prompt)
        reference = theirs.apply_chat_template(CHAT, add_generation_prompt=prompt)
        assert dict(default) == dict(reference) and default["input_ids"] == ids
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Wetter ☀",
                                               "parameters": {"type": "object"}}}]
    assert ours.apply_chat_template(CHAT, tools=tools, tokenize=False) == \
        theirs.apply_chat_template(CHAT, tools=tools, tokenize=False)
    batch = [CHAT, CHAT[:2]]
    texts = ours.apply_chat_template(batch, tokenize=False)
    assert isinstance(texts, list) and texts == theirs.apply_chat_template(batch, tokenize=False)
    out = ours.apply_chat_template(batch, padding=True, return_tensors="pt", return_dict=True)
    assert_same(out, theirs.apply_chat_template(batch, padding=True, return_tensors="pt",
                                                return_dict=True))
    prefill = CHAT[:2] + [{"role": "assistant", "content": "The capital is"}]
    assert ours.apply_chat_template(prefill, tokenize=False, continue_final_message=True) == \
        theirs.apply_chat_template(prefill, tokenize=False, continue_final_message=True)
    # a template passed by the caller, and the template's own error
    custom = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    assert ours.apply_chat_template(CHAT, chat_template=custom, tokenize=False) == \
        theirs.apply_chat_template(CHAT, chat_template=custom, tokenize=False)
    with pytest.raises(Exception, match="Unknown role: robot"):
        ours.apply_chat_template([{"role": "robot", "content": "beep"}], tokenize=False)


def test_chat_template_is_sandboxed(chat_pair):
    ours, _ = chat_pair
    escape = "{{ messages.__class__.__mro__ }}"
    with pytest.raises(Exception, match="unsafe|__class__"):
        ours.apply_chat_template(CHAT, chat_template=escape, tokenize=False)


def test_no_chat_template_error(load):
    ours, _ = load("minilm")
    with pytest.raises(InputError, match="no chat template.*chat_template="):
        ours.apply_chat_template(CHAT)


# --- saving -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["minilm", "bert_vocab", "distilbert", "roberta_files",
                                  "gpt2_files"])
def test_save_pretrained_round_trip(load, name, tmp_path):
    ours, theirs = load(name)
    ours.save_pretrained(tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= \
        {path.name for path in tmp_path.iterdir()}
    again = Tokenizer.from_folder(tmp_path)
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(reference).__name__ == type(theirs).__name__
    firsts, seconds = map(list, zip(*PAIRS))
    for tokenizer in (again, reference):
        assert_same(tokenizer(TEXTS, padding=True, return_offsets_mapping=True),
                    theirs(TEXTS, padding=True, return_offsets_mapping=True))
        assert_same(tokenizer(firsts, seconds), theirs(firsts, seconds))
        assert tokenizer.all_special_tokens == theirs.all_special_tokens
        assert tokenizer.model_max_length == theirs.model_max_length


def test_save_pretrained_keeps_chat_template(chat_pair, tmp_path):
    ours, theirs = chat_pair
    ours.save_pretrained(tmp_path)
    assert (tmp_path / "chat_template.jinja").read_text() == CHAT_TEMPLATE
    for tokenizer in (AutoTokenizer.from_pretrained(tmp_path),
                      transformers.AutoTokenizer.from_pretrained(tmp_path)):
        assert tokenizer.apply_chat_template(CHAT, tokenize=False) == \
            theirs.apply_chat_template(CHAT, tokenize=False)


# --- BatchEncoding ------------------------------------------------------------------------

def test_batch_encoding_api(load):
    ours, theirs = load("minilm")
    text = "Hello world, naïve café!"
    enc = ours([text, "x"], padding=True, return_tensors="pt")
    ref = theirs([text, "x"], padding=True)
    assert torch.equal(enc.input_ids, enc["input_ids"]) and enc.data.keys() == enc.keys()
    assert list(enc.keys()) == ["input_ids", "token_type_ids", "attention_mask"]
    assert enc.to("cpu") is enc and enc.input_ids.device.type == "cpu"
    assert len(enc.encodings) == 2 and enc[0].ids == ref[0].ids
    assert enc.tokens(0) == ref.tokens(0) and enc.word_ids(0) == ref.word_ids(0)
    assert enc.sequence_ids(1) == ref.sequence_ids(1)
    for char in range(len(text)):
        assert enc.char_to_token(char) == ref.char_to_token(char)
        assert enc.char_to_token(0, char) == ref.char_to_token(0, char)
        assert enc.char_to_word(char) == ref.char_to_word(char)
    assert enc.token_to_chars(2) == tuple(ref.token_to_chars(2))
    assert enc.word_to_tokens(1) == tuple(ref.word_to_tokens(1))
    assert enc.token_to_word(1, 1) == ref.token_to_word(1, 1)
    with pytest.raises(AttributeError):
        enc.no_such_key
    model_inputs = dict(**enc)
    assert set(model_inputs) == {"input_ids", "token_type_ids", "attention_mask"}


def test_import_does_not_load_torch():
    code = ("import sys, lightpipe.tokenization; "
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "False"]
    assert lightpipe.AutoTokenizer is AutoTokenizer


def test_special_tokenizers_import_from_the_package_and_the_old_paths():
    import importlib

    from lightpipe.tokenization import SPECIAL_TOKENIZERS

    for name, target in SPECIAL_TOKENIZERS.items():
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        assert module.startswith("lightpipe.tokenization.") and cls.__name__ == name
        short = module.rpartition(".")[2]
        if short in ("whisper", "ctc", "spm", "tapas", "clip"):  # modules that had a top-level path
            assert getattr(importlib.import_module(f"lightpipe.tokenization_{short}"), attr) is cls


# --- errors -------------------------------------------------------------------------------

def test_missing_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="tokenizer.json.*vocab.txt.*merges.txt"):
        AutoTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ModelNotFoundError):
        AutoTokenizer.from_pretrained(tmp_path / "missing-folder")


def test_remote_code_refused(minilm_path):
    with pytest.raises(RemoteCodeError):
        AutoTokenizer.from_pretrained(minilm_path, trust_remote_code=True)


@pytest.mark.parametrize("bad", [123, None, [1, 2], {"text": "x"}, [["a"], "b"]])
def test_non_string_input(load, bad):
    ours, _ = load("minilm")
    with pytest.raises(InputTypeError, match=type(bad).__name__):
        ours(bad)


def test_unequal_lengths_need_padding(load):
    ours, theirs = load("minilm")
    for tensors in ("pt", "np"):
        with pytest.raises(InputError, match="padding=True"):
            ours(["short", "a longer text than the first"], return_tensors=tensors)
    with pytest.raises(ValueError):  # ours is also a ValueError, like the reference's
        ours(["short", "a longer text"], return_tensors="pt")


def test_bad_arguments(load):
    ours, _ = load("gpt2", pad_token=None)
    with pytest.raises(InputError, match="no padding token"):
        ours(["a", "bb"], padding=True)
    ours, _ = load("minilm")
    with pytest.raises(InputError, match="padding"):
        ours("x", padding="sideways")
    with pytest.raises(InputError, match="return_tensors"):
        ours("x", return_tensors="tf")
    with pytest.raises(InputError):
        ours(["a", "b"], ["only one"])
    with pytest.raises(InputError, match="only_second"):
        ours(TEXTS[6], truncation="only_second", max_length=5)


@pytest.mark.parametrize("ids", [[-1], ["a"], [1.5], 3.5, [[1, -2]]])
def test_decode_refuses_what_are_not_token_ids(ids):
    """Negative, text or float ids are a clear error naming them, not an OverflowError or a
    TypeError from inside the tokenizers library."""
    from pathlib import Path

    folder = Path(__file__).parent / "golden" / "zoo" / "v5.25" / "gpt2"
    tokenizer = lightpipe.AutoTokenizer.from_pretrained(folder)
    with pytest.raises(InputError, match="token ids"):
        tokenizer.decode(ids)
