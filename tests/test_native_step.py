"""The C decoding step (lightpipe/quantization/step.py): quantized Llama-shaped models decode one
token per C call; the numbers match the reference run on the same (dequantized) weights."""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.models.cache import KVCache
from lightpipe.quantization import kernels, step

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the C kernel needs a compiler")

PROMPT = torch.tensor([[5, 17, 99, 3, 150, 42, 8]])


def build(tmp_path_factory, family: str):
    torch.manual_seed(0)
    if family == "qwen2":  # q/k/v biases, grouped-query attention
        config = transformers.Qwen2Config(
            vocab_size=200, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            rope_theta=5000.0, tie_word_embeddings=False)
        reference = transformers.Qwen2ForCausalLM(config)
    elif family == "qwen3":  # per-head query/key RMSNorms before RoPE
        config = transformers.Qwen3Config(
            vocab_size=200, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=24,
            max_position_embeddings=128, tie_word_embeddings=False)
        reference = transformers.Qwen3ForCausalLM(config)
        with torch.no_grad():  # norms off their default ones, so a skipped norm shows
            for layer in reference.model.layers:
                layer.self_attn.q_norm.weight.uniform_(0.5, 1.5)
                layer.self_attn.k_norm.weight.uniform_(0.5, 1.5)
    else:  # llama: no biases, as many key/value heads as query heads, head_dim 32, tied
        config = transformers.LlamaConfig(
            vocab_size=200, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
            rms_norm_eps=1e-5, tie_word_embeddings=True)
        reference = transformers.LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("native") / family
    reference.eval().save_pretrained(folder)
    return folder, reference


@pytest.fixture(scope="module", params=["qwen2", "llama", "qwen3"])
def pair(request, tmp_path_factory):
    """Our int4 model, and the reference holding the very weights our codes stand for."""
    folder, reference = build(tmp_path_factory, request.param)
    model = lightpipe.AutoModelForCausalLM.from_pretrained(folder, quantization="int4:g32:fp32")
    _give_reference_our_weights(model, reference)
    return model, reference


def _give_reference_our_weights(model, reference) -> None:
    """The reference's projections set to the weights our int4 codes stand for."""
    with torch.no_grad():
        for ours, theirs in zip(model.model.layers, reference.model.layers):
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                getattr(theirs.self_attn, name).weight.copy_(
                    getattr(ours.self_attn, name).dense_weight())
            for name in ("gate_proj", "up_proj", "down_proj"):
                getattr(theirs.mlp, name).weight.copy_(getattr(ours.mlp, name).dense_weight())


