"""MusicGen against the reference: decoder logits; greedy codes and audio with and without
classifier-free guidance (mono and stereo, padded batches, no projection when the widths
agree); seeded sampling (equal to the reference's, and reproducible); the text-to-audio
pipeline's audio (forward_params / generate_kwargs, lists, batches, the default length and
the generation config's); the processor; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lightpipe
from lightpipe.errors import InputError
from lightpipe.models.musicgen import MusicgenForConditionalGeneration, delay_pattern
from lightpipe.processing.encodec import MusicgenProcessor

from ..fixtures.musicgen import build_musicgen, set_generation, their_codes

transformers = pytest.importorskip("transformers")

TEXTS = ["The quick brown fox", "Paris is the capital and largest city of France."]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("musicgen")
    return {
        "mono": build_musicgen(root / "mono", generation={"do_sample": True, "guidance_scale": 2.5,
                                                          "top_k": 12, "max_length": 15}),
        # stereo (left/right codebooks interleaved), decoder as wide as the text: no projection
        "stereo": build_musicgen(root / "stereo", seed=1, text={"d_model": 32, "d_kv": 8, "num_heads": 4},
                                 decoder={"audio_channels": 2, "num_codebooks": 6, "scale_embedding": True,
                                          "activation_function": "relu"}),
    }


@pytest.fixture(scope="module")
def pairs(folders):
    return {name: (transformers.MusicgenForConditionalGeneration.from_pretrained(folder).eval(),
                   MusicgenForConditionalGeneration.from_pretrained(folder))
            for name, folder in folders.items()}


def _text(folder):
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return tokenizer(TEXTS, padding=True, return_tensors="pt")


@pytest.mark.parametrize("name", ["mono", "stereo"])
def test_logits_equal_reference(folders, pairs, name):
    theirs, ours = pairs[name]
    inputs = _text(folders[name])
    assert inputs["attention_mask"].min() == 0  # a padded batch
    books = ours.decoder.num_codebooks
    decoder_ids = torch.randint(0, 65, (2 * books, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = theirs(**inputs, decoder_input_ids=decoder_ids).logits
        got = ours(**inputs, decoder_input_ids=decoder_ids).logits
    assert got.shape == want.shape == (2 * books, 6, 64)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert want.std() > 0.1


def test_delay_pattern_equals_reference(pairs):
    theirs, _ = pairs["mono"]
    for channels, books in ((1, 4), (2, 6)):
        theirs.decoder.config.audio_channels = channels
        theirs.decoder.num_codebooks = books
        prompt = torch.randint(0, 64, (2 * books, 3), generator=torch.Generator().manual_seed(books))
        for max_length in (4, 9, 12):
            want = theirs.decoder.build_delay_pattern_mask(prompt, 64, max_length)
            got = delay_pattern(prompt, books, channels, 64, max_length)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    theirs.decoder.config.audio_channels, theirs.decoder.num_codebooks = 1, 4


@pytest.mark.parametrize("name", ["mono", "stereo"])
@pytest.mark.parametrize("guidance", [None, 3.0])
def test_greedy_codes_and_audio_equal_reference(folders, pairs, name, guidance):
    theirs, ours = pairs[name]
    settings = {"do_sample": False, "max_new_tokens": 10}
    if guidance:
        settings["guidance_scale"] = guidance
    inputs = _text(folders[name])
    want, want_codes = their_codes(theirs, **inputs, **settings)
    out = ours.generate(**inputs, **settings, return_dict_in_generate=True)
    channels = 2 if name == "stereo" else 1
    codes = out.audio_codes
    if channels == 2:  # the reference decodes left, then right
        codes = torch.cat([codes[:, ::2], codes[:, 1::2]], 1)
    assert torch.equal(codes, want_codes)
    assert want.shape[:2] == (2, channels)
    torch.testing.assert_close(out.sequences, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.generate(**inputs, **settings), want, rtol=1e-4, atol=1e-5)
    assert want.std() > 1e-4


def test_unconditional_generation_equals_reference(pairs):
    theirs, ours = pairs["mono"]
    want = theirs.generate(**theirs.get_unconditional_inputs(2), do_sample=False, max_new_tokens=6)
    got = ours.generate(**ours.get_unconditional_inputs(2), do_sample=False, max_new_tokens=6)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_guidance_changes_the_codes(folders, pairs):
    _, ours = pairs["mono"]
    inputs = _text(folders["mono"])
    plain = ours.generate(**inputs, do_sample=False, max_new_tokens=10, return_dict_in_generate=True)
    guided = ours.generate(**inputs, do_sample=False, max_new_tokens=10, guidance_scale=3.0,
                           return_dict_in_generate=True)
    assert not torch.equal(plain.audio_codes, guided.audio_codes)


@pytest.mark.parametrize("guidance", [None, 3.0])
def test_seeded_sampling_equals_reference_and_repeats(folders, pairs, guidance):
    theirs, ours = pairs["mono"]
    inputs = _text(folders["mono"])
    settings = {"do_sample": True, "max_new_tokens": 10, "top_k": 20, "temperature": 0.8,
                "guidance_scale": guidance}
    torch.manual_seed(3)
    want = theirs.generate(**inputs, **settings)
    torch.manual_seed(3)
    got = ours.generate(**inputs, **settings)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.manual_seed(3)
    again = ours.generate(**inputs, **settings)
    assert torch.equal(again, got)
    torch.manual_seed(4)
    assert not torch.equal(ours.generate(**inputs, **settings), got)


def _pipes(folder):
    return (transformers.pipeline("text-to-audio", model=str(folder)),
            lightpipe.pipeline("text-to-audio", model=folder))


def _same_audio(got, want):
    assert set(got) == set(want) == {"audio", "sampling_rate"}
    assert got["sampling_rate"] == want["sampling_rate"] == 1200
    assert got["audio"].dtype == want["audio"].dtype == np.float32
    assert got["audio"].shape == want["audio"].shape
    np.testing.assert_allclose(got["audio"], want["audio"], rtol=1e-4, atol=1e-5)


def test_pipeline_equals_reference(folders):
    theirs, ours = _pipes(folders["mono"])
    for forward_params in ({"do_sample": False, "max_new_tokens": 9},
                           {"do_sample": False},  # the generation config's max_length
                           {"do_sample": False, "guidance_scale": 1.0, "max_new_tokens": 7}):
        _same_audio(ours(TEXTS[0], forward_params=forward_params),
                    theirs(TEXTS[0], forward_params=forward_params))
    torch.manual_seed(5)  # sampled, guided (the generation config's), a list
    want = theirs(TEXTS, forward_params={"max_new_tokens": 8})
    torch.manual_seed(5)
    got = ours(TEXTS, forward_params={"max_new_tokens": 8})
    for a, b in zip(got, want):
        _same_audio(a, b)
    settings = {"generate_kwargs": {"do_sample": False, "max_new_tokens": 8}, "batch_size": 2}
    for a, b in zip(ours(TEXTS, **settings), theirs(TEXTS, **settings)):  # a padded batch
        _same_audio(a, b)


def test_pipeline_stereo_and_default_length(folders, tmp_path):
    theirs, ours = _pipes(folders["stereo"])
    want = theirs(TEXTS[1], forward_params={"max_new_tokens": 6})
    assert want["audio"].shape[0] == 2  # (channels, samples)
    _same_audio(ours(TEXTS[1], forward_params={"max_new_tokens": 6}), want)
    # no length anywhere: the pipeline's default of 256 new tokens
    theirs, ours = _pipes(folders["mono"])
    set_generation(folders["mono"], max_length=None)
    try:
        theirs, ours = _pipes(folders["mono"])
        torch.manual_seed(0)
        want = theirs(TEXTS[0])
        torch.manual_seed(0)
        got = ours(TEXTS[0])
    finally:
        set_generation(folders["mono"], max_length=15)
    assert want["audio"].shape == ((256 + 1 - 4) * 6,)
    _same_audio(got, want)


def test_processor_equals_reference(folders, tmp_path):
    their_processor = transformers.MusicgenProcessor(
        feature_extractor=transformers.EncodecFeatureExtractor(sampling_rate=1200),
        tokenizer=transformers.AutoTokenizer.from_pretrained(folders["mono"]))
    their_processor.save_pretrained(tmp_path)
    ours = lightpipe.AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(ours, MusicgenProcessor)
    want = their_processor(text=TEXTS, padding=True, return_tensors="pt")
    got = ours(text=TEXTS, padding=True, return_tensors="pt")
    for key in ("input_ids", "attention_mask"):
        assert torch.equal(got[key], want[key])
    audio = torch.randn(2, 1, 12, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1] * 8 + [0] * 2, [1] * 10])
    want = their_processor.batch_decode(audio, padding_mask=mask)
    got = ours.batch_decode(audio, padding_mask=mask)
    assert [a.shape for a in got] == [np.asarray(b).shape for b in want] == [(1, 10), (1, 12)]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_auto_classes_and_task(folders):
    model = lightpipe.AutoModelForTextToWaveform.from_pretrained(folders["mono"])
    assert isinstance(model, MusicgenForConditionalGeneration)
    assert lightpipe.pipeline(model=folders["mono"]).task == "text-to-audio"


def test_clear_errors(folders, pairs):
    _, ours = pairs["mono"]
    inputs = _text(folders["mono"])
    with pytest.raises(InputError, match="gives 2 codebooks.*decoder reads 4"):  # audio prompts:
        ours.generate(**inputs, input_values=torch.zeros(2, 1, 30), max_new_tokens=4)  # see _prompts.py
    with pytest.raises(ValueError, match="num_beams=1"):
        ours.generate(**inputs, num_beams=2, max_new_tokens=4)
    with pytest.raises(ValueError, match="not used by the model"):
        ours.generate(**inputs, max_new_tokns=4)
    with pytest.raises(InputError, match="tokenized text"):
        ours.generate(max_new_tokens=4)
    pipe = lightpipe.pipeline("text-to-audio", model=folders["mono"])
    with pytest.raises(InputError, match="empty text"):
        pipe("  ")
