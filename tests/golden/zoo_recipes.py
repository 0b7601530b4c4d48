"""The zoo's recipes (used by make_zoo.py, in a virtualenv with the era's transformers): for each
lightpipe family, a tiny random model, its tokenizer / image processor / feature extractor /
processor saved into the entry folder, the preprocessing call and the outputs to compare.

Every recipe is ``recipe(folder, slow) -> dict`` with: ``model`` (the reference model), ``auto``
(lightpipe's Auto class for it), ``call`` (the preprocessing call, '@name' placeholders for the
shared inputs), ``inputs`` (the preprocessed keys the model takes), ``extra`` (further model
inputs), ``outputs`` (output fields compared), ``base`` / ``base_inputs`` (also compare the
base model's last_hidden_state, loaded with AutoModel: the base-model prefix stripped).
``slow``: save the era's Python tokenizer (vocabulary files, no tokenizer.json).

A call of kind ``"none"`` is a model without a preprocessor (SpeechT5's vocoder): its inputs are
all in ``extra``, and test_zoo.py compares the model only. An output that is a bare tensor (the
vocoder's waveform) is stored under the output's name; a tuple (a backbone's ``feature_maps``)
one array per item, ``out.<name>.<i>``. ``SAVED_TYPES``: model types an era's models save that
its AutoConfig does not list (4.x's vocoder writes "hifigan"), built in that era all the same.
"""

from __future__ import annotations

import json

import torch
import transformers

from zoo_tokenizers import (V5, VERSION, bpe_files, bpe_tokenizer_json, clip_files, from_files, spm_model,
                            whisper_tokenizer, wordpiece_files)

# --- helpers ---------------------------------------------------------------------------------

def widen(model, std: float = 0.3, skip=("position", "conv", "norm", "embedder")) -> None:
    """Wider than the default init, so outputs depend on the inputs and no choice is a near-tie."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 and not any(part in name for part in skip):
                param.normal_(0.0, std)


def make(head: str, config):
    torch.manual_seed(0)
    model = getattr(transformers, head)(config).eval()
    widen(model)
    return model


def labels(n: int = 5) -> dict:
    return dict(id2label={i: f"LABEL_{i}" for i in range(n)}, label2id={f"LABEL_{i}": i for i in range(n)})


TEXT_CALL = {"kind": "tokenizer", "args": ["@texts"], "kwargs": {"padding": True}}
IMAGE_CALL = {"kind": "image_processor", "args": ["@images"]}
ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
               max_position_embeddings=64)
DECODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=48, max_position_embeddings=64)
VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
           image_size=32, patch_size=8)


def text_entry(folder, tokenizer, head, auto, config, outputs=("logits",), base=False, **more):
    tokenizer.save_pretrained(folder)
    keys = ["input_ids", "attention_mask", "token_type_ids"]
    return dict(model=make(head, config), auto=auto, call=TEXT_CALL, inputs=keys, outputs=list(outputs),
                base=base, base_inputs=keys, **more)


def image_entry(folder, processor, head, auto, config, outputs=("logits",), call=IMAGE_CALL, **more):
    processor.save_pretrained(folder)
    return dict(model=make(head, config), auto=auto, call=call, inputs=["pixel_values", "pixel_mask"],
                outputs=list(outputs), **more)


def seq2seq_extra(start: int) -> dict:
    return {"decoder_input_ids": torch.tensor([[start, 7, 8, 9, 10], [start, 11, 12, 13, 14]])}


# --- text ------------------------------------------------------------------------------------

def bert(folder, slow):
    tokenizer = from_files("BertTokenizer", slow, wordpiece_files(), model_max_length=64)
    config = transformers.BertConfig(vocab_size=len(tokenizer), type_vocab_size=2, **ENCODER)
    return text_entry(folder, tokenizer, "BertForMaskedLM", "AutoModelForMaskedLM", config, base=True)


def distilbert(folder, slow):
    tokenizer = from_files("DistilBertTokenizer", slow, wordpiece_files(), model_max_length=64)
    config = transformers.DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4,
                                           hidden_dim=37, max_position_embeddings=64, **labels())
    return text_entry(folder, tokenizer, "DistilBertForSequenceClassification",
                      "AutoModelForSequenceClassification", config, base=True)


def roberta(folder, slow):
    tokenizer = from_files("RobertaTokenizer", slow, bpe_files(), model_max_length=64)
    config = transformers.RobertaConfig(vocab_size=len(tokenizer), type_vocab_size=1, pad_token_id=1,
                                        bos_token_id=0, eos_token_id=2, **{**ENCODER, "max_position_embeddings": 66})
    return text_entry(folder, tokenizer, "RobertaForMaskedLM", "AutoModelForMaskedLM", config, base=True)


def _sentencepiece_roberta(folder, slow, name, config_name, head, auto):
    tokenizer = from_files(name, slow, {"sentencepiece.bpe.model": spm_model()}, model_max_length=64)
    config = getattr(transformers, config_name)(
        vocab_size=len(tokenizer), type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        **{**ENCODER, "max_position_embeddings": 66}, **labels())
    return text_entry(folder, tokenizer, head, auto, config, base=True)


def xlm_roberta(folder, slow):
    return _sentencepiece_roberta(folder, slow, "XLMRobertaTokenizer", "XLMRobertaConfig",
                                  "XLMRobertaForSequenceClassification", "AutoModelForSequenceClassification")


def camembert(folder, slow):
    return _sentencepiece_roberta(folder, slow, "CamembertTokenizer", "CamembertConfig",
                                  "CamembertForMaskedLM", "AutoModelForMaskedLM")


def gpt2(folder, slow):
    tokenizer = from_files("GPT2Tokenizer", slow, bpe_files(("<|endoftext|>",)), model_max_length=64,
                           pad_token="<|endoftext|>")
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                                     n_positions=64, bos_token_id=0, eos_token_id=0)
    return text_entry(folder, tokenizer, "GPT2LMHeadModel", "AutoModelForCausalLM", config)


def _llama_tokenizer(slow):
    model = spm_model(320, model_type="bpe", byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    return from_files("LlamaTokenizer", slow, {"tokenizer.model": model}, model_max_length=64,
                      pad_token="<unk>")


def _decoder(folder, slow, config_name, head, tokenizer=None, attention=None, **sizes):
    tokenizer = tokenizer or _llama_tokenizer(slow)
    config = getattr(transformers, config_name)(vocab_size=len(tokenizer), **{"bos_token_id": 1, "eos_token_id": 2,
                                                                              **DECODER, **sizes})
    if attention:  # the reference's own choice for the family, not the era's default
        config._attn_implementation = attention
    return text_entry(folder, tokenizer, head, "AutoModelForCausalLM", config)


def llama(folder, slow):
    return _decoder(folder, slow, "LlamaConfig", "LlamaForCausalLM", pad_token_id=0)


def mistral(folder, slow):
    # 4.4x counted the sliding window one token apart from today's reference: the 4.40 entry
    # keeps a window longer than its inputs (as real checkpoints' 4096 are), so it tests loading
    window = 6 if VERSION >= (4, 50) else 4096
    return _decoder(folder, slow, "MistralConfig", "MistralForCausalLM", sliding_window=window)


def qwen2(folder, slow):
    tokenizer = from_files("Qwen2Tokenizer", slow, bpe_files(("<|endoftext|>",)), model_max_length=64)
    return _decoder(folder, slow, "Qwen2Config", "Qwen2ForCausalLM", tokenizer, num_key_value_heads=1,
                    tie_word_embeddings=True)


def opt(folder, slow):
    tokenizer = from_files("GPT2Tokenizer", slow, bpe_files(), model_max_length=64, bos_token="</s>",
                           eos_token="</s>", unk_token="</s>", pad_token="<pad>")
    config = transformers.OPTConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, ffn_dim=48, max_position_embeddings=64,
                                    word_embed_proj_dim=32, pad_token_id=1, bos_token_id=2, eos_token_id=2)
    return text_entry(folder, tokenizer, "OPTForCausalLM", "AutoModelForCausalLM", config)


T5_SIZES = dict(d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                relative_attention_max_distance=16, decoder_start_token_id=0)


def t5(folder, slow, config_name="T5Config", head="T5ForConditionalGeneration", **sizes):
    spiece = spm_model(90, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    tokenizer = from_files("T5Tokenizer", slow, {"spiece.model": spiece}, extra_ids=10, model_max_length=64)
    config = getattr(transformers, config_name)(vocab_size=len(tokenizer), **{**T5_SIZES, **sizes})
    return text_entry(folder, tokenizer, head, "AutoModelForSeq2SeqLM", config, extra=seq2seq_extra(0))


def mt5(folder, slow):
    return t5(folder, slow, "MT5Config", "MT5ForConditionalGeneration", feed_forward_proj="gated-gelu",
              tie_word_embeddings=False)


BART = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64)


def bart(folder, slow):
    tokenizer = from_files("BartTokenizer", slow, bpe_files(), model_max_length=64)
    config = transformers.BartConfig(vocab_size=len(tokenizer), **BART)
    return text_entry(folder, tokenizer, "BartForConditionalGeneration", "AutoModelForSeq2SeqLM", config,
                      extra=seq2seq_extra(2))


def marian(folder, slow):
    import sentencepiece

    source, target = spm_model(80), spm_model(80, seed_sentencepiece_size=1000)
    vocab = {"</s>": 0, "<unk>": 1}
    for blob in (source, target):
        processor = sentencepiece.SentencePieceProcessor(model_proto=blob)
        for index in range(processor.get_piece_size()):
            vocab.setdefault(processor.id_to_piece(index), len(vocab))
    for token in ("<s>",):
        vocab.pop(token, None)
    vocab = {token: i for i, token in enumerate(vocab)}
    vocab["<pad>"] = len(vocab)
    tokenizer = from_files("MarianTokenizer", True, {"source.spm": source, "target.spm": target,
                                                     "vocab.json": json.dumps(vocab)}, model_max_length=64)
    pad = vocab["<pad>"]
    config = transformers.MarianConfig(vocab_size=len(vocab), pad_token_id=pad, decoder_start_token_id=pad,
                                       eos_token_id=0, forced_eos_token_id=0, scale_embedding=True, **BART)
    return text_entry(folder, tokenizer, "MarianMTModel", "AutoModelForSeq2SeqLM", config,
                      extra=seq2seq_extra(pad))


def tapas(folder, slow):
    files = wordpiece_files(["[EMPTY]", "name", "age", "city", "how", "old", "is", "who", "lives", "in",
                             "bob", "alice", "berlin", "rome"])
    tokenizer = from_files("TapasTokenizer", True, files, model_max_length=64)
    tokenizer.save_pretrained(folder)
    config = transformers.TapasConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, num_aggregation_labels=4,
        aggregation_labels={0: "NONE", 1: "SUM", 2: "AVERAGE", 3: "COUNT"}, no_aggregation_label_index=0,
        select_one_column=True, allow_empty_column_selection=False, reset_position_index_per_cell=True)
    model = make("TapasForQuestionAnswering", config)
    call = {"kind": "tapas", "kwargs": {"table": {"Name": ["Bob", "Alice"], "Age": ["56", "45"],
                                                  "City": ["Berlin", "Rome"]},
                                        "queries": ["How old is Bob?", "Who lives in Rome?"]}}
    return dict(model=model, auto="AutoModelForTableQuestionAnswering", call=call,
                inputs=["input_ids", "attention_mask", "token_type_ids"],
                outputs=["logits", "logits_aggregation"])


def layoutlm(folder, slow):
    tokenizer = from_files("LayoutLMTokenizer", slow, wordpiece_files(), model_max_length=64)
    config = transformers.LayoutLMConfig(vocab_size=len(tokenizer), type_vocab_size=2,
                                         max_2d_position_embeddings=128, **ENCODER)
    entry = text_entry(folder, tokenizer, "LayoutLMForQuestionAnswering", "AutoModelForQuestionAnswering",
                       config, outputs=("start_logits", "end_logits"))
    entry["extra"] = boxes
    return entry


def boxes(inputs: dict) -> dict:
    """One box per token (x0, y0, x1, y1 in 0..1000 / 8), as LayoutLM's words have."""
    corners = torch.randint(0, 60, (*inputs["input_ids"].shape, 2), generator=torch.Generator().manual_seed(0))
    return {"bbox": torch.cat([corners, corners + 5], dim=-1)}


