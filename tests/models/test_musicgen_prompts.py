"""MusicGen audio prompts and several samples per prompt, against the reference: the
processor's input_values / padding_mask (mono and stereo), generate() continuing an audio
prompt (with a text, without one, with guidance; mono and stereo), the codes it hands EnCodec,
batch_decode cutting the padding; seeded sampling with num_return_sequences > 1 (generate and
the pipeline); clear errors for bad audio prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lightpipe
from lightpipe.errors import InputError
from lightpipe.models.musicgen import MusicgenForConditionalGeneration

from ..fixtures.musicgen import build_musicgen, their_codes

transformers = pytest.importorskip("transformers")

TEXTS = ["The quick brown fox", "Paris is the capital and largest city of France."]
RATE = 1200


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("musicgen_prompts")
    return {
        # the codec's first bandwidth gives 4 quantizers: as many as the decoder's codebooks
        "mono": build_musicgen(root / "mono", seed=2, codec={"target_bandwidths": [4.8, 9.6]},
                               decoder={"num_codebooks": 4, "activation_function": "relu"}),
        # stereo: 2 quantizers per channel, left and right interleaved in 4 codebooks
        "stereo": build_musicgen(root / "stereo", seed=3, decoder={"audio_channels": 2, "num_codebooks": 4}),
    }


@pytest.fixture(scope="module")
def models(folders):
    return {name: (transformers.MusicgenForConditionalGeneration.from_pretrained(folder).eval(),
                   MusicgenForConditionalGeneration.from_pretrained(folder))
            for name, folder in folders.items()}


@pytest.fixture(scope="module")
def processors(folders, tmp_path_factory):
    """The reference's MusicgenProcessor (saved) and ours loaded from its folder."""
    out = {}
    for name, folder in folders.items():
        channels = 2 if name == "stereo" else 1
        theirs = transformers.MusicgenProcessor(
            feature_extractor=transformers.EncodecFeatureExtractor(sampling_rate=RATE, feature_size=channels),
            tokenizer=transformers.AutoTokenizer.from_pretrained(folder))
        path = tmp_path_factory.mktemp(f"processor_{name}")
        theirs.save_pretrained(path)
        out[name] = (theirs, lightpipe.AutoProcessor.from_pretrained(path))
    return out


def _audio(channels: int, lengths=(50, 37), seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (lambda n: (n,)) if channels == 1 else (lambda n: (2, n))
    return [rng.standard_normal(shape(n)).astype(np.float32) for n in lengths]


def _inputs(processors, name, with_text=True):
    theirs, ours = processors[name]
    kwargs = {"audio": _audio(2 if name == "stereo" else 1), "sampling_rate": RATE, "padding": True,
              "return_tensors": "pt"}
    if with_text:
        kwargs["text"] = TEXTS
    want, got = theirs(**kwargs), ours(**kwargs)
    assert sorted(got) == sorted(want)
    for key in want:
        assert torch.equal(torch.as_tensor(got[key]), torch.as_tensor(want[key])), key
    assert want["padding_mask"].min() == 0  # a padded batch
    return dict(want)


@pytest.mark.parametrize("name,with_text,guidance", [("mono", True, None), ("mono", True, 3.0),
                                                     ("mono", False, None), ("mono", False, 2.0),
                                                     ("stereo", True, 3.0)])
def test_audio_prompt_codes_and_audio_equal_reference(models, processors, name, with_text, guidance):
    theirs, ours = models[name]
    inputs = _inputs(processors, name, with_text)
    settings = {"do_sample": False, "max_new_tokens": 6, "guidance_scale": guidance}
    want, want_codes = their_codes(theirs, **inputs, **settings)
    out = ours.generate(**inputs, **settings, return_dict_in_generate=True)
    codes = out.audio_codes
    if name == "stereo":  # the reference decodes left, then right
        codes = torch.cat([codes[:, ::2], codes[:, 1::2]], 1)
    assert torch.equal(codes, want_codes)
    # the prompt's 9 frames (50 samples, hop 6) come back, then the new ones (less the delay)
    assert want_codes.shape[-1] == 9 + 1 + 6 - (4 if name == "mono" else 2)
    torch.testing.assert_close(out.sequences, want, rtol=1e-4, atol=1e-5)
    assert want.std() > 1e-4
    # batch_decode cuts each row's padding (the second prompt is 13 samples shorter)
    their_processor, our_processor = processors[name]
    if name == "mono":
        cut_want = their_processor.batch_decode(want, padding_mask=inputs["padding_mask"])
    else:  # the reference's batch_decode fails on stereo audio: each channel cut by the mask
        with pytest.raises(IndexError):
            their_processor.batch_decode(want, padding_mask=inputs["padding_mask"])
        keep = torch.cat([inputs["padding_mask"], torch.ones(2, want.shape[-1] - 50, dtype=torch.long)], 1)
        cut_want = [row[:, keep[i] == 1] for i, row in enumerate(want.numpy())]
    cut_got = our_processor.batch_decode(out.sequences, padding_mask=inputs["padding_mask"])
    assert [a.shape[-1] for a in cut_got] == [np.asarray(b).shape[-1] for b in cut_want]
    assert cut_got[0].shape[-1] - cut_got[1].shape[-1] == 13
    for a, b in zip(cut_got, cut_want):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)


