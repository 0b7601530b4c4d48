"""device_map over "cpu" and "disk", max_memory, hf_device_map and clear errors (issue 19);
``lightpipe estimate-memory``. Tiny checkpoints saved by the reference."""

import json

import pytest
import torch
import transformers

import lightpipe
from lightpipe.placement import PlacementError, parse_memory

SPLIT = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "disk",
         "model.layers.1": "cpu", "model.layers.2": "disk", "model.norm": "disk", "lm_head": "disk"}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama_split")
    config = transformers.LlamaConfig(vocab_size=300, hidden_size=48, intermediate_size=80,
                                      num_hidden_layers=3, num_attention_heads=4,
                                      num_key_value_heads=2, tie_word_embeddings=False,
                                      rope_theta=5000.0)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.25)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def prompt():
    torch.manual_seed(1)
    return torch.randint(0, 300, (2, 7))


def _greedy(model, ids):
    with torch.no_grad():
        return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                              do_sample=False, pad_token_id=0)


def test_dict_map_over_cpu_and_disk_matches_unsplit_and_reference(llama, prompt):
    whole = lightpipe.AutoModelForCausalLM.from_pretrained(llama)
    split = lightpipe.AutoModelForCausalLM.from_pretrained(llama, device_map=SPLIT)
    reference = transformers.AutoModelForCausalLM.from_pretrained(llama).eval()
    assert split.hf_device_map == SPLIT
    with torch.no_grad():
        expected = reference(prompt).logits
        torch.testing.assert_close(split(prompt).logits, whole(prompt).logits, rtol=0, atol=0)
        torch.testing.assert_close(split(prompt).logits, expected, rtol=1e-4, atol=1e-4)
    tokens = _greedy(split, prompt)
    assert torch.equal(tokens, _greedy(whole, prompt))
    assert torch.equal(tokens, _greedy(reference, prompt))


def test_disk_weights_view_the_checkpoint_file(llama):
    split = lightpipe.AutoModelForCausalLM.from_pretrained(llama, device_map=SPLIT)
    on_disk = split.model.layers[0].mlp.up_proj.weight
    in_memory = split.model.layers[1].mlp.up_proj.weight
    mapped = (llama / "model.safetensors").read_bytes()
    # the disk weight is a view of the file's bytes (same values, no copy made at load)
    assert on_disk.dtype == torch.float32 and in_memory.dtype == torch.float32
    assert on_disk.detach().numpy().tobytes() in mapped


def test_auto_with_small_cpu_budget_spills_to_disk(llama, prompt):
    whole = lightpipe.AutoModelForCausalLM.from_pretrained(llama)
    auto = lightpipe.AutoModelForCausalLM.from_pretrained(llama, device_map="auto",
                                                          max_memory={"cpu": "100KB"})
    placed = auto.hf_device_map
    assert placed["model.embed_tokens"] == "cpu" and placed["lm_head"] == "disk"
    assert set(placed.values()) == {"cpu", "disk"}
    sizes = {n: p.numel() * 4 for n, p in auto.named_parameters()}
    on_cpu = sum(size for name, size in sizes.items()
                 if any(name.startswith(k + ".") for k, d in placed.items() if d == "cpu"))
    assert on_cpu <= 100_000
    assert torch.equal(_greedy(auto, prompt), _greedy(whole, prompt))
    roomy = lightpipe.AutoModelForCausalLM.from_pretrained(llama, device_map="sequential",
                                                           max_memory={"cpu": "1GiB"})
    assert roomy.hf_device_map == {"": "cpu"}