# --- families added later: ELECTRA, MPNet, DeBERTa-v2, Qwen3, Gemma 2/3, Phi-3 -------------------

def electra(folder, slow):
    tokenizer = from_files("ElectraTokenizer", slow, wordpiece_files(), model_max_length=64)
    config = transformers.ElectraConfig(vocab_size=len(tokenizer), embedding_size=24, type_vocab_size=2,
                                        hidden_act="gelu_new", **ENCODER, **labels())
    return text_entry(folder, tokenizer, "ElectraForSequenceClassification",
                      "AutoModelForSequenceClassification", config, base=True)


def mpnet(folder, slow):
    files = wordpiece_files(["<s>", "</s>", "<unk>", "<pad>", "<mask>"])
    tokenizer = from_files("MPNetTokenizer", slow, files, model_max_length=64)
    config = transformers.MPNetConfig(vocab_size=len(tokenizer), relative_attention_num_buckets=40,
                                      **{**ENCODER, "max_position_embeddings": 66})
    return text_entry(folder, tokenizer, "MPNetForMaskedLM", "AutoModelForMaskedLM", config, base=True)


def deberta_v2(folder, slow):
    spm = spm_model(120, pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2,
                    eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]")
    tokenizer = from_files("DebertaV2Tokenizer", slow, {"spm.model": spm}, model_max_length=64)
    config = transformers.DebertaV2Config(  # deberta-v3's layout
        vocab_size=len(tokenizer), relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm",
        share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=False, max_relative_positions=-1,
        type_vocab_size=0, **ENCODER, **labels())
    return text_entry(folder, tokenizer, "DebertaV2ForSequenceClassification",
                      "AutoModelForSequenceClassification", config, base=True)


def _gemma_tokenizer(slow):
    model = spm_model(320, model_type="bpe", byte_fallback=True, pad_id=0, pad_piece="<pad>", eos_id=1,
                      eos_piece="<eos>", bos_id=2, bos_piece="<bos>", unk_id=3, unk_piece="<unk>")
    return from_files("GemmaTokenizer", slow, {"tokenizer.model": model}, model_max_length=64)


def qwen3(folder, slow, config_name="Qwen3Config", head="Qwen3ForCausalLM", **sizes):
    tokenizer = from_files("Qwen2Tokenizer", slow, bpe_files(("<|endoftext|>",)), model_max_length=64)
    return _decoder(folder, slow, config_name, head, tokenizer, head_dim=16, **sizes)


def qwen3_moe(folder, slow):
    return qwen3(folder, slow, "Qwen3MoeConfig", "Qwen3MoeForCausalLM", moe_intermediate_size=16,
                 num_experts=4, num_experts_per_tok=2)


def gemma2(folder, slow):
    return _decoder(folder, slow, "Gemma2Config", "Gemma2ForCausalLM", _gemma_tokenizer(slow), num_hidden_layers=3,
                    head_dim=16, sliding_window=6, query_pre_attn_scalar=12, bos_token_id=2, eos_token_id=1,
                    pad_token_id=0, attention="eager")  # 4.x's SDPA path dropped the soft-capping


def gemma3_text(folder, slow):
    return _decoder(folder, slow, "Gemma3TextConfig", "Gemma3ForCausalLM", _gemma_tokenizer(slow),
                    num_hidden_layers=4, head_dim=16, sliding_window=6, query_pre_attn_scalar=12,
                    sliding_window_pattern=2, bos_token_id=2, eos_token_id=1, pad_token_id=0)


def phi3(folder, slow):
    return _decoder(folder, slow, "Phi3Config", "Phi3ForCausalLM", pad_token_id=0)


# --- speech ----------------------------------------------------------------------------------

def whisper(folder, slow):
    tokenizer = whisper_tokenizer(slow)
    ids = tokenizer.convert_tokens_to_ids
    # a one-second window: 100 frames, so max_source_positions 50
    extractor = transformers.WhisperFeatureExtractor(chunk_length=1)
    transformers.WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=80,
        max_source_positions=50, max_target_positions=32, pad_token_id=eot, bos_token_id=eot,
        eos_token_id=eot, decoder_start_token_id=sot)
    extra = {"decoder_input_ids": torch.tensor([[sot, ids("<|en|>"), ids("<|transcribe|>"), 7, 8]])}
    return dict(model=make("WhisperForConditionalGeneration", config), auto="AutoModelForSpeechSeq2Seq",
                call={"kind": "processor", "kwargs": {"audio": "@audio", "sampling_rate": 16000}},
                inputs=["input_features"], extra=extra, outputs=["logits"])


