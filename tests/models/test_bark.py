"""Bark against the reference: each stage's logits, each stage's generation (greedy, and seeded
sampling where the reference samples) with and without a voice preset, the whole generate()
(stage-prefixed arguments, min_eos_p, output lengths), the BarkProcessor's voice presets, and
the text-to-audio pipeline's audio; tiny random checkpoints off every default."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lightpipe import AutoModel, AutoModelForTextToWaveform, AutoProcessor, pipeline
from lightpipe.errors import InputError
from lightpipe.models.bark import BarkModel
from lightpipe.processing.bark import BarkProcessor

from ..fixtures.bark import SEMANTIC_VOCAB, build_bark, random_preset

transformers = pytest.importorskip("transformers")
TEXT = "hello my dog is cute"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_bark(tmp_path_factory.mktemp("bark") / "tiny")


@pytest.fixture(scope="module")
def models(folder):
    return transformers.BarkModel.from_pretrained(folder).eval(), BarkModel.from_pretrained(folder)


def _their_configs(model):
    from transformers.models.bark import generation_configuration_bark as gen

    settings = model.generation_config
    return (gen.BarkSemanticGenerationConfig(**settings.semantic_config),
            gen.BarkCoarseGenerationConfig(**settings.coarse_acoustics_config),
            gen.BarkFineGenerationConfig(**settings.fine_acoustics_config))


def _text(folder, texts, preset=None):
    """The reference processor's inputs (ids padded to 256, mask, history_prompt)."""
    return transformers.BarkProcessor.from_pretrained(folder)(texts, voice_preset=preset)


def _seeded(seed, call, *args, **kwargs):
    torch.manual_seed(seed)
    with torch.no_grad():
        return call(*args, **kwargs)


def test_stage_logits_equal_reference(models):
    theirs, ours = models
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, SEMANTIC_VOCAB + 30, (2, 19), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 13:] = 0
    with torch.no_grad():
        for name in ("semantic", "coarse_acoustics"):
            want = getattr(theirs, name)(input_ids=ids).logits
            got = getattr(ours, name)(input_ids=ids).logits
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
            want = getattr(theirs, name)(input_ids=ids, attention_mask=mask).logits
            got = getattr(ours, name)(input_ids=ids, attention_mask=mask).logits
            torch.testing.assert_close(got[1, :13], want[1, :13], rtol=1e-4, atol=1e-5)
        codes = torch.randint(0, 17, (2, 16, 4), generator=generator)
        for codebook in (1, 2, 3):
            want = theirs.fine_acoustics(codebook, codes).logits
            got = ours.fine_acoustics(codebook, codes).logits
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="codebook 0"):
        ours.fine_acoustics(0, codes)


