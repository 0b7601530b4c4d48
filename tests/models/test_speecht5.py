"""SpeechT5 text-to-speech against the reference on a tiny random checkpoint: the character
tokenizer and processor, the teacher-forced forward, generate_speech (seeded: the prenet's
dropout stays on at inference), the text-to-audio pipeline with a HiFi-GAN vocoder (one text,
a list, batches), and clear errors for bad input."""

from __future__ import annotations

import pytest
import torch

import lightpipe
from lightpipe import AutoModelForTextToSpectrogram, AutoProcessor, AutoTokenizer
from lightpipe.errors import InputError
from lightpipe.models.speecht5 import SpeechT5ForTextToSpeech
from lightpipe.processing.speecht5 import SpeechT5Processor
from lightpipe.tokenization.speecht5 import SpeechT5Tokenizer

transformers = pytest.importorskip("transformers")
sentencepiece = pytest.importorskip("sentencepiece")

SPEAKER_DIM = 16
TEXTS = ["the quick brown fox", "hello", "speech synthesis, with a longer text here!"]


@pytest.fixture(scope="module")
def speecht5(tmp_path_factory):
    """(model folder, vocoder folder, reference model, reference vocoder)."""
    root = tmp_path_factory.mktemp("speecht5")
    corpus = root / "corpus.txt"
    corpus.write_text("hello world this is a test\nthe quick brown fox jumps over the lazy dog\n"
                      "speech synthesis, with punctuation!\n" * 3)
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(root / "spm_char"), model_type="char", bos_id=0,
        pad_id=1, eos_id=2, unk_id=3, character_coverage=1.0, minloglevel=2)
    # As microsoft/speecht5_tts: <mask> and <ctc_blank> after the SentencePiece vocabulary.
    tokenizer = transformers.SpeechT5Tokenizer(str(root / "spm_char.model"), mask_token="<mask>")
    tokenizer.add_tokens(["<ctc_blank>"])
    config = transformers.SpeechT5Config(
        vocab_size=40, hidden_size=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=4, encoder_ffn_dim=48,
        decoder_ffn_dim=40, num_mel_bins=12, speech_decoder_prenet_units=24,
        speaker_embedding_dim=SPEAKER_DIM, speech_decoder_postnet_units=20,
        speech_decoder_postnet_layers=3, speech_decoder_prenet_dropout=0.3,
        encoder_max_relative_position=4, reduction_factor=3, max_text_positions=64,
        max_speech_positions=300, layer_norm_eps=1e-6, hidden_act="relu")
    torch.manual_seed(0)
    model = transformers.SpeechT5ForTextToSpeech(config).eval()
    with torch.no_grad():  # off the init: positions scaled, batch-norm statistics, rare stops
        for name, param in model.named_parameters():
            if name.endswith("alpha"):
                param.fill_(0.7)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
        model.speech_decoder_postnet.prob_out.bias.fill_(-2.5)
        torch.manual_seed(0)
        model.speech_decoder_postnet.prob_out.weight.normal_(0.0, 0.15)
    folder = root / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    transformers.SpeechT5FeatureExtractor(do_normalize=True).save_pretrained(folder)
    vocoder_config = transformers.SpeechT5HifiGanConfig(
        model_in_dim=12, upsample_initial_channel=16, upsample_rates=[2, 3],
        upsample_kernel_sizes=[4, 6], resblock_kernel_sizes=[3, 5],
        resblock_dilation_sizes=[[1, 2], [1, 3]], sampling_rate=12000)
    torch.manual_seed(1)
    vocoder = transformers.SpeechT5HifiGan(vocoder_config).eval()
    vocoder.save_pretrained(root / "vocoder")
    return folder, root / "vocoder", model, vocoder