def test_audio_prompt_changes_the_codes(models, processors):
    _, ours = models["mono"]
    inputs = _inputs(processors, "mono")
    text_only = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    settings = {"do_sample": False, "max_new_tokens": 6, "return_dict_in_generate": True}
    plain = ours.generate(**text_only, **settings).audio_codes
    prompted = ours.generate(**inputs, **settings).audio_codes
    assert plain.shape[-1] == 6 + 1 - 4 and prompted.shape[-1] > plain.shape[-1]
    assert not torch.equal(prompted[..., -plain.shape[-1]:], plain)


@pytest.mark.parametrize("with_audio,guidance", [(False, None), (False, 3.0), (True, 2.5)])
def test_seeded_num_return_sequences_equals_reference(models, processors, with_audio, guidance):
    theirs, ours = models["mono"]
    inputs = _inputs(processors, "mono")
    if not with_audio:
        inputs = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    settings = {"do_sample": True, "max_new_tokens": 7, "top_k": 16, "num_return_sequences": 3,
                "guidance_scale": guidance}
    torch.manual_seed(7)
    want, want_codes = their_codes(theirs, **inputs, **settings)
    torch.manual_seed(7)
    out = ours.generate(**inputs, **settings, return_dict_in_generate=True)
    assert torch.equal(out.audio_codes, want_codes)
    # the reference's layout: each text's samples one after the other in time
    single = (9 if with_audio else 0) + 1 + 7 - 4
    assert want_codes.shape == (2, 4, 3 * single)
    torch.testing.assert_close(out.sequences, want, rtol=1e-4, atol=1e-5)
    samples = want_codes.reshape(2, 4, 3, single)
    assert not torch.equal(samples[:, :, 0], samples[:, :, 1])  # sampled apart


def test_pipeline_num_return_sequences_equals_reference(folders):
    theirs = transformers.pipeline("text-to-audio", model=str(folders["mono"]))
    ours = lightpipe.pipeline("text-to-audio", model=folders["mono"])
    params = {"forward_params": {"do_sample": True, "max_new_tokens": 6, "num_return_sequences": 2}}
    for texts in (TEXTS[0], TEXTS):
        torch.manual_seed(11)
        want = theirs(texts, **params)
        torch.manual_seed(11)
        got = ours(texts, **params)
        if isinstance(texts, str):
            want, got = [want], [got]
        assert len(got) == len(want) == (1 if isinstance(texts, str) else 2)
        for a, b in zip(got, want):
            assert set(a) == set(b) == {"audio", "sampling_rate"}
            assert a["audio"].shape == b["audio"].shape == (2 * (6 + 1 - 4) * 6,)  # one row, two samples
            np.testing.assert_allclose(a["audio"], b["audio"], rtol=1e-4, atol=1e-5)


def test_bad_audio_prompts_give_clear_errors(models, processors):
    _, ours = models["mono"]
    _, processor = processors["mono"]
    with pytest.raises(InputError, match="sampled at 1200 Hz.*sampling_rate=16000"):
        processor(audio=_audio(1)[0], text=TEXTS[0], sampling_rate=16000)
    with pytest.raises(InputError, match="empty"):
        processor(audio=np.zeros(0, np.float32), sampling_rate=RATE)
    text = processor(text=TEXTS, padding=True, return_tensors="pt")
    with pytest.raises(InputError, match="non-empty"):
        ours.generate(**text, input_values=torch.zeros(2, 1, 0), max_new_tokens=3)
    with pytest.raises(InputError, match="2 channel.*mono"):
        ours.generate(**text, input_values=torch.zeros(2, 2, 30), max_new_tokens=3)
    with pytest.raises(InputError, match="as many audio prompts as texts"):
        ours.generate(**text, input_values=torch.randn(3, 1, 30), max_new_tokens=3)
    _, stereo = models["stereo"]
    with pytest.raises(InputError, match="stereo"):
        stereo.generate(**text, input_values=torch.randn(2, 1, 30), max_new_tokens=3)