class Spy:
    """Counts the steps the C code ran (``__call__`` returned hidden states)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = step.DecodeStep.__call__

        def counted(this, *args):
            out = original(this, *args)
            self.calls += out is not None
            return out

        monkeypatch.setattr(step.DecodeStep, "__call__", counted)


def test_decodes_in_c_and_matches_reference(pair, monkeypatch):
    model, reference = pair
    spy = Spy(monkeypatch)
    steps = 12
    ours = model.generate(PROMPT, max_new_tokens=steps, do_sample=False, output_scores=True,
                          return_dict_in_generate=True)
    theirs = reference.generate(PROMPT, max_new_tokens=steps, do_sample=False,
                                output_scores=True, return_dict_in_generate=True)
    assert spy.calls == steps - 1  # every step after the prompt's
    assert kernels.thread_cap is None  # generate() ended: the products' own counts again
    assert torch.equal(ours.sequences, theirs.sequences)
    for got, want in zip(ours.scores, theirs.scores):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def _plan_and_step_runs(model, monkeypatch, ids, **kwargs) -> dict:
    """10 greedy tokens with scores from the Python plan ("python") and the C step on 1 and 2
    threads ("c1", "c2"; even tiny products split)."""
    runs = {}
    threads = torch.get_num_threads()
    monkeypatch.setattr(step, "PARALLEL_FROM", 1)
    try:
        for name, flag, count in (("python", "0", 1), ("c1", "1", 1), ("c2", "1", 2)):
            monkeypatch.setenv("LIGHTPIPE_NATIVE_STEP", flag)
            torch.set_num_threads(count)
            runs[name] = model.generate(ids, max_new_tokens=10, do_sample=False, output_scores=True,
                                        return_dict_in_generate=True, **kwargs)
    finally:
        torch.set_num_threads(threads)
    return runs


def test_same_numbers_as_the_python_plan_and_across_threads(pair, monkeypatch):
    """The C step against the Python plan (LIGHTPIPE_NATIVE_STEP=0) on the same model: the
    same maths in another summation order (x quantized to int16 in both, the layers' default:
    an input that differs in its last float bit may round to the next int16 step, so 1e-4 of
    the largest logit); and 2 threads give the 1-thread numbers exactly
    (each output row and each head is computed by one thread)."""
    model, _ = pair
    runs = _plan_and_step_runs(model, monkeypatch, PROMPT)
    assert torch.equal(runs["python"].sequences, runs["c1"].sequences)
    for got, want in zip(runs["c1"].scores, runs["python"].scores):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    for got, want in zip(runs["c2"].scores, runs["c1"].scores):
        assert torch.equal(got, want)


def test_int8_activations_in_the_c_step(pair, monkeypatch):
    """With int8_activations the C step calls the int8-activation products: the numbers of the
    Python plan's int8-activation layers (same quantized x, same integer sums), not the exact
    ones."""
    from lightpipe.quantization import set_int8_activations

    model, _ = pair
    spy = Spy(monkeypatch)
    settings = dict(max_new_tokens=8, do_sample=False, output_scores=True,
                    return_dict_in_generate=True)
    exact = model.generate(PROMPT, **settings)
    set_int8_activations(model, True)
    try:
        native = model.generate(PROMPT, **settings)
        monkeypatch.setenv("LIGHTPIPE_NATIVE_STEP", "0")
        plan = model.generate(PROMPT, **settings)
    finally:
        set_int8_activations(model, False)
    assert spy.calls == 2 * 7  # the exact run and the native int8-activation run
    differ = 0.0
    for got, want, float_path in zip(native.scores[1:], plan.scores[1:], exact.scores[1:]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
        differ = max(differ, (got - float_path).abs().max().item())
    assert differ > 1e-6  # the int8 path really ran


def test_cache_growth(pair, monkeypatch):
    """Decoding past the cache's capacity grows it (the C step's table follows the new
    buffers)."""
    model, reference = pair
    spy = Spy(monkeypatch)
    cache = KVCache(capacity=PROMPT.shape[1])  # full after the prompt
    model.begin_decode()
    try:
        with torch.no_grad():
            out = model(PROMPT, cache=cache, use_cache=True, logits_to_keep=1)
            tokens = [int(out.logits[0, -1].argmax())]
            for _ in range(5):
                out = model(torch.tensor([[tokens[-1]]]), cache=cache, use_cache=True)
                tokens.append(int(out.logits[0, -1].argmax()))
    finally:
        model.end_decode()
    assert spy.calls == 5 and cache.keys[0].shape[2] > PROMPT.shape[1]
    want = reference.generate(PROMPT, max_new_tokens=6, do_sample=False)[0, PROMPT.shape[1]:]
    assert tokens == want.tolist()


BATCH = torch.tensor([[5, 17, 99, 3, 150, 42], [0, 0, 4, 8, 15, 16], [0, 23, 42, 7, 1, 9]])
BATCH_MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]])


def test_batches_with_left_padding_decode_in_c(pair, monkeypatch):
    """A batch of three prompts, two left-padded: every step after the prompt's runs in C
    (per-row positions, cache rows and padding masks) with the reference's tokens and scores;
    a padded single prompt too."""
    model, reference = pair
    spy = Spy(monkeypatch)
    settings = dict(max_new_tokens=8, do_sample=False, output_scores=True,
                    return_dict_in_generate=True)
    ours = model.generate(BATCH, attention_mask=BATCH_MASK, **settings)
    theirs = reference.generate(BATCH, attention_mask=BATCH_MASK, **settings)
    assert spy.calls == 7
    assert torch.equal(ours.sequences, theirs.sequences)
    for got, want in zip(ours.scores, theirs.scores):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    spy.calls = 0
    padded = model.generate(torch.tensor([[0, 5, 17]]), attention_mask=torch.tensor([[0, 1, 1]]),
                            max_new_tokens=3, do_sample=False)
    assert spy.calls == 2
    assert torch.equal(padded, reference.generate(torch.tensor([[0, 5, 17]]), max_new_tokens=3,
                                                  attention_mask=torch.tensor([[0, 1, 1]]),
                                                  do_sample=False))


def test_batches_same_numbers_as_the_python_plan(pair, monkeypatch):
    """Batched C steps against the Python plan on the same model and batch (the products'
    kernels take all rows at once in both)."""
    model, _ = pair
    runs = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("LIGHTPIPE_NATIVE_STEP", flag)
        runs[flag] = model.generate(BATCH, attention_mask=BATCH_MASK, max_new_tokens=6,
                                    do_sample=False, output_scores=True,
                                    return_dict_in_generate=True)
    assert torch.equal(runs["0"].sequences, runs["1"].sequences)
    for got, want in zip(runs["1"].scores, runs["0"].scores):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_beam_search_decodes_in_c(pair, monkeypatch):
    """Beams are rows of the batch: after each step the cache rows are reordered (new buffers:
    the C step's table follows them); the reference's beams and scores."""
    model, reference = pair
    spy = Spy(monkeypatch)
    settings = dict(max_new_tokens=6, num_beams=3, do_sample=False, output_scores=True,
                    return_dict_in_generate=True, length_penalty=1.0, early_stopping=True)
    ours = model.generate(BATCH[:2], attention_mask=BATCH_MASK[:2], **settings)
    theirs = reference.generate(BATCH[:2], attention_mask=BATCH_MASK[:2], **settings)
    assert spy.calls >= 4
    assert torch.equal(ours.sequences, theirs.sequences)
    torch.testing.assert_close(ours.sequences_scores, theirs.sequences_scores, rtol=1e-4, atol=1e-4)


def test_sliding_window_in_reach_decodes_in_c(tmp_path_factory, monkeypatch):
    """Mistral with a window of 4: once the window is in reach its mask goes to the C step,
    which attends to the last 4 positions only (the reference's tokens and scores)."""
    torch.manual_seed(1)
    config = transformers.MistralConfig(
        vocab_size=200, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        sliding_window=4, tie_word_embeddings=False)
    reference = transformers.MistralForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("native") / "mistral"
    reference.save_pretrained(folder)
    model = lightpipe.AutoModelForCausalLM.from_pretrained(folder, quantization="int4:g32:fp32")
    _give_reference_our_weights(model, reference)
    spy = Spy(monkeypatch)
    settings = dict(max_new_tokens=8, do_sample=False, output_scores=True,
                    return_dict_in_generate=True)
    ours = model.generate(PROMPT, **settings)
    theirs = reference.generate(PROMPT, **settings)
    assert spy.calls == 7
    assert torch.equal(ours.sequences, theirs.sequences)
    for got, want in zip(ours.scores, theirs.scores):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory):
    """Our int8-dynamic Qwen2 (q/k/v biases, grouped-query attention) and the float one."""
    folder, _ = build(tmp_path_factory, "qwen2")
    return (lightpipe.AutoModelForCausalLM.from_pretrained(folder, quantization="int8-dynamic"),
            lightpipe.AutoModelForCausalLM.from_pretrained(folder))


@pytest.mark.parametrize("path", ["auto", "vnni order"])
@pytest.mark.parametrize("batch", ["one", "padded batch"])
def test_int8_dynamic_decodes_in_c_with_the_python_plans_numbers(dynamic, batch, path, monkeypatch):
    """int8-dynamic layers (FBGEMM in the Python plan) run in the C step through kernels.c's
    dyn8_mm: the same per-row activation codes and integer sums (dyn8_mm equals the layer's
    FBGEMM output bit for bit: test_quantization), so the Python plan's tokens and scores. The
    step's norms and attention sum in another order, and an input one float bit off may round
    to the neighbouring 8-bit code (1/255 of the row's span): within a third of the int8 error
    itself (int8-dynamic is ~1e-2 of the largest logit from the float model), and no further
    from the float model than the Python plan is."""
    from lightpipe.quantization.dynamic import DynamicInt8Linear

    from lightpipe.quantization import dynamic as dynamic_module

    dynamic, float_model = dynamic
    assert isinstance(dynamic.model.layers[0].mlp.down_proj, DynamicInt8Linear)
    if path == "vnni order":  # what a CPU without AMX runs: the products from VNNI-order copies
        monkeypatch.setattr(dynamic_module, "_amx", False)
    prompts, mask = (PROMPT, None) if batch == "one" else (BATCH, BATCH_MASK)
    spy = Spy(monkeypatch)
    settings = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, output_scores=True,
                    return_dict_in_generate=True)
    native = dynamic.generate(prompts, **settings)
    assert spy.calls == 7
    if path == "vnni order":
        assert dynamic.model.layers[0].mlp.down_proj.vnni_form() is not None
    monkeypatch.setenv("LIGHTPIPE_NATIVE_STEP", "0")
    plan = dynamic.generate(prompts, **settings)
    assert spy.calls == 7
    assert torch.equal(native.sequences, plan.sequences)
    monkeypatch.delenv("LIGHTPIPE_NATIVE_STEP")
    exact = float_model.generate(prompts, **settings)
    for got, want, reference in zip(native.scores, plan.scores, exact.scores):
        ours, theirs = (got - reference).abs().max(), (want - reference).abs().max()
        assert (got - want).abs().max() <= theirs / 3
        assert ours <= 1.5 * theirs + 1e-4 * reference.abs().max()