def wav2vec2(folder, slow):
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for char in "ETAONIHSRDLUMWCFGYPBVKXJQZ'":
        vocab[char] = len(vocab)
    tokenizer = from_files("Wav2Vec2CTCTokenizer", True, {"vocab.json": json.dumps(vocab)})
    extractor = transformers.Wav2Vec2FeatureExtractor(return_attention_mask=False, do_normalize=True)
    transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    config = transformers.Wav2Vec2Config(
        vocab_size=len(vocab), pad_token_id=0, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, mask_time_prob=0.0)
    return dict(model=make("Wav2Vec2ForCTC", config), auto="AutoModelForCTC",
                call={"kind": "processor", "args": ["@audio"], "kwargs": {"sampling_rate": 16000}},
                inputs=["input_values"], outputs=["logits"])


def _speech_encoder(folder, slow, config_name, head, auto, outputs=("logits",), **extra):
    """HuBERT / WavLM: wav2vec2's feature extractor (and CTC tokenizer for the CTC head)."""
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for char in "ETAONIHSRDLUMWCFGYPBVKXJQZ'":
        vocab[char] = len(vocab)
    tokenizer = from_files("Wav2Vec2CTCTokenizer", True, {"vocab.json": json.dumps(vocab)})
    extractor = transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True)
    transformers.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    config = getattr(transformers, config_name)(
        vocab_size=len(vocab), pad_token_id=0, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, mask_time_prob=0.0, **extra)
    return dict(model=make(head, config), auto=auto,
                call={"kind": "processor", "args": ["@audio"], "kwargs": {"sampling_rate": 16000}},
                inputs=["input_values"], outputs=list(outputs))


def hubert(folder, slow):
    return _speech_encoder(folder, slow, "HubertConfig", "HubertForCTC", "AutoModelForCTC",
                           feat_extract_norm="layer", do_stable_layer_norm=True)


def wavlm(folder, slow):
    return _speech_encoder(folder, slow, "WavLMConfig", "WavLMForSequenceClassification",
                           "AutoModelForAudioClassification", num_buckets=16, max_bucket_distance=40,
                           **labels())


def modernbert(folder, slow):
    tokenizer = from_files("RobertaTokenizer", slow,
                           bpe_files(("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")), model_max_length=64,
                           unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                           mask_token="[MASK]")
    config = transformers.ModernBertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=64, global_attn_every_n_layers=2, local_attention=8,
        pad_token_id=tokenizer.pad_token_id, cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id, **labels())
    entry = text_entry(folder, tokenizer, "ModernBertForSequenceClassification",
                       "AutoModelForSequenceClassification", config, base=True)
    entry["inputs"] = entry["base_inputs"] = ["input_ids", "attention_mask"]
    return entry


# --- vision ----------------------------------------------------------------------------------

def vit(folder, slow):
    return image_entry(folder, transformers.ViTImageProcessor(size={"height": 32, "width": 32}),
                       "ViTForImageClassification", "AutoModelForImageClassification",
                       transformers.ViTConfig(**VIT, **labels()))


def swin(folder, slow):
    config = transformers.SwinConfig(image_size=32, patch_size=2, embed_dim=16, depths=[1, 2, 1],
                                     num_heads=[2, 2, 4], window_size=4, mlp_ratio=2.0, **labels())
    return image_entry(folder, transformers.ViTImageProcessor(size={"height": 32, "width": 32}, resample=3),
                       "SwinForImageClassification", "AutoModelForImageClassification", config)


def convnext(folder, slow):
    config = transformers.ConvNextConfig(hidden_sizes=[16, 24, 32], depths=[1, 2, 1], num_stages=3,
                                         image_size=32, **labels())
    return image_entry(folder, transformers.ConvNextImageProcessor(size={"shortest_edge": 32}),
                       "ConvNextForImageClassification", "AutoModelForImageClassification", config)


def resnet(folder, slow):
    config = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 24, 32], depths=[1, 2, 1],
                                       layer_type="bottleneck", **labels())
    return image_entry(folder, transformers.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.8),
                       "ResNetForImageClassification", "AutoModelForImageClassification", config)


def detr(folder, slow):
    backbone = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 24, 32, 40], depths=[1, 1, 1, 1],
                                         layer_type="bottleneck", out_features=["stage4"])
    config = transformers.DetrConfig(use_timm_backbone=False, backbone_config=backbone, backbone=None,
                                     use_pretrained_backbone=False, d_model=32, encoder_layers=2,
                                     decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                                     encoder_ffn_dim=37, decoder_ffn_dim=37, num_queries=12, **labels())
    processor = transformers.DetrImageProcessor(size={"shortest_edge": 48, "longest_edge": 80})
    # as a user of transformers 5 who loads a Hub DETR and saves it again: the re-saved config
    # has no use_timm_backbone, only a backbone_config of model_type "resnet"
    return image_entry(folder, processor, "DetrForObjectDetection", "AutoModelForObjectDetection", config,
                       outputs=("logits", "pred_boxes"), resave=V5)


def dpt(folder, slow):
    config = transformers.DPTConfig(**{**VIT, "num_hidden_layers": 4}, backbone_out_indices=[0, 1, 2, 3],
                                    neck_hidden_sizes=[8, 16, 16, 24], reassemble_factors=[4, 2, 1, 0.5],
                                    fusion_hidden_size=16)
    return image_entry(folder, transformers.DPTImageProcessor(size={"height": 32, "width": 32}),
                       "DPTForDepthEstimation", "AutoModelForDepthEstimation", config, outputs=("predicted_depth",))


def depth_anything(folder, slow):
    backbone = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                                         image_size=28, patch_size=7, mlp_ratio=2, out_indices=[1, 2, 3, 4],
                                         layerscale_value=0.5, reshape_hidden_states=False)
    config = transformers.DepthAnythingConfig(backbone_config=backbone, patch_size=7, reassemble_hidden_size=32,
                                              neck_hidden_sizes=[8, 16, 16, 24], fusion_hidden_size=16,
                                              head_hidden_size=8)
    processor = transformers.DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True,
                                               ensure_multiple_of=7)
    return image_entry(folder, processor, "DepthAnythingForDepthEstimation", "AutoModelForDepthEstimation",
                       config, outputs=("predicted_depth",), call={"kind": "image_processor", "args": ["@image"]})


def segformer(folder, slow):
    config = transformers.SegformerConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 2, 1, 1],
                                          num_attention_heads=[1, 2, 2, 4], sr_ratios=[4, 2, 2, 1],
                                          decoder_hidden_size=16, **labels())
    return image_entry(folder, transformers.SegformerImageProcessor(size={"height": 32, "width": 32}),
                       "SegformerForSemanticSegmentation", "AutoModelForSemanticSegmentation", config)


def swin2sr(folder, slow):
    config = transformers.Swin2SRConfig(image_size=32, embed_dim=16, depths=[2, 2], num_heads=[2, 2],
                                        window_size=4, upscale=2, upsampler="pixelshuffledirect")  # lightweight: no 64-wide convs
    return image_entry(folder, transformers.Swin2SRImageProcessor(), "Swin2SRForImageSuperResolution",
                       "AutoModelForImageToImage", config, outputs=("reconstruction",),
                       call={"kind": "image_processor", "args": ["@image"]})


def videomae(folder, slow):
    config = transformers.VideoMAEConfig(**VIT, tubelet_size=2, num_frames=4, **labels())
    processor = transformers.VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return image_entry(folder, processor, "VideoMAEForVideoClassification", "AutoModelForVideoClassification",
                       config, call={"kind": "image_processor", "args": ["@video"]})


# --- images and text -------------------------------------------------------------------------

def vision_encoder_decoder(folder, slow):
    tokenizer = from_files("GPT2Tokenizer", slow, bpe_files(("<|endoftext|>",)), model_max_length=64)
    tokenizer.save_pretrained(folder)
    decoder = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                      bos_token_id=0, eos_token_id=0, is_decoder=True, add_cross_attention=True)
    config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.ViTConfig(**VIT), decoder, decoder_start_token_id=0, pad_token_id=0)
    return image_entry(folder, transformers.ViTImageProcessor(size={"height": 32, "width": 32}),
                       "VisionEncoderDecoderModel", "AutoModelForVision2Seq", config,
                       extra={"decoder_input_ids": torch.tensor([[0, 5, 6, 7], [0, 8, 9, 10]])})