@pytest.mark.parametrize("preset", [None, "v2/en_speaker_1"])
def test_each_stage_generates_as_reference(folder, models, preset):
    theirs, ours = models
    inputs = _text(folder, [TEXT, "the cat"], preset)
    history = inputs.get("history_prompt")
    their_sem, their_coarse, their_fine = _their_configs(theirs)
    sem, coarse, fine = ours.stage_configs()
    for settings in ({"do_sample": False}, {"do_sample": True, "temperature": 0.7, "top_k": 7}):
        want = _seeded(3, theirs.semantic.generate, inputs["input_ids"], their_sem, history,
                       inputs["attention_mask"], **settings)
        got = _seeded(3, ours.semantic.generate, inputs["input_ids"], sem, history,
                      inputs["attention_mask"], **settings)
        assert torch.equal(got, want)
        assert got.shape[1] > 4
        want_coarse = _seeded(4, theirs.coarse_acoustics.generate, want.clone(), their_sem,
                              their_coarse, 16, history, True, **settings)
        got_coarse = _seeded(4, ours.coarse_acoustics.generate, want.clone(), sem, coarse, 16,
                             history, True, **settings)
        assert torch.equal(got_coarse[0], want_coarse[0]) and torch.equal(got_coarse[1], want_coarse[1])
        assert got_coarse[0].shape[1] > 2 * coarse.sliding_window_len  # several windows
        for temperature in (None, 1.0, 0.6):  # the fine stage samples unless 1.0 or None
            want_fine = _seeded(5, theirs.fine_acoustics.generate, want_coarse[0], their_sem,
                                their_coarse, their_fine, 16, history, temperature=temperature)
            got_fine = _seeded(5, ours.fine_acoustics.generate, want_coarse[0], sem, coarse, fine,
                               16, history, temperature=temperature)
            assert torch.equal(got_fine, want_fine)
            assert got_fine.shape == (2, 4, want_coarse[0].shape[1] // 2)


def test_voice_preset_and_eos_threshold_change_the_tokens(folder, models):
    theirs, ours = models
    inputs = _text(folder, [TEXT])
    sem = ours.stage_configs()[0]
    plain = _seeded(0, ours.semantic.generate, inputs["input_ids"], sem, do_sample=False)
    voiced = _seeded(0, ours.semantic.generate, inputs["input_ids"], sem,
                     _text(folder, [TEXT], "v2/en_speaker_1")["history_prompt"], do_sample=False)
    assert not torch.equal(plain, voiced)
    their_sem = _their_configs(theirs)[0]
    lengths = []
    for min_eos_p in (0.004, 0.012, 0.5):  # the EOS's probability is ~0.01 at each step
        want = _seeded(0, theirs.semantic.generate, inputs["input_ids"], their_sem,
                       do_sample=False, min_eos_p=min_eos_p)
        got = _seeded(0, ours.semantic.generate, inputs["input_ids"], sem, do_sample=False,
                      min_eos_p=min_eos_p)
        assert torch.equal(got, want)
        lengths.append(got.shape[1])
    assert lengths[0] < lengths[1] < lengths[2] == plain.shape[1]  # the EOS comes earlier


@pytest.mark.parametrize("settings", [
    {"do_sample": False},
    {},  # the generation config's sampling settings
    {"semantic_temperature": 0.5, "coarse_do_sample": False, "fine_temperature": 1.0, "top_k": 9},
    {"return_output_lengths": True, "coarse_temperature": 0.6, "semantic_top_k": 5},
])
def test_generate_audio_equals_reference(folder, models, settings):
    theirs, ours = models
    inputs = _text(folder, [TEXT, "the cat is in my life"], "announcer")
    want = _seeded(7, theirs.generate, **inputs, **settings)
    got = _seeded(7, ours.generate, **inputs, **settings)
    if settings.get("return_output_lengths"):
        assert got[1] == want[1]
        want, got = want[0], got[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert got.dtype == torch.float32 and got.std() > 1e-4


def test_generate_refuses_max_new_tokens_for_every_stage_and_silence(folder, models):
    with pytest.raises(InputError, match="semantic_max_new_tokens"):
        models[1].generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3)
    inputs = _text(folder, [TEXT])  # the EOS's probability passes 0.004 at the first step
    with pytest.raises(InputError, match="ended at once"):
        models[1].generate(**inputs, do_sample=False, min_eos_p=0.004)


def test_auto_classes_and_weights(folder):
    assert type(AutoModel.from_pretrained(folder)) is BarkModel
    model = AutoModelForTextToWaveform.from_pretrained(folder)
    fine = model.fine_acoustics  # heads tied to the next codebook's embeddings, as saved
    assert fine.lm_heads[0].weight is fine.input_embeds_layers[1].weight
    assert model.sampling_rate == 24000


def test_processor_voice_presets(folder, tmp_path):
    ours, theirs = BarkProcessor.from_pretrained(folder), transformers.BarkProcessor.from_pretrained(folder)
    assert sorted(ours.available_voice_presets) == sorted(theirs.available_voice_presets)
    assert type(AutoProcessor.from_pretrained(folder)) is BarkProcessor  # as the reference's
    preset = random_preset(9)
    np.savez(tmp_path / "voice.npz", **preset)
    for voice in ("announcer", str(tmp_path / "voice"), str(tmp_path / "voice.npz"), preset):
        got, want = ours([TEXT, "the dog"], voice_preset=voice), theirs([TEXT, "the dog"], voice_preset=voice)
        assert torch.equal(got["input_ids"], want["input_ids"]) and got["input_ids"].shape[1] == 256
        assert torch.equal(got["attention_mask"], want["attention_mask"])
        for key in ("semantic_prompt", "coarse_prompt", "fine_prompt"):
            assert torch.equal(got["history_prompt"][key], want["history_prompt"][key])
    with pytest.raises(InputError, match="Unknown voice preset 'nobody'"):
        ours(TEXT, voice_preset="nobody")
    with pytest.raises(InputError, match="coarse_prompt must be a 2-D"):
        ours(TEXT, voice_preset={**preset, "coarse_prompt": preset["coarse_prompt"][0]})
    index = json.loads((folder / "speaker_embeddings_path.json").read_text())
    index["evil"] = {key: "../../etc/passwd" for key in ("semantic_prompt", "coarse_prompt", "fine_prompt")}
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "speaker_embeddings_path.json").write_text(json.dumps(index))
    (tmp_path / "evil" / "vocab.txt").write_text((folder / "vocab.txt").read_text())
    (tmp_path / "evil" / "tokenizer_config.json").write_text((folder / "tokenizer_config.json").read_text())
    with pytest.raises(InputError, match="leaves the model's folder"):
        BarkProcessor.from_pretrained(tmp_path / "evil")(TEXT, voice_preset="evil")