def test_switched_off_and_16_bit_models_build_nothing(pair, monkeypatch, tmp_path_factory):
    model, _ = pair
    monkeypatch.setenv("LIGHTPIPE_NATIVE_STEP", "0")
    model.begin_decode()
    try:
        assert model.model.native_step is None
    finally:
        model.end_decode()
    monkeypatch.delenv("LIGHTPIPE_NATIVE_STEP")
    folder, _ = build(tmp_path_factory, "llama")
    half = lightpipe.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)

    def refuse():
        raise AssertionError("a 16-bit model must not build the kernels")

    monkeypatch.setattr(kernels, "available", refuse)
    half.begin_decode()
    try:
        assert half.model.native_step is None
    finally:
        half.end_decode()


@pytest.fixture(scope="module", params=["qwen2", "llama", "qwen3"])
def dense_pair(request, tmp_path_factory):
    """Our float32 model and the reference, the same checkpoint."""
    folder, reference = build(tmp_path_factory, request.param)
    return lightpipe.AutoModelForCausalLM.from_pretrained(folder), reference


def test_float32_models_decode_in_c_and_match_reference(dense_pair, monkeypatch):
    """A float32 model's steps run in C too (kernels.f32_mm reads each weight as it is): the
    reference's greedy tokens and scores (another summation order: ~1e-6), batch 1 and a left-
    padded batch of 2; the Python plan's tokens; 2 threads give the 1-thread numbers exactly."""
    model, reference = dense_pair
    spy = Spy(monkeypatch)
    steps = 12
    prompts = torch.tensor([[5, 17, 99, 3, 150, 42, 8], [0, 0, 0, 7, 61, 23, 140]])
    mask = torch.tensor([[1] * 7, [0, 0, 0, 1, 1, 1, 1]])
    for ids, attention in ((PROMPT, None), (prompts, mask)):
        kwargs = dict(max_new_tokens=steps, do_sample=False, output_scores=True,
                      return_dict_in_generate=True, pad_token_id=0)
        if attention is not None:
            kwargs["attention_mask"] = attention
        calls = spy.calls
        ours = model.generate(ids, **kwargs)
        theirs = reference.generate(ids, **kwargs)
        assert spy.calls - calls == steps - 1
        assert torch.equal(ours.sequences, theirs.sequences)
        for got, want in zip(ours.scores, theirs.scores):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    runs = _plan_and_step_runs(model, monkeypatch, prompts, attention_mask=mask, pad_token_id=0)
    assert torch.equal(runs["python"].sequences, runs["c1"].sequences)
    for got, want in zip(runs["c2"].scores, runs["c1"].scores):
        assert torch.equal(got, want)