def clip(folder, slow):
    tokenizer = from_files("CLIPTokenizer", slow, clip_files(), model_max_length=32)
    processor = transformers.CLIPProcessor(
        image_processor=transformers.CLIPImageProcessor(size={"shortest_edge": 32},
                                                        crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer)
    processor.save_pretrained(folder)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    config = transformers.CLIPConfig(text_config=text, vision_config=VIT, projection_dim=16)
    call = {"kind": "processor", "kwargs": {"text": ["a photo of a cat", "the dog"], "images": "@images",
                                            "padding": True}}
    return dict(model=make("CLIPModel", config), auto="AutoModelForZeroShotImageClassification", call=call,
                inputs=["input_ids", "attention_mask", "pixel_values"],
                outputs=["logits_per_image", "text_embeds", "image_embeds"])


def _owl(folder, slow, family):
    prefix = "Owlv2" if family == "owlv2" else "OwlViT"
    tokenizer = from_files("CLIPTokenizer", slow, clip_files(pad_first=True), pad_token="!", model_max_length=16)
    image_processor = getattr(transformers, f"{prefix}ImageProcessor")(size={"height": 32, "width": 32})
    getattr(transformers, f"{prefix}Processor")(image_processor=image_processor,
                                                tokenizer=tokenizer).save_pretrained(folder)
    vocab_size = len(tokenizer)
    text = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=16, pad_token_id=0,
                bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1)
    config = getattr(transformers, f"{prefix}Config")(text_config=text, vision_config=VIT, projection_dim=32)
    call = {"kind": "processor", "kwargs": {"text": [["a cat", "the dog"]], "images": ["@image"]}}
    return dict(model=make(f"{prefix}ForObjectDetection", config), auto="AutoModelForZeroShotObjectDetection",
                call=call, inputs=["input_ids", "attention_mask", "pixel_values"], outputs=["logits", "pred_boxes"])


def owlvit(folder, slow):
    return _owl(folder, slow, "owlvit")


def owlv2(folder, slow):
    return _owl(folder, slow, "owlv2")


def blip(folder, slow):
    tokenizer = from_files("BertTokenizer", slow, wordpiece_files(), bos_token="[DEC]",
                           additional_special_tokens=["[ENC]"], model_max_length=64)
    transformers.BlipProcessor(image_processor=transformers.BlipImageProcessor(size={"height": 32, "width": 32}),
                               tokenizer=tokenizer).save_pretrained(folder)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, encoder_hidden_size=32, intermediate_size=37,
                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
                sep_token_id=tokenizer.sep_token_id, eos_token_id=tokenizer.sep_token_id)
    config = transformers.BlipConfig(vision_config={**VIT, "intermediate_size": 37}, text_config=text,
                                     projection_dim=16)
    call = {"kind": "processor", "kwargs": {"images": "@images", "text": ["a photo of", "the cat"],
                                            "padding": True}}
    return dict(model=make("BlipForConditionalGeneration", config), auto="AutoModelForVision2Seq", call=call,
                inputs=["input_ids", "attention_mask", "pixel_values"], outputs=["logits"])


def vilt(folder, slow):
    tokenizer = from_files("BertTokenizer", slow, wordpiece_files(), model_max_length=40)
    processor = transformers.ViltProcessor(image_processor=transformers.ViltImageProcessor(size={"shortest_edge": 64}),
                                           tokenizer=tokenizer)
    processor.save_pretrained(folder)
    config = transformers.ViltConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=37, image_size=64, patch_size=16,
                                     max_position_embeddings=40, **labels(8))
    call = {"kind": "processor", "kwargs": {"images": "@images", "text": ["what is in the photo?", "a cat"],
                                            "padding": True}}
    return dict(model=make("ViltForQuestionAnswering", config), auto="AutoModelForVisualQuestionAnswering",
                call=call, inputs=["input_ids", "attention_mask", "token_type_ids", "pixel_values", "pixel_mask"],
                outputs=["logits"])


LLAVA_PROMPT = "USER: <image>\nWhat is shown? ASSISTANT:"


def llava(folder, slow):
    tokenizer = _llama_tokenizer(slow)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    image_processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    extra = dict(patch_size=8, vision_feature_select_strategy="default") if VERSION >= (4, 47) else {}
    if VERSION >= (4, 50):
        extra["num_additional_image_tokens"] = 1
    transformers.LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, **extra).save_pretrained(folder)
    image_processor.save_pretrained(folder)
    vision = transformers.CLIPVisionConfig(**{**VIT, "intermediate_size": 37})
    text = transformers.LlamaConfig(vocab_size=len(tokenizer), **{**DECODER, "max_position_embeddings": 256},
                                    bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = transformers.LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                                      image_token_index=image_token, image_seq_length=16, pad_token_id=0)
    entry = dict(model=make("LlavaForConditionalGeneration", config), auto="AutoModelForImageTextToText",
                 call={"kind": "processor", "kwargs": {"images": "@image", "text": [LLAVA_PROMPT]}},
                 inputs=["input_ids", "attention_mask", "pixel_values"], outputs=["logits"])
    if VERSION < (4, 47):  # the era's processor kept one <image> token; the model expanded it
        entry["expand_image"] = (image_token, 16)
    return entry


def vits(folder, slow):
    """A VITS with its character tokenizer; noise scales 0, so its waveform is deterministic."""
    characters = ["<pad>", *" abcdefghijklmnopqrstuvwxyz'-,.!?", "<unk>"]
    tokenizer = from_files("VitsTokenizer", True, {"vocab.json": json.dumps({c: i for i, c in enumerate(characters)})},
                           phonemize=False, language="eng")
    tokenizer.save_pretrained(folder)
    config = transformers.VitsConfig(
        vocab_size=len(characters), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=48,
        ffn_kernel_size=3, window_size=3, flow_size=16, spectrogram_bins=17, upsample_initial_channel=32,
        upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3, 5],
        resblock_dilation_sizes=[[1, 3], [1, 3]], duration_predictor_filter_channels=24,
        duration_predictor_num_flows=2, duration_predictor_flow_bins=6, prior_encoder_num_flows=2,
        prior_encoder_num_wavenet_layers=2, posterior_encoder_num_wavenet_layers=2, wavenet_kernel_size=3,
        noise_scale=0.0, noise_scale_duration=0.0, speaking_rate=1.3, sampling_rate=8000)
    torch.manual_seed(0)
    model = transformers.VitsModel(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("translate", "log_scale")):
                param.normal_(0.0, 0.3)
        model.decoder.conv_post.weight.mul_(0.05)
    return dict(model=model, auto="AutoModelForTextToWaveform",
                call={"kind": "tokenizer", "args": [["hello world.", "a cat"]], "kwargs": {"padding": True}},
                inputs=["input_ids", "attention_mask"], outputs=["waveform"])


def siglip(folder, slow):
    tokenizer = from_files("SiglipTokenizer", True, {"spiece.model": spm_model(120, eos_id=1, eos_piece="</s>",
                                                                              unk_id=2, pad_id=0, bos_id=-1)},
                           model_max_length=16)
    image_processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    transformers.SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=16)  # 4.x: text width = image width
    vision = dict(hidden_size=32, intermediate_size=36, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8)
    config = transformers.SiglipConfig(text_config=text, vision_config=vision)
    call = {"kind": "processor", "kwargs": {"text": ["a photo of a cat", "the dog"], "images": "@images",
                                            "padding": "max_length"}}
    return dict(model=make("SiglipModel", config), auto="AutoModelForZeroShotImageClassification", call=call,
                inputs=["input_ids", "pixel_values"], outputs=["logits_per_image", "text_embeds", "image_embeds"])


def clap(folder, slow):
    tokenizer = from_files("RobertaTokenizer", slow, bpe_files(), model_max_length=64)
    extractor = transformers.ClapFeatureExtractor(feature_size=64, sampling_rate=16000, hop_length=160,
                                                  max_length_s=1, fft_window_size=400, frequency_max=7000,
                                                  truncation="rand_trunc", padding="repeatpad")
    transformers.ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=66, projection_dim=24, type_vocab_size=1,
                pad_token_id=1, bos_token_id=0, eos_token_id=2)
    audio = dict(spec_size=128, num_mel_bins=64, window_size=4, patch_embeds_hidden_size=16, depths=[1, 2],
                 num_attention_heads=[2, 4], hidden_size=32, projection_dim=24, enable_fusion=False,
                 mlp_ratio=2.0)
    config = transformers.ClapConfig(text_config=text, audio_config=audio, projection_dim=24)
    torch.manual_seed(0)
    model = transformers.ClapModel(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 5.0)
                module.running_var.uniform_(20.0, 60.0)
    call = {"kind": "processor", "kwargs": {"text": ["a dog barks", "music"], "audios": "@audio",
                                            "sampling_rate": 16000, "padding": True}}
    if VERSION >= (4, 57):
        call["kwargs"]["audio"] = call["kwargs"].pop("audios")
    return dict(model=model, auto="AutoModel", call=call, inputs=["input_ids", "attention_mask", "input_features"],
                outputs=["logits_per_audio", "text_embeds", "audio_embeds"])