@pytest.mark.parametrize("call", [
    {},
    {"generate_kwargs": {"do_sample": False}},
    {"preprocess_params": {"voice_preset": "v2/en_speaker_1"}},
    {"forward_params": {"semantic_temperature": 0.5, "fine_temperature": 1.0},
     "generate_kwargs": {"coarse_do_sample": False}},
])
def test_pipeline_audio_equals_reference(folder, call):
    theirs = transformers.pipeline("text-to-audio", model=str(folder))
    ours = pipeline("text-to-audio", model=str(folder))
    for inputs in (TEXT, [TEXT, "the cat is in my life"]):
        want = _seeded(1, theirs, inputs, **call)
        got = _seeded(1, ours, inputs, **call)
        for mine, reference in zip(*[r if isinstance(r, list) else [r] for r in (got, want)]):
            assert mine["sampling_rate"] == reference["sampling_rate"] == 24000
            assert mine["audio"].dtype == np.float32 and mine["audio"].shape == reference["audio"].shape
            np.testing.assert_allclose(mine["audio"], reference["audio"], rtol=1e-4, atol=1e-5)


def test_pipeline_batches_cut_rows_and_infers_the_task(folder, models):
    theirs, _ = models
    ours = pipeline(model=str(folder))  # the task from the checkpoint: text-to-audio
    texts = [TEXT, "the cat is in my life", "hello"]
    inputs = _text(folder, texts)
    want, lengths = _seeded(2, theirs.generate, **inputs, do_sample=False, fine_temperature=1.0,
                            return_output_lengths=True)
    got = ours(texts, batch_size=3, generate_kwargs={"do_sample": False, "fine_temperature": 1.0})
    for row, (result, length) in enumerate(zip(got, lengths)):
        assert result["audio"].shape == (length,)
        np.testing.assert_allclose(result["audio"], want[row, :length].numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="empty text"):
        ours("  ")


def test_server_answers_bark_audio_as_wav(folder):
    """The server runs Bark through the pipeline's hooks: the voice preset in preprocess_params,
    greedy stages (fine_temperature 1.0: nothing sampled), WAV bytes of the pipeline's audio."""
    import io
    import wave

    from starlette.testclient import TestClient

    from lightpipe.serving import build_settings
    from lightpipe.serving.app import build_app
    from lightpipe.serving.metrics import Metrics
    from lightpipe.serving.state import ServedModel

    settings = build_settings(models=[{"name": "bark", "task": "text-to-audio", "model": str(folder)}])
    pipe, metrics = pipeline("text-to-audio", model=str(folder)), Metrics()
    models = [ServedModel(spec, pipe, None, metrics) for spec in settings.models]
    parameters = {"preprocess_params": {"voice_preset": "announcer"},
                  "generate_kwargs": {"do_sample": False, "fine_temperature": 1.0}}
    want = pipe(TEXT, **parameters)
    with TestClient(build_app(models, settings, metrics)) as client:
        answer = client.post("/v1/pipelines/bark", json={"inputs": TEXT, "response_format": "wav",
                                                          "parameters": parameters})
    assert answer.status_code == 200, answer.text
    with wave.open(io.BytesIO(answer.content)) as read:
        assert read.getframerate() == 24000
        samples = np.frombuffer(read.readframes(read.getnframes()), dtype="<i2")
    assert samples.shape == want["audio"].shape
    np.testing.assert_allclose(samples / 32767.0, want["audio"], atol=1.5 / 32767)