def test_f32_mm_matches_f_linear():
    """kernels.f32_mm (the C step's float32 product): F.linear's numbers to float rounding, for
    inputs not a multiple of the vector width (masked tails), 1-9 rows, weight rows not a
    multiple of 4, a bias or none, 1 and 2 threads."""
    torch.manual_seed(21)
    for out_features, in_features in ((576, 576), (37, 100), (5, 3), (3, 1537), (64, 16)):
        weight, bias = torch.randn(out_features, in_features), torch.randn(out_features)
        for rows in (1, 2, 3, 4, 5, 9):
            x = torch.randn(rows, in_features)
            for b in (None, bias):
                want = torch.nn.functional.linear(x, weight, b)
                for threads in (1, 2):
                    got = kernels.f32_mm(x, weight, b, threads=threads)
                    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_thread_chooser_keeps_the_faster_count():
    chooser = step.ThreadChooser(2, trials=3, keep=4)
    seconds = {2: 0.010, 1: 0.004}  # a busy machine: one thread is faster
    for _ in range(6):
        threads = chooser.next()
        chooser.record(threads, seconds[threads])
    assert chooser.chosen == 1
    assert [chooser.next() for _ in range(1)] == [1]
    for _ in range(4):  # kept for `keep` steps, then timed again
        chooser.record(chooser.next(), 0.004)
    seconds = {2: 0.002, 1: 0.004}  # quiet again
    for _ in range(6):
        threads = chooser.next()
        chooser.record(threads, seconds[threads])
    assert chooser.chosen == 2
    assert step.ThreadChooser(1).next() == 1