def _spread(model) -> None:
    """SAM-style weights spread (the reference initialises near zero), norms kept."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.3 if param.dim() > 1 else 0.1)


def sam(folder, slow, kind="Sam", global_layers=(1,), **decoder):
    config = getattr(transformers, f"{kind}Config")(
        vision_config=dict(hidden_size=32, output_channels=16, num_hidden_layers=3, num_attention_heads=2,
                           image_size=64, patch_size=8, window_size=3, global_attn_indexes=list(global_layers),
                           mlp_dim=40, num_pos_feats=8),
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=8),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=24, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=20, **decoder))
    torch.manual_seed(0)
    model = getattr(transformers, f"{kind}Model")(config).eval()
    _spread(model)
    image_processor = transformers.SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    getattr(transformers, f"{kind}Processor")(image_processor=image_processor).save_pretrained(folder)
    call = {"kind": "processor", "kwargs": {"images": "@image", "input_points": [[[20, 30]]]}}
    return dict(model=model, auto="AutoModel", call=call, inputs=["pixel_values", "input_points"],
                outputs=["iou_scores", "pred_masks"])


def sam_hq(folder, slow):
    """SAM-HQ: SAM's sizes with the HQ decoder (vit_dim = the ViT's width) fusing the first
    global layer's output; SamHQProcessor (the image processor nested in processor_config.json
    in 5.x)."""
    return sam(folder, slow, "SamHQ", global_layers=(1, 2), vit_dim=32)


# SAM 2 (image): Hiera with 4 stages of widths 8-32, two global blocks, FPN of width 16
SAM2 = dict(
    vision_config=dict(
        backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=8, embed_dim_per_stage=[8, 16, 24, 32],
                             num_attention_heads_per_stage=[1, 2, 2, 4], blocks_per_stage=[1, 2, 2, 1],
                             window_size_per_stage=[4, 4, 2, 2], global_attention_blocks=[2, 4],
                             window_positional_embedding_background_size=[5, 5], mlp_ratio=2.0, image_size=[64, 64]),
        backbone_channel_list=[32, 24, 16, 8], fpn_hidden_size=16, fpn_top_down_levels=[1, 2],
        backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]]),
    prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=8),
    mask_decoder_config=dict(hidden_size=16, mlp_dim=24, num_hidden_layers=2, num_attention_heads=2,
                             attention_downsample_rate=4, iou_head_hidden_dim=20))


def _sam2_entry(folder, model, processor_class):
    """The weights spread, the era's processor saved, two labelled points on the zoo image. The
    era's Sam2 image processor is torchvision-backed: build with torchvision importable (see
    make_zoo.py)."""
    _spread(model)
    image_class = getattr(transformers, "Sam2ImageProcessorFast" if VERSION < (5, 0) else "Sam2ImageProcessor")
    image_processor = image_class(size={"height": 64, "width": 64}, mask_size={"height": 16, "width": 16})
    if processor_class == "Sam2VideoProcessor":  # the Hub's SAM 2.1 folders: the video processor too
        video = transformers.Sam2VideoVideoProcessor(size={"height": 64, "width": 64})
        transformers.Sam2VideoProcessor(image_processor=image_processor, video_processor=video).save_pretrained(folder)
        call = {"kind": "image_processor", "kwargs": {"images": "@image"}}
        points = {"input_points": torch.tensor([[[[20.0, 30.0], [50.0, 10.0]]]]),
                  "input_labels": torch.tensor([[[1, 0]]])}
        return dict(model=model, auto="AutoModel", call=call, inputs=["pixel_values"], extra=points,
                    outputs=["iou_scores", "pred_masks", "object_score_logits"],
                    reload=transformers.AutoModelForMaskGeneration)
    transformers.Sam2Processor(image_processor=image_processor).save_pretrained(folder)
    call = {"kind": "processor", "kwargs": {"images": "@image", "input_points": [[[[20, 30], [50, 10]]]],
                                            "input_labels": [[[1, 0]]]}}
    return dict(model=model, auto="AutoModel", call=call, inputs=["pixel_values", "input_points", "input_labels"],
                outputs=["iou_scores", "pred_masks", "object_score_logits"])


def sam2(folder, slow):
    torch.manual_seed(0)
    return _sam2_entry(folder, transformers.Sam2Model(transformers.Sam2Config(**SAM2)).eval(), "Sam2Processor")


def sam2_video(folder, slow):
    """A SAM 2.1-style video checkpoint (memory attention and encoder, object pointers, tiny), which
    the reference's AutoModelForMaskGeneration and lightpipe read as the image model."""
    config = transformers.Sam2VideoConfig(
        **SAM2, image_size=64, memory_attention_hidden_size=16, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=24, memory_encoder_hidden_size=16, memory_encoder_output_channels=8,
        mask_downsampler_embed_dim=16, mask_downsampler_total_stride=4, memory_fuser_embed_dim=16,
        memory_fuser_intermediate_dim=24)
    torch.manual_seed(0)
    return _sam2_entry(folder, transformers.Sam2VideoModel(config).eval(), "Sam2VideoProcessor")


# --- families added later: GPT-NeoX, DeiT, DINOv2, AST, HiFi-GAN, RT-DETR, SigLIP(2) towers -------

def gpt_neox(folder, slow):
    tokenizer = from_files("GPTNeoXTokenizer", False, {"tokenizer.json": bpe_tokenizer_json()},
                           model_max_length=64, pad_token="<|endoftext|>")
    config = transformers.GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=48, max_position_embeddings=64,
                                        rotary_pct=0.5, bos_token_id=0, eos_token_id=0)
    return text_entry(folder, tokenizer, "GPTNeoXForCausalLM", "AutoModelForCausalLM", config)


def deit(folder, slow):
    processor = transformers.DeiTImageProcessor(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32})
    # the distilled checkpoints' head (facebook/deit-*-distilled-*): the [CLS] and distillation tokens
    return image_entry(folder, processor, "DeiTForImageClassificationWithTeacher", "AutoModelForImageClassification",
                       transformers.DeiTConfig(**VIT, **labels()), outputs=("logits", "cls_logits", "distillation_logits"))


def dinov2(folder, slow):
    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
                                       image_size=32, patch_size=8, layerscale_value=0.5)
    processor = transformers.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32},
                                               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return image_entry(folder, processor, "Dinov2Model", "AutoModel", config,
                       outputs=("last_hidden_state", "pooler_output"))


def audio_spectrogram_transformer(folder, slow):
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=64, mean=-3.1, std=2.2).save_pretrained(folder)
    config = transformers.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                                    patch_size=8, frequency_stride=4, time_stride=6, max_length=64,
                                    num_mel_bins=32, **labels())
    return dict(model=make("ASTForAudioClassification", config), auto="AutoModelForAudioClassification",
                call={"kind": "feature_extractor", "args": ["@audio"], "kwargs": {"sampling_rate": 16000}},
                inputs=["input_values"], outputs=["logits"])


def hifigan(folder, slow):
    """SpeechT5's HiFi-GAN vocoder (model_type "hifigan" in 4.x, "speecht5_hifigan" in 5.x):
    no preprocessor, a fixed spectrogram in."""
    config = transformers.SpeechT5HifiGanConfig(
        model_in_dim=12, upsample_initial_channel=16, upsample_rates=[2, 3], upsample_kernel_sizes=[4, 6],
        resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 2], [1, 3]], sampling_rate=12000,
        normalize_before=True)
    torch.manual_seed(0)
    model = transformers.SpeechT5HifiGan(config).eval()
    with torch.no_grad():  # the default init gives a waveform of 1e-5: too small to compare
        for param in model.parameters():
            param.normal_(0.0, 0.12)
        model.mean.normal_(0.0, 0.5)
        model.scale.uniform_(0.5, 1.5)
    spectrogram = torch.randn(2, 7, 12, generator=torch.Generator().manual_seed(0))
    return dict(model=model, auto="AutoModel", call={"kind": "none"}, inputs=[],
                extra={"spectrogram": spectrogram}, outputs=["waveform"])