def test_tokenizer_and_processor_equal_reference(speecht5):
    folder = speecht5[0]
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    ours = AutoTokenizer.from_pretrained(folder)
    assert isinstance(ours, SpeechT5Tokenizer)
    for text in ["Hello world", " a<s>b </s> zq", "Ünïcode x", "the  lazy dog!",
                 "a<mask>b <ctc_blank>c"]:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
        assert ours.tokenize(text) == theirs.tokenize(text)
    ids = theirs("hello <mask>world<ctc_blank>")["input_ids"]
    assert ours.decode(ids) == theirs.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    assert dict(ours(TEXTS, padding=True)) == dict(theirs(TEXTS, padding=True))
    assert ours.bos_token_id == theirs.bos_token_id and len(ours) == len(theirs)
    assert ours.mask_token_id == theirs.mask_token_id
    ours.save_pretrained(folder.parent / "saved")  # read back by the reference
    again = transformers.AutoTokenizer.from_pretrained(folder.parent / "saved")
    assert again("a<mask>b <ctc_blank>c")["input_ids"] == theirs("a<mask>b <ctc_blank>c")["input_ids"]

    processor = AutoProcessor.from_pretrained(folder)
    reference = transformers.AutoProcessor.from_pretrained(folder)
    assert isinstance(processor, SpeechT5Processor)
    assert dict(processor(text=TEXTS[0])) == dict(reference(text=TEXTS[0]))
    audio = [torch.randn(50).numpy(), torch.randn(30).numpy()]
    got = processor(audio=audio, padding=True, sampling_rate=16000, return_tensors="np")
    want = reference(audio=audio, padding=True, sampling_rate=16000, return_tensors="np")
    torch.testing.assert_close(torch.as_tensor(got["input_values"]),
                               torch.as_tensor(want["input_values"]), rtol=1e-5, atol=1e-6)
    assert (got["attention_mask"] == want["attention_mask"]).all()
    with pytest.raises(InputError, match="normalize=True"):
        ours("it costs 5 dollars", normalize=True)


def _batch(tokenizer, texts):
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    return encoded["input_ids"], encoded["attention_mask"]