def test_dtype_change_writes_disk_blocks_to_offload_folder(llama, prompt, tmp_path):
    kwargs = dict(device_map="auto", max_memory={"cpu": 60_000}, dtype=torch.bfloat16)
    with pytest.raises(PlacementError, match="offload_folder"):
        lightpipe.AutoModelForCausalLM.from_pretrained(llama, **kwargs)
    offloaded = lightpipe.AutoModelForCausalLM.from_pretrained(llama, offload_folder=tmp_path, **kwargs)
    assert "disk" in offloaded.hf_device_map.values()
    assert any(p.name.endswith(".safetensors") for p in tmp_path.iterdir())
    whole = lightpipe.AutoModelForCausalLM.from_pretrained(llama, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(offloaded(prompt).logits, whole(prompt).logits)


def test_pipeline_across_the_split(llama, decoder):
    folder = decoder("llama")
    pipe = lightpipe.pipeline("text-generation", model=str(folder), device_map="auto",
                              model_kwargs={"max_memory": {"cpu": "20KB"}})
    assert "disk" in pipe.model.hf_device_map.values()
    reference = transformers.pipeline("text-generation", model=str(folder))
    settings = {"max_new_tokens": 8, "do_sample": False}
    assert pipe("Hello there", **settings) == reference("Hello there", **settings)


@pytest.mark.parametrize("device_map, max_memory, message", [
    ({"model.layerz.0": "cpu", "": "cpu"}, None, "Did you mean 'model.layers.0'"),
    ({"model": "cpu"}, None, "without a device: lm_head.weight"),
    ({"": "gpu"}, None, "'gpu' is not a device"),
    ({"": 3}, None, "names GPU 3"),
    ({"": "cpu"}, {"cpu": "1KB"}, "more than max_memory"),
    ("auto", {"cpu": "1KB", "disk": 0}, "does not fit: its weights need"),
    ("auto", {"cpu": "lots"}, "not an amount of memory"),
    ("everywhere", None, "'everywhere' is not a device"),
])
def test_bad_maps_are_refused_clearly(llama, device_map, max_memory, message):
    with pytest.raises(ValueError, match=message):  # PlacementError is a ValueError
        lightpipe.AutoModelForCausalLM.from_pretrained(llama, device_map=device_map,
                                                       max_memory=max_memory)


def test_parse_memory():
    assert parse_memory("4GiB") == 4 * 2**30
    assert parse_memory("500MB") == 500 * 10**6
    assert parse_memory(1234) == 1234
    with pytest.raises(PlacementError):
        parse_memory(-1)


# --- lightpipe estimate-memory

def test_estimate_memory_counts_as_the_reference(llama, capsys):
    from lightpipe.cli import main

    assert main(["estimate-memory", str(llama), "--dtype", "float32", "bfloat16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    reference = transformers.AutoModelForCausalLM.from_pretrained(llama)
    assert report["parameters"] == reference.num_parameters()
    rows = {row["dtype"]: row for row in report["rows"]}
    assert rows["float32"]["weights"] == sum(p.numel() * 4 for p in reference.parameters())
    assert rows["bfloat16"]["weights"] == rows["float32"]["weights"] // 2
    # the KV cache the reference really keeps for 10 tokens, scaled to 1,000
    with torch.no_grad():
        cache = reference(torch.zeros(1, 10, dtype=torch.long), use_cache=True).past_key_values
    kept = sum(layer.keys.numel() + layer.values.numel() for layer in cache.layers) * 4
    assert rows["float32"]["kv_cache_per_1000_tokens"] == kept * 100
    assert set(rows["float32"]["fits"]) >= {"RAM"}


def test_estimate_memory_quantized_and_text(llama, capsys):
    from lightpipe.cli import main

    assert main(["estimate-memory", str(llama), "--dtype", "bfloat16", "--quantize", "int8"]) == 0
    text = capsys.readouterr().out
    reference = transformers.AutoModelForCausalLM.from_pretrained(llama)
    assert f"{reference.num_parameters():,} parameters" in text and "bfloat16 + int8" in text
    from lightpipe.memory_estimate import count, meta_model, read_config, weight_bytes

    counts = count(meta_model(read_config(llama)))
    linear = sum(m.weight.numel() for n, m in reference.named_modules()
                 if isinstance(m, torch.nn.Linear) and n != "lm_head")
    assert counts["linear"] == linear
    assert weight_bytes(counts, "bfloat16", "int8") < weight_bytes(counts, "bfloat16")
    assert weight_bytes(counts, "bfloat16", "int4") < weight_bytes(counts, "bfloat16", "int8")


def test_estimate_memory_agrees_with_accelerate(llama):
    accelerate = pytest.importorskip("accelerate")
    from accelerate.utils import calculate_maximum_sizes

    from lightpipe.memory_estimate import count, meta_model, read_config, weight_bytes

    config = transformers.AutoConfig.from_pretrained(llama)
    with accelerate.init_empty_weights():
        empty = transformers.AutoModelForCausalLM.from_config(config)
    total, _ = calculate_maximum_sizes(empty)
    buffers = sum(b.numel() * b.element_size() for b in empty.buffers())  # accelerate counts them
    counts = count(meta_model(read_config(llama)))
    assert weight_bytes(counts, "float32") == total - buffers


def test_step08_example_with_disk_offload(decoder, tmp_path):
    from tests.test_examples import printed, run_example

    folder = decoder("opt")
    stdout = run_example("step08_large_model.py", "--model", folder, "--max-new-tokens", "8",
                         "--max-cpu-memory", "40KB", "--offload-folder", str(tmp_path))
    placed = printed(stdout, "device map")
    assert "disk" in placed.values() and "cpu" in placed.values()
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer("Hello, my name is", return_tensors="pt")
    with torch.no_grad():
        expected = reference.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert printed(stdout, "token ids") == expected[0].tolist()


def test_plan_over_fake_gpus(llama, monkeypatch):
    """The placement algorithm alone, on the meta-built model, for GPUs this machine lacks."""
    from lightpipe import placement
    from lightpipe.config import Config
    from lightpipe.memory_estimate import meta_model

    monkeypatch.setattr(placement, "check_devices_exist", lambda devices: None)
    model = meta_model(Config.from_folder(llama))
    blocks = placement.block_names(model)
    assert blocks == ["model.embed_tokens", "model.layers.0", "model.layers.1", "model.layers.2",
                      "model.norm", "model.rotary_emb", "lm_head"]
    sizes = placement.block_sizes(model, blocks, torch.float32)
    layer = sizes["model.layers.0"]
    budget = {0: sizes["model.embed_tokens"] + layer, 1: 2 * layer, "cpu": "1GiB"}
    placed = placement.plan(model, "sequential", budget, torch.float32, disk_possible=False)
    assert placed == {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": 1,
                      "model.layers.2": 1, "model.norm": "cpu", "model.rotary_emb": "cpu",
                      "lm_head": "cpu"}
    # balanced: the first GPU stops at its share even with room left
    roomy = {0: "1GiB", 1: "1GiB", "cpu": "1GiB"}
    balanced = placement.plan(model, "balanced", roomy, torch.float32, disk_possible=False)
    assert set(balanced.values()) == {0, 1}
    assert placement.plan(model, "sequential", roomy, torch.float32, disk_possible=False) == {"": 0}
    with pytest.raises(PlacementError, match="GPU 0 .*GPU 1"):
        placement.plan(model, "auto", {0: layer, 1: layer}, torch.float32, disk_possible=False)