def speecht5(folder, slow):
    """SpeechT5 text-to-speech with its character tokenizer (<mask> and <ctc_blank> added after
    the SentencePiece vocabulary, as microsoft/speecht5_tts): the teacher-forced forward over
    fixed frames and speaker embeddings. The prenet's dropout stays on at inference (random), so
    it is 0 here: the reference keeps where a Bernoulli(p) draw is 1, so the prenet passes zeros
    and the outputs are deterministic (tests/models/test_speecht5.py checks the seeded dropout)."""
    spm = spm_model(60, model_type="char", bos_id=0, pad_id=1, eos_id=2, unk_id=3)
    tokenizer = from_files("SpeechT5Tokenizer", True, {"spm_char.model": spm}, mask_token="<mask>")
    tokenizer.add_tokens(["<ctc_blank>"])
    tokenizer.save_pretrained(folder)
    config = transformers.SpeechT5Config(
        vocab_size=len(tokenizer), hidden_size=16, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=4, encoder_ffn_dim=24, decoder_ffn_dim=20,
        num_mel_bins=8, speech_decoder_prenet_units=12, speaker_embedding_dim=6,
        speech_decoder_postnet_units=10, speech_decoder_postnet_layers=3, speech_decoder_prenet_dropout=0.0,
        encoder_max_relative_position=4, reduction_factor=3, max_text_positions=64, max_speech_positions=64,
        layer_norm_eps=1e-6, hidden_act="relu")
    model = make("SpeechT5ForTextToSpeech", config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    generator = torch.Generator().manual_seed(0)
    extra = {"decoder_input_values": torch.randn(2, 5, 8, generator=generator),
             "speaker_embeddings": torch.randn(2, 6, generator=generator)}
    return dict(model=model, auto="AutoModelForTextToSpectrogram",
                call={"kind": "tokenizer", "args": [["hello world.", "a cat<mask>"]], "kwargs": {"padding": True}},
                inputs=["input_ids", "attention_mask"], extra=extra, outputs=["spectrogram"])


RT_BACKBONE = dict(embedding_size=8, hidden_sizes=[8, 12, 16, 24], depths=[1, 1, 1, 1], layer_type="basic",
                   out_features=["stage2", "stage3", "stage4"])


def _spread_all(model):
    """Every weight and batch-norm statistic off its init (RT-DETR's zeroes its box heads)."""
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.3)
        for name, buffer in model.named_buffers():
            if "running_var" in name:
                buffer.uniform_(0.5, 1.5)
            elif "running_mean" in name:
                buffer.uniform_(-0.2, 0.2)
    return model


def rt_detr_resnet(folder, slow):
    torch.manual_seed(0)
    model = _spread_all(transformers.RTDetrResNetBackbone(transformers.RTDetrResNetConfig(**RT_BACKBONE)).eval())
    transformers.RTDetrImageProcessor(size={"height": 32, "width": 48}).save_pretrained(folder)
    return dict(model=model, auto="AutoBackbone", call=IMAGE_CALL, inputs=["pixel_values"],
                outputs=["feature_maps"])


def rt_detr(folder, slow, v2=False):
    settings = dict(decoder_offset_scale=0.7) if v2 else {}
    config = (transformers.RTDetrV2Config if v2 else transformers.RTDetrConfig)(
        backbone_config=transformers.RTDetrResNetConfig(**RT_BACKBONE), encoder_hidden_dim=16,
        encoder_ffn_dim=24, encoder_attention_heads=2, hidden_expansion=0.5, d_model=16,
        decoder_in_channels=[16, 16, 16], num_queries=12, decoder_layers=2, decoder_attention_heads=2,
        decoder_ffn_dim=24, decoder_n_points=2, encoder_in_channels=[12, 16, 24], num_feature_levels=3,
        num_denoising=0, **settings, **labels())
    torch.manual_seed(0)
    model = _spread_all(getattr(transformers, "RTDetrV2ForObjectDetection" if v2 else "RTDetrForObjectDetection")(
        config).eval())
    transformers.RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return dict(model=model, auto="AutoModelForObjectDetection", call=IMAGE_CALL, inputs=["pixel_values"],
                outputs=["logits", "pred_boxes"])


def rt_detr_v2(folder, slow):
    return rt_detr(folder, slow, v2=True)


def siglip_vision_model(folder, slow):
    config = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=36, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=32, patch_size=8)
    return image_entry(folder, transformers.SiglipImageProcessor(size={"height": 32, "width": 32}),
                       "SiglipVisionModel", "AutoModel", config, outputs=("last_hidden_state", "pooler_output"))


SIGLIP2_VISION = dict(hidden_size=32, intermediate_size=36, num_hidden_layers=2, num_attention_heads=2,
                      patch_size=4, num_patches=16)


def _siglip2_image_processor():
    name = "Siglip2ImageProcessorPil" if hasattr(transformers, "Siglip2ImageProcessorPil") else "Siglip2ImageProcessor"
    return getattr(transformers, name)(patch_size=4, max_num_patches=24)


def siglip2_vision_model(folder, slow):
    entry = image_entry(folder, _siglip2_image_processor(), "Siglip2VisionModel", "AutoModel",
                        transformers.Siglip2VisionConfig(**SIGLIP2_VISION),
                        outputs=("last_hidden_state", "pooler_output"))
    entry["inputs"] = ["pixel_values", "pixel_attention_mask", "spatial_shapes"]
    return entry


def siglip2(folder, slow):
    tokenizer = _gemma_tokenizer(False)  # SigLIP 2 ships Gemma's tokenizer (tokenizer.json)
    tokenizer.model_max_length = 16
    transformers.Siglip2Processor(image_processor=_siglip2_image_processor(), tokenizer=tokenizer).save_pretrained(folder)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=16, projection_size=32)
    config = transformers.Siglip2Config(text_config=text, vision_config=SIGLIP2_VISION)
    model = make("Siglip2Model", config)
    with torch.no_grad():
        model.logit_scale.fill_(1.5)
        model.logit_bias.fill_(-0.7)
    call = {"kind": "processor", "kwargs": {"text": ["a photo of a cat", "the dog"], "images": "@images",
                                            "padding": "max_length", "max_length": 16,
                                            "patch_size": 4, "max_num_patches": 24}}
    return dict(model=model, auto="AutoModelForZeroShotImageClassification", call=call,
                inputs=["input_ids", "attention_mask", "pixel_values", "pixel_attention_mask", "spatial_shapes"],
                outputs=["logits_per_image", "text_embeds", "image_embeds"])


ONEVISION = {"num_image_tokens": 16, "vision_feature_select_strategy": "full", "vision_aspect_ratio": "anyres_max_2",
             "image_token": "<image>"}
PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]