def test_thread_chooser_keeps_a_repeated_choice_longer():
    chooser = step.ThreadChooser(2, trials=2, keep=3, longest=12)
    seconds = {2: 0.002, 1: 0.004}
    spans = []
    for _ in range(5):  # trials, then the kept tokens, five times over
        while chooser.left == 0:
            threads = chooser.next()
            chooser.record(threads, seconds[threads])
        assert chooser.chosen == 2
        spans.append(chooser.left)
        while chooser.left > 0:
            chooser.record(chooser.next(), 0.002)
    assert spans == [3, 6, 12, 12, 12]


def test_thread_chooser_times_again_when_tokens_slow_down():
    chooser = step.ThreadChooser(2, trials=2, keep=8)
    seconds = {2: 0.002, 1: 0.004}
    while chooser.left == 0:
        threads = chooser.next()
        chooser.record(threads, seconds[threads])
    assert chooser.chosen == 2 and chooser.left == 8
    chooser.record(2, 0.0021)
    chooser.record(2, 0.010)  # one slow token (a hiccup) does not end the keeping
    chooser.record(2, 0.0021)
    assert chooser.left == 5
    chooser.record(2, 0.010)  # another process took a core: two slow tokens in a row
    chooser.record(2, 0.012)
    assert chooser.left == 0
    seconds = {2: 0.012, 1: 0.004}
    while chooser.left == 0:
        threads = chooser.next()
        chooser.record(threads, seconds[threads])
    assert chooser.chosen == 1 and chooser.left == 8  # a changed choice: the first span again


def test_float32_models_decoded_in_c_keep_no_packed_copies(dense_pair, monkeypatch):
    """generate() packs a float model's weights into oneDNN's layout for the Python plan; where
    the C step decodes (it reads the weights as they are) it does not: no second copy."""
    from lightpipe.models.linear import PackableLinear

    model, _ = dense_pair

    def packed():
        return [m for m in model.modules() if isinstance(m, PackableLinear) and m.packed_weight() is not None]

    model.unpack_linear_weights()
    model.generate(PROMPT, max_new_tokens=3, do_sample=False)
    assert packed() == []
    monkeypatch.setenv("LIGHTPIPE_NATIVE_STEP", "0")
    try:
        model.generate(PROMPT, max_new_tokens=3, do_sample=False)
        assert packed()  # the Python plan's products read the packed copies
    finally:
        model.unpack_linear_weights()