def test_forward_equals_reference(speecht5):
    folder, _, theirs, _ = speecht5
    ours = AutoModelForTextToSpectrogram.from_pretrained(folder)
    assert type(ours) is SpeechT5ForTextToSpeech
    ids, mask = _batch(AutoTokenizer.from_pretrained(folder), TEXTS)
    assert not mask.all()  # padded rows
    speakers = torch.randn(3, SPEAKER_DIM)
    frames = torch.randn(3, 5, 12)
    with torch.no_grad():
        torch.manual_seed(3)
        want = theirs(input_ids=ids, attention_mask=mask, decoder_input_values=frames,
                      speaker_embeddings=speakers)
        torch.manual_seed(3)
        got = ours(input_ids=ids, attention_mask=mask, decoder_input_values=frames,
                   speaker_embeddings=speakers)
    torch.testing.assert_close(got.spectrogram, want.spectrogram, rtol=1e-4, atol=1e-5)
    real = mask.bool()
    torch.testing.assert_close(got.encoder_last_hidden_state[real],
                               want.encoder_last_hidden_state[real], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threshold", [0.35, 0.4])
def test_generate_speech_equals_reference(speecht5, threshold):
    folder, _, theirs, vocoder = speecht5
    ours = AutoModelForTextToSpectrogram.from_pretrained(folder)
    ids, mask = _batch(AutoTokenizer.from_pretrained(folder), TEXTS)
    torch.manual_seed(1)
    speakers = torch.randn(3, SPEAKER_DIM)
    # One text: the spectrogram (frames, bins), through the vocoder too.
    single = ids[:1, :int(mask[0].sum())]
    for vocoder_arg in (None, vocoder):
        torch.manual_seed(5)
        want = theirs.generate_speech(single, speakers[:1], threshold=threshold, vocoder=vocoder_arg)
        torch.manual_seed(5)
        got = ours.generate_speech(single, speakers[:1], threshold=threshold, vocoder=vocoder_arg)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # A padded batch, a speaker per row, each row's length (rows stop at different steps).
    torch.manual_seed(7)
    want, want_lengths = theirs.generate(ids, attention_mask=mask, speaker_embeddings=speakers,
                                         threshold=threshold, return_output_lengths=True)
    torch.manual_seed(7)
    got, got_lengths = ours.generate(ids, attention_mask=mask, speaker_embeddings=speakers,
                                     threshold=threshold, return_output_lengths=True)
    assert got_lengths == want_lengths and len(set(want_lengths)) > 1
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # One speaker for the whole batch.
    torch.manual_seed(8)
    want = theirs.generate(ids, attention_mask=mask, speaker_embeddings=speakers[:1],
                           threshold=threshold)
    torch.manual_seed(8)
    got = ours.generate(ids, attention_mask=mask, speaker_embeddings=speakers[:1],
                        threshold=threshold)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # min / max length ratios.
    torch.manual_seed(9)
    want = theirs.generate_speech(ids, speakers, mask, threshold=threshold, minlenratio=0.5,
                                  maxlenratio=2.0)
    torch.manual_seed(9)
    got = ours.generate_speech(ids, speakers, mask, threshold=threshold, minlenratio=0.5,
                               maxlenratio=2.0)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_pipeline_with_vocoder_equals_reference(speecht5):
    folder, vocoder_folder, _, vocoder = speecht5
    theirs = transformers.pipeline("text-to-audio", model=str(folder), vocoder=vocoder)
    ours = lightpipe.pipeline("text-to-audio", model=folder, vocoder=str(vocoder_folder))
    torch.manual_seed(1)
    params = {"speaker_embeddings": torch.randn(3, SPEAKER_DIM)[1:2], "threshold": 0.4}
    torch.manual_seed(0)
    want = theirs(TEXTS[0], forward_params=params)
    torch.manual_seed(0)
    got = ours(TEXTS[0], forward_params=params)
    assert got["sampling_rate"] == want["sampling_rate"] == 12000
    assert got["audio"].dtype == want["audio"].dtype and got["audio"].shape == want["audio"].shape
    torch.testing.assert_close(torch.as_tensor(got["audio"]), torch.as_tensor(want["audio"]),
                               rtol=1e-4, atol=1e-6)
    # (The reference mis-splits a last batch of one text, so the batches here are full.)
    texts = TEXTS + ["a lazy dog"]
    lengths = set()
    for batch_size in (1, 2):
        torch.manual_seed(1)
        want = theirs(texts, forward_params=params, batch_size=batch_size)
        torch.manual_seed(1)
        got = ours(texts, forward_params=params, batch_size=batch_size)
        assert len(got) == len(want) == 4
        for row_got, row_want in zip(got, want):
            # In a batch the reference pads every row to the longest; ours are cut to their own.
            size = len(row_got["audio"])
            lengths.add(size)
            assert size <= len(row_want["audio"])
            torch.testing.assert_close(torch.as_tensor(row_got["audio"]),
                                       torch.as_tensor(row_want["audio"][:size]), rtol=1e-4, atol=1e-6)
    assert len(lengths) > 1  # the texts' audio differ in length


def test_bad_input_gets_clear_errors(speecht5, monkeypatch):
    folder, vocoder_folder, _, _ = speecht5
    ours = AutoModelForTextToSpectrogram.from_pretrained(folder)
    ids = torch.tensor([[5, 6, 7, 2]])
    with pytest.raises(InputError, match="speaker_embeddings"):
        ours.generate_speech(ids)
    with pytest.raises(InputError, match=f"\\(1 or batch, {SPEAKER_DIM}\\)"):
        ours.generate_speech(ids, torch.randn(1, SPEAKER_DIM + 1))
    with pytest.raises(InputError, match="1 or the batch size"):
        ours.generate_speech(ids, torch.randn(2, SPEAKER_DIM))
    with pytest.raises(InputError, match="non-empty"):
        ours.generate_speech(ids[:, :0], torch.randn(1, SPEAKER_DIM))
    with pytest.raises(InputError, match="max_new_tokens"):
        ours.generate(ids, speaker_embeddings=torch.randn(1, SPEAKER_DIM), max_new_tokens=3)
    with pytest.raises(InputError, match="at most 64 tokens"):
        ours.generate_speech(torch.full((1, 65), 5), torch.randn(1, SPEAKER_DIM))
    pipe = lightpipe.pipeline("text-to-audio", model=folder, vocoder=str(vocoder_folder))
    with pytest.raises(InputError, match="empty text"):
        pipe("  ", forward_params={"speaker_embeddings": torch.randn(1, SPEAKER_DIM)})
    with pytest.raises(InputError, match="speaker_embeddings"):
        pipe("hello")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no vocoder: the reference's default is fetched
    with pytest.raises(InputError, match="needs a vocoder"):
        lightpipe.pipeline("text-to-audio", model=folder)