def llava_onevision(folder, slow):
    """The reference's LlavaOnevisionProcessor insists on a video processor (torchvision, not
    installed): the folder's processor_config.json is written by hand, the image processor is
    the preprocessing compared, and the prompt's ids come from the processor built in memory."""
    from transformers import processing_utils

    tokenizer = _llama_tokenizer(False)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    name = "LlavaOnevisionImageProcessor" + ("Pil" if hasattr(transformers, "LlavaOnevisionImageProcessorPil") else "")
    image_processor = getattr(transformers, name)(size={"height": 32, "width": 32}, image_grid_pinpoints=PINPOINTS)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    (folder / "processor_config.json").write_text(json.dumps({"processor_class": "LlavaOnevisionProcessor",
                                                             **ONEVISION}, indent=1) + "\n")
    vision = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                             num_attention_heads=4, image_size=32, patch_size=8, vision_use_head=False)
    text = transformers.Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48,
                                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                    max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = transformers.LlavaOnevisionConfig(
        vision_config=vision.to_dict(), text_config=text.to_dict(), image_grid_pinpoints=PINPOINTS,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_aspect_ratio="anyres_max_2",
        pad_token_id=0)
    model = make("LlavaOnevisionForConditionalGeneration", config)

    def prompt_ids(inputs):
        check = processing_utils.ProcessorMixin.check_argument_for_proper_class
        processing_utils.ProcessorMixin.check_argument_for_proper_class = \
            lambda self, name, arg: None if arg is None else check(self, name, arg)
        try:
            processor = transformers.LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                                             **ONEVISION)
        finally:
            processing_utils.ProcessorMixin.check_argument_for_proper_class = check
        from zoo_inputs import resolve

        encoded = processor(images=resolve("@image"), text=[LLAVA_PROMPT], return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    return dict(model=model, auto="AutoModelForImageTextToText", call={"kind": "image_processor", "args": ["@image"]},
                inputs=["pixel_values", "image_sizes"], extra=prompt_ids, outputs=["logits"])


# 24-pixel views of 6x6 patches over a 5x5 position table: the patch positions are bucketed
# (i / 6 against k / 5), and no fraction sits on a bucket edge, where 4.x's bucketing
# (i / n * (1 - 1e-6)) and 5.x's (i * (1 / n), clamped) part ways.
IDEFICS3_IMAGES = {"size": {"longest_edge": 48}, "max_image_size": {"longest_edge": 24}}


def idefics3(folder, slow, kind="idefics3"):
    """Idefics3 / SmolVLM: images cut into 32x32 tiles plus a global view. The folder's
    processor_config.json is written by hand (the reference's processors insist on torchvision's
    image processor; SmolVLM's also on a video processor); the prompt's ids (the image written out
    as its tiles' tokens) come from Idefics3's processor built in memory."""
    from transformers import processing_utils

    prefix = "SmolVLM" if kind == "smolvlm" else "Idefics3"
    tokenizer = _llama_tokenizer(False)
    tokenizer.add_special_tokens({"additional_special_tokens": [
        "<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]})
    tokenizer.add_tokens([f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)])
    name = prefix + "ImageProcessor" + ("Pil" if hasattr(transformers, prefix + "ImageProcessorPil") else "")
    image_processor = getattr(transformers, name)(**IDEFICS3_IMAGES)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    (folder / "processor_config.json").write_text(json.dumps({"processor_class": prefix + "Processor",
                                                             "image_seq_len": 9}, indent=1) + "\n")
    vision = dict(hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                  image_size=20, patch_size=4)
    text = transformers.LlamaConfig(vocab_size=len(tokenizer), **{**DECODER, "max_position_embeddings": 512},
                                    bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = getattr(transformers, prefix + "Config")(
        vision_config=vision, text_config=text.to_dict(), scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=kind == "smolvlm")
    model = make(prefix + "ForConditionalGeneration", config)

    def prompt_ids(inputs):
        check = processing_utils.ProcessorMixin.check_argument_for_proper_class
        processing_utils.ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None
        try:  # (SmolVLM's image processor in Idefics3's processor: the same expansion)
            processor = transformers.Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                                       image_seq_len=9)
        finally:
            processing_utils.ProcessorMixin.check_argument_for_proper_class = check
        from zoo_inputs import resolve

        encoded = processor(images=[[resolve("@image")]], text=["User:<image>What is shown?"],
                            return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    return dict(model=model, auto="AutoModelForImageTextToText", call={"kind": "image_processor", "args": ["@image"]},
                inputs=["pixel_values", "pixel_attention_mask"], extra=prompt_ids, outputs=["logits"])


def smolvlm(folder, slow):
    return idefics3(folder, slow, kind="smolvlm")


QWEN2_VL_PROMPT = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>and"
                   "<|vision_start|><|image_pad|><|vision_end|>What is shown?<|im_end|>\n<|im_start|>assistant\n")


def qwen2_vl(folder, slow, kind="qwen2_vl"):
    """Qwen2-VL / Qwen2.5-VL (7-pixel patches, images resized down to max_pixels, 14-pixel
    windows: one merge block each): dynamic-resolution patch rows and M-RoPE. The folder's processor_config.json is written by hand (the reference's
    processor insists on a video processor, torchvision); the prompt's ids (two images, each
    <|image_pad|> expanded) come from the processor built in memory."""
    from transformers import processing_utils

    prefix = "Qwen2VL" if kind == "qwen2_vl" else "Qwen2_5_VL"
    tokenizer = _llama_tokenizer(False)
    tokenizer.add_special_tokens({"additional_special_tokens": [
        "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]})
    name = "Qwen2VLImageProcessor" + ("Pil" if hasattr(transformers, "Qwen2VLImageProcessorPil") else "")
    image_processor = getattr(transformers, name)(min_pixels=14 * 14, max_pixels=1000, patch_size=7)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    (folder / "processor_config.json").write_text(json.dumps({"processor_class": prefix + "Processor"}) + "\n")
    ids = {f"{part}_token_id": tokenizer.convert_tokens_to_ids(f"<|{token}|>")
           for part, token in (("image", "image_pad"), ("video", "video_pad"), ("vision_start", "vision_start"),
                               ("vision_end", "vision_end"))}
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6,
                rope_theta=5000.0, rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
                bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if kind == "qwen2_vl":
        vision = dict(depth=2, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=7)
    else:
        vision = dict(depth=2, hidden_size=16, intermediate_size=24, out_hidden_size=32, num_heads=2,
                      window_size=14, fullatt_block_indexes=[1], patch_size=7)
    config = getattr(transformers, prefix + "Config")(vision_config=vision, text_config=text, **ids)
    model = make(prefix + "ForConditionalGeneration", config)

    def prompt_ids(inputs):
        check = processing_utils.ProcessorMixin.check_argument_for_proper_class
        processing_utils.ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None
        try:  # (4.x also insists on a Qwen2 tokenizer class)
            processor = getattr(transformers, prefix + "Processor")(image_processor=image_processor,
                                                                    tokenizer=tokenizer)
        finally:
            processing_utils.ProcessorMixin.check_argument_for_proper_class = check
        from zoo_inputs import resolve

        encoded = processor(images=resolve("@images"), text=[QWEN2_VL_PROMPT], return_tensors="pt")
        keys = ("input_ids", "attention_mask", "mm_token_type_ids")  # (5.x's model needs the types)
        return {key: encoded[key] for key in keys if key in encoded}

    return dict(model=model, auto="AutoModelForImageTextToText", call={"kind": "image_processor", "args": ["@images"]},
                inputs=["pixel_values", "image_grid_thw"], extra=prompt_ids, outputs=["logits"])


def qwen2_5_vl(folder, slow):
    return qwen2_vl(folder, slow, kind="qwen2_5_vl")


# --- EnCodec and MusicGen (1200 Hz audio: frames of 6 samples, 64-entry codebooks) ------------

ENCODEC = dict(hidden_size=16, num_filters=4, upsampling_ratios=[3, 2], codebook_size=64, num_lstm_layers=1,
               target_bandwidths=[2.4, 4.8], sampling_rate=1200, kernel_size=5, last_kernel_size=3,
               residual_kernel_size=3, dilation_growth_rate=3, compress=2)


def _codebooks(model) -> None:
    """The codebooks (zeros at init) drawn at random, so that codes and audio carry signal."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("codebook.embed"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator))


def encodec(folder, slow):
    """EnCodec's forward (encode to codes at the smallest bandwidth, decode to audio) on the
    zoo's audio cut to 1500 samples; 4.x saves weight norm as weight_g / weight_v, 5.x as
    parametrizations."""
    transformers.EncodecFeatureExtractor(sampling_rate=1200).save_pretrained(folder)
    config = transformers.EncodecConfig(**ENCODEC, use_causal_conv=False, norm_type="time_group_norm")
    torch.manual_seed(0)
    model = transformers.EncodecModel(config).eval()
    _codebooks(model)
    call = {"kind": "feature_extractor", "args": ["@audio"],
            "kwargs": {"sampling_rate": 1200, "truncation": True, "max_length": 1500}}
    return dict(model=model, auto="AutoModel", call=call, inputs=["input_values", "padding_mask"],
                outputs=["audio_codes", "audio_values"])


def musicgen(folder, slow):
    """MusicGen's decoder logits (4 codebooks) for fixed codes, conditioned on the padded texts
    through its T5 encoder; the processor (T5 tokenizer + EnCodec feature extractor) saved."""
    spiece = spm_model(90, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    tokenizer = from_files("T5Tokenizer", slow, {"spiece.model": spiece}, extra_ids=10, model_max_length=64)
    extractor = transformers.EncodecFeatureExtractor(sampling_rate=1200)
    transformers.MusicgenProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    text = transformers.T5Config(vocab_size=len(tokenizer), **{**T5_SIZES, "d_model": 24, "d_kv": 8,
                                                               "num_heads": 3, "d_ff": 20},
                                 feed_forward_proj="gated-gelu")
    decoder = transformers.MusicgenDecoderConfig(
        vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, ffn_dim=24, num_codebooks=4,
        max_position_embeddings=64, pad_token_id=32, bos_token_id=32, decoder_start_token_id=32)
    codec = transformers.EncodecConfig(**{**ENCODEC, "hidden_size": 8, "num_filters": 2, "codebook_size": 32})
    config = transformers.MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=codec.to_dict(),
                                         decoder=decoder.to_dict())
    torch.manual_seed(0)
    model = transformers.MusicgenForConditionalGeneration(config).eval()
    _codebooks(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 and name.startswith(("decoder.", "text_encoder.")) and "embed_positions" not in name:
                param.normal_(0.0, 0.3)  # (4.x keeps the sinusoidal table as a parameter: not that)
    codes = torch.randint(0, 32, (2 * 4, 6), generator=torch.Generator().manual_seed(0))
    codes[:, 0] = 32  # each codebook's row starts at the decoder's start token
    return dict(model=model, auto="AutoModelForTextToWaveform",
                call={"kind": "processor", "kwargs": {"text": "@texts", "padding": True}},
                inputs=["input_ids", "attention_mask"], extra={"decoder_input_ids": codes}, outputs=["logits"])


def musicgen_melody(folder, slow):
    """MusicGen Melody's decoder logits over its prefix (a 3-frame chroma repeated to
    chroma_length 5, then the padded texts' T5 states) and fixed codes. Only the tokenizer is
    saved: the reference's chroma feature extractor needs torchaudio (tests/models/
    test_musicgen_melody.py compares it)."""
    spiece = spm_model(90, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    tokenizer = from_files("T5Tokenizer", slow, {"spiece.model": spiece}, extra_ids=10, model_max_length=64)
    tokenizer.save_pretrained(folder)
    text = transformers.T5Config(vocab_size=len(tokenizer), **{**T5_SIZES, "d_model": 24, "d_kv": 8,
                                                               "num_heads": 3, "d_ff": 20},
                                 feed_forward_proj="gated-gelu")
    decoder = transformers.MusicgenMelodyDecoderConfig(
        vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, ffn_dim=24, num_codebooks=4,
        max_position_embeddings=64, pad_token_id=32, bos_token_id=32, decoder_start_token_id=32)
    codec = transformers.EncodecConfig(**{**ENCODEC, "hidden_size": 8, "num_filters": 2, "codebook_size": 32})
    config = transformers.MusicgenMelodyConfig(text_encoder=text.to_dict(), audio_encoder=codec.to_dict(),
                                               decoder=decoder.to_dict(), chroma_length=5)
    torch.manual_seed(0)
    model = transformers.MusicgenMelodyForConditionalGeneration(config).eval()
    _codebooks(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 and not name.startswith("audio_encoder.") and "embed_positions" not in name:
                param.normal_(0.0, 0.3)
    codes = torch.randint(0, 32, (2 * 4, 6), generator=torch.Generator().manual_seed(0))
    codes[:, 0] = 32
    chroma = torch.nn.functional.one_hot(torch.randint(0, 12, (2, 3), generator=torch.Generator().manual_seed(1)),
                                         12).float()
    return dict(model=model, auto="AutoModelForTextToWaveform", call=dict(TEXT_CALL),
                inputs=["input_ids", "attention_mask"], extra={"decoder_input_ids": codes, "input_features": chroma},
                outputs=["logits"])


def bark(folder, slow):
    """Bark (BarkModel: semantic, coarse and fine GPTs and an EnCodec) with its BERT tokenizer,
    the BarkProcessor's padded ids and the nested generation_config.json the Hub's folders hold.
    BarkModel has no forward: the semantic stage's logits on the processor's ids are compared.
    The codec's 128-entry codebooks at 1.5 kbps and 75 frames/s make 2 quantizers under 4.x's
    count (10 bits each) and 5.x's (7 bits each) alike. 4.57 cannot build bias-free stages
    (its _init_weights zeroes LayerNorm biases that are None): there they keep their biases."""
    tokenizer = from_files("BertTokenizer", slow, wordpiece_files(), model_max_length=64)
    transformers.BarkProcessor(tokenizer=tokenizer).save_pretrained(folder)
    semantic, offset, codebook = 40, 48, 128  # semantic ids 0..39 then EOS; text ids from 48 on
    coarse_vocab = semantic + 2 * codebook + 3
    stage = dict(hidden_size=8, num_heads=2, num_layers=2)
    config = transformers.BarkConfig(
        semantic_config=transformers.BarkSemanticConfig(
            input_vocab_size=offset + len(tokenizer) + 4, output_vocab_size=semantic + 6, block_size=48,
            bias=(4, 50) <= VERSION < (5, 0), **{**stage, "hidden_size": 12}).to_dict(),
        coarse_acoustics_config=transformers.BarkCoarseConfig(
            input_vocab_size=coarse_vocab, output_vocab_size=coarse_vocab, block_size=32, **stage).to_dict(),
        fine_acoustics_config=transformers.BarkFineConfig(
            input_vocab_size=codebook + 1, output_vocab_size=codebook + 1, block_size=24, n_codes_total=2,
            n_codes_given=1, **stage).to_dict(),
        codec_config=transformers.EncodecConfig(
            hidden_size=4, num_filters=2, upsampling_ratios=[16, 20], codebook_size=codebook, kernel_size=3,
            last_kernel_size=3, num_lstm_layers=1, target_bandwidths=[1.5], sampling_rate=24000).to_dict())
    torch.manual_seed(0)
    model = transformers.BarkModel(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 and not name.startswith("codec_model"):
                param.normal_(0.0, 0.3)
    _codebooks(model)
    generation = {
        "semantic_config": {"semantic_vocab_size": semantic, "eos_token_id": semantic,
                            "text_encoding_offset": offset, "text_pad_token": offset + len(tokenizer),
                            "semantic_infer_token": offset + len(tokenizer) + 3, "max_input_semantic_length": 16,
                            "semantic_rate_hz": 49.9, "max_new_tokens": 12},
        "coarse_acoustics_config": {"coarse_semantic_pad_token": semantic + 2 * codebook,
                                    "coarse_infer_token": semantic + 2 * codebook + 2, "n_coarse_codebooks": 2,
                                    "max_coarse_input_length": 12, "max_coarse_history": 20,
                                    "sliding_window_len": 6, "coarse_rate_hz": 75},
        "fine_acoustics_config": {"max_fine_history_length": 8, "max_fine_input_length": 16,
                                  "n_fine_codebooks": 2},
        "sample_rate": 24000, "codebook_size": codebook}
    model.generation_config = transformers.GenerationConfig(**generation)  # (BarkGenerationConfig cannot save)
    return dict(model=model, auto="AutoModel", module="semantic",
                call={"kind": "processor", "args": ["@texts"], "kwargs": {"max_length": 16}},
                inputs=["input_ids", "attention_mask"], outputs=["logits"])


RECIPES = {
    "bert": bert, "distilbert": distilbert, "roberta": roberta, "xlm-roberta": xlm_roberta,
    "camembert": camembert, "gpt2": gpt2, "llama": llama, "mistral": mistral, "qwen2": qwen2,
    "opt": opt, "t5": t5, "mt5": mt5, "bart": bart, "marian": marian, "tapas": tapas,
    "layoutlm": layoutlm, "whisper": whisper, "wav2vec2": wav2vec2, "vit": vit, "swin": swin,
    "convnext": convnext, "resnet": resnet, "detr": detr, "dpt": dpt, "depth_anything": depth_anything,
    "segformer": segformer, "swin2sr": swin2sr, "videomae": videomae,
    "vision-encoder-decoder": vision_encoder_decoder, "clip": clip, "owlvit": owlvit, "owlv2": owlv2,
    "blip": blip, "vilt": vilt, "llava": llava, "electra": electra, "mpnet": mpnet, "deberta-v2": deberta_v2,
    "hubert": hubert, "wavlm": wavlm, "modernbert": modernbert, "vits": vits, "siglip": siglip, "clap": clap,
    "sam": sam, "sam_hq": sam_hq, "sam2": sam2, "sam2_video": sam2_video,
    "qwen3": qwen3, "qwen3_moe": qwen3_moe, "gemma2": gemma2, "gemma3_text": gemma3_text, "phi3": phi3,
    "gpt_neox": gpt_neox, "deit": deit, "dinov2": dinov2, "audio-spectrogram-transformer": audio_spectrogram_transformer,
    "hifigan": hifigan, "speecht5_hifigan": hifigan, "speecht5": speecht5, "rt_detr_resnet": rt_detr_resnet, "rt_detr": rt_detr,
    "rt_detr_v2": rt_detr_v2, "siglip_vision_model": siglip_vision_model,
    "siglip2_vision_model": siglip2_vision_model, "siglip2": siglip2,
    "llava_onevision": llava_onevision, "idefics3": idefics3, "smolvlm": smolvlm,
    "qwen2_vl": qwen2_vl, "qwen2_5_vl": qwen2_5_vl, "encodec": encodec, "musicgen": musicgen,
    "musicgen_melody": musicgen_melody,
    "bark": bark,
}
# model types an era saves that its AutoConfig does not list (4.x's SpeechT5 vocoder: "hifigan")
SAVED_TYPES = {"hifigan"} if getattr(transformers.SpeechT5HifiGanConfig, "model_type", "") == "hifigan" else set()