@pytest.mark.parametrize("skip", ["q_proj", "o_proj"])
def test_partly_quantized_models_decode_right(skip, tmp_path_factory, monkeypatch):
    """Projections left in float by a skip list: a q/k/v group partly float builds no C step
    (the Python plan runs); a float o_proj beside quantized groups is one more product kind in
    the C step. Either way the Python plan's tokens and scores."""
    from lightpipe.quantization import QuantizationSpec

    folder, _ = build(tmp_path_factory, "llama")
    model = lightpipe.AutoModelForCausalLM.from_pretrained(
        folder, quantization=QuantizationSpec("int4", group_size=32, skip=(skip,),
                                              compute_dtype=torch.float32))
    spy = Spy(monkeypatch)
    kwargs = dict(max_new_tokens=8, do_sample=False, output_scores=True, return_dict_in_generate=True)
    got = model.generate(PROMPT, **kwargs)
    assert spy.calls == (7 if skip == "o_proj" else 0)
    monkeypatch.setenv("LIGHTPIPE_NATIVE_STEP", "0")
    want = model.generate(PROMPT, **kwargs)
    assert torch.equal(got.sequences, want.sequences)
    for a, b in zip(got.scores, want.scores):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


@pytest.mark.parametrize("rotary", [1.0, 0.5])
def test_phi3_fused_products_decode_in_c(rotary, tmp_path_factory, monkeypatch):
    """Phi-3's fused q/k/v and gate/up layers are one product each in the C step (their outputs
    are already [q | k | v] and [gate | up]): float32 and int4 models decode there with the
    reference's tokens (float32) and the Python plan's numbers (int4). A rotation over part of
    each head (Phi-4-mini's partial_rotary_factor) stays in Python."""
    torch.manual_seed(0)
    config = transformers.Phi3Config(
        vocab_size=200, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        partial_rotary_factor=rotary, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False)
    reference = transformers.Phi3ForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("phi3") / str(rotary)
    reference.save_pretrained(folder)
    kwargs = dict(max_new_tokens=8, do_sample=False, output_scores=True, return_dict_in_generate=True)
    steps = 7 if rotary == 1.0 else 0
    spy = Spy(monkeypatch)
    dense = lightpipe.AutoModelForCausalLM.from_pretrained(folder)
    got, want = dense.generate(PROMPT, **kwargs), reference.generate(PROMPT, **kwargs)
    assert spy.calls == steps
    assert torch.equal(got.sequences, want.sequences)
    for a, b in zip(got.scores, want.scores):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
    quantized = lightpipe.AutoModelForCausalLM.from_pretrained(folder, quantization="int4:g32:fp32")
    got = quantized.generate(PROMPT, **kwargs)
    assert spy.calls == 2 * steps
    monkeypatch.setenv("LIGHTPIPE_NATIVE_STEP", "0")
    want = quantized.generate(PROMPT, **kwargs)
    assert torch.equal(got.sequences, want.sequences)
    for a, b in zip(got.scores, want.scores):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_few_float32_rows_use_the_c_product_only_where_it_is_loaded(monkeypatch):
    """models.linear.linear(): float32 products of up to F32_ROWS rows go to kernels.f32_mm (the
    output layer after a C step, a Whisper beam's layers) with F.linear's numbers to rounding;
    more rows, another dtype, or a library not loaded yet (it is never built for this: a cold
    start stays cold) keep the old path."""
    from lightpipe.models import linear as L

    assert kernels.available()  # loaded
    calls = []
    real = kernels.f32_mm
    monkeypatch.setattr(kernels, "f32_mm", lambda *a, **k: calls.append(a[0].shape[0]) or real(*a, **k))
    torch.manual_seed(22)
    weight, bias = torch.randn(40, 24), torch.randn(40)
    for shape in ((24,), (1, 24), (2, 3, 24), (8, 24), (9, 24)):
        x = torch.randn(*shape)
        with torch.inference_mode():
            got = L.linear(x, weight, bias)
        want = torch.nn.functional.linear(x, weight, bias)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert calls == [1, 1, 6, 8]
    with torch.inference_mode():
        L.linear(torch.randn(2, 24, dtype=torch.bfloat16), weight.bfloat16())
        monkeypatch.setattr(kernels, "_library", None)  # as before the first build
        L.linear(torch.randn(2, 24), weight)
    assert calls == [1, 1, 6, 8]
