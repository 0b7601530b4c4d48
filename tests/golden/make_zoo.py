"""Build the checkpoint zoo: tiny checkpoints of every family, saved by one transformers version.

Run once per era, each in its own virtualenv outside the repository (never imported by lightpipe
or its tests), with the local CPU torch build:

    python -m venv /tmp/venv-525
    /tmp/venv-525/bin/pip install torch==2.13.0 transformers==5.25.0 sentencepiece protobuf \
        pandas scipy pillow==12.3.0
    /tmp/venv-525/bin/python tests/golden/make_zoo.py        # -> tests/golden/zoo/v5.25/
    # the same with transformers==4.57.6 "pandas<3" (-> v4.57/) and transformers==4.40.2
    # "numpy<2" "pandas<3" (-> v4.40/): 4.x's TAPAS tokenizer fails on pandas 3
    # sam2 / sam2_video need torchvision (the era's Sam2 image processor), kept out of the venvs
    # (it changes other image processors' backend): pip install --no-deps --target /tmp/tv
    # torchvision==0.28.0, guard the two register_fake lines of its _meta_registrations.py
    # (a CPU torch cannot load its CUDA ops), then PYTHONPATH=/tmp/tv python make_zoo.py sam2 sam2_video

Weights come from fixed seeds, so a rerun gives the same weights and goldens; the files differ by
era only as each version saves them.

Each entry, ``zoo/<era>/<family>/``, is what a user of that era gets from ``save_pretrained``:
the model, its tokenizer / image processor / feature extractor / processor, with
``zoo.json`` (the Auto class, the preprocessing call, the compared outputs) and ``golden.npz``
(the model inputs the reference's preprocessor made from ``zoo/inputs/``, and its outputs).
tests/test_zoo.py loads every entry with lightpipe and compares.

Eras save as their users did: 5.x tokenizers write tokenizer.json only; 4.57 fast tokenizers
write tokenizer.json and the vocabulary files; the 4.40 era saves the slow (Python) tokenizers,
so its folders have no tokenizer.json (vocab.txt, vocab.json + merges.txt, spiece.model,
sentencepiece.bpe.model, tokenizer.model, special_tokens_map.json, added_tokens.json). A few
4.40 entries keep the older weight files: pytorch_model.bin, shards, the legacy non-zip pickle
with 2019-style ``gamma``/``beta`` LayerNorm names (see ``LEGACY_WEIGHTS``).
``python make_zoo.py bert gpt2`` rebuilds only the named families; ``--out DIR`` writes elsewhere
(bench/check_newest_transformers.sh checks a new release so).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES  # noqa: E402

from zoo_inputs import INPUTS, make_inputs, resolve  # noqa: E402
from zoo_recipes import RECIPES, SAVED_TYPES, VERSION  # noqa: E402

ROOT = INPUTS.parent
ERA = f"v{VERSION[0]}.{VERSION[1]}"
# 4.40-era weight files: {family: how}, see save_weights.
LEGACY_WEIGHTS = {"bert": "legacy-pickle", "roberta": "bin", "gpt2": "sharded-bin",
                  "t5": "sharded-bin"}


# --- weights ---------------------------------------------------------------------------------

def save_weights(model, folder: Path, how: str) -> None:
    """Save as the 4.40 era's users did: plain or sharded pytorch_model.bin, or the legacy
    non-zip pickle with gamma/beta LayerNorm names (what 2019 checkpoints hold)."""
    if how == "bin":
        model.save_pretrained(folder, safe_serialization=False)
    elif how == "sharded-bin":
        model.save_pretrained(folder, safe_serialization=False, max_shard_size="60KB")
    elif how == "legacy-pickle":
        model.save_pretrained(folder, safe_serialization=False)
        state = {}
        for name, tensor in model.state_dict().items():
            if "LayerNorm." in name:
                name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
            state[name] = tensor.clone()
        torch.save(state, folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    else:
        model.save_pretrained(folder)


# --- one entry -------------------------------------------------------------------------------

def to_array(value) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return array.astype(np.float32) if array.dtype.kind == "f" else array


def expand_image(inputs: dict, token: int, count: int) -> dict:
    """input_ids and attention_mask with each image token repeated ``count`` times, as today's
    processors write them (the stored inputs lightpipe gets)."""
    ids, mask = [], []
    for row, row_mask in zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist()):
        ids.append([t for t in row for _ in range(count if t == token else 1)])
        mask.append([m for t, m in zip(row, row_mask) for _ in range(count if t == token else 1)])
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}


def preprocess(folder: Path, call: dict) -> dict:
    """Run the reference's preprocessor, loaded back from the folder, on the resolved inputs."""
    kind = call["kind"]
    if kind == "none":  # a model without a preprocessor (a vocoder): its inputs are in "extra"
        return {}
    if kind == "tapas":
        import pandas as pd

        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        table = pd.DataFrame.from_dict(call["kwargs"]["table"])
        return dict(tokenizer(table=table, queries=call["kwargs"]["queries"], padding=True,
                              return_tensors="pt"))
    loader = {"tokenizer": transformers.AutoTokenizer,
              "image_processor": transformers.AutoImageProcessor,
              "feature_extractor": transformers.AutoFeatureExtractor,
              "processor": transformers.AutoProcessor}[kind]
    preprocessor = loader.from_pretrained(folder)
    return dict(preprocessor(*resolve(call.get("args", [])), **resolve(call.get("kwargs", {})),
                             return_tensors="pt"))


def build(family: str, root: Path = ROOT) -> None:
    folder = root / ERA / family
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    recipe = RECIPES[family](folder, slow=VERSION < (4, 50))
    model = recipe["model"].eval()
    save_weights(model, folder, LEGACY_WEIGHTS.get(family, "safetensors") if VERSION < (4, 50)
                 else "safetensors")
    if recipe.get("resave"):  # loaded back and saved again by the same version
        model = type(model).from_pretrained(folder).eval()
        model.save_pretrained(folder)
    if recipe.get("reload"):  # the reference reads the folder as another class (sam2_video: Sam2Model)
        model = recipe["reload"].from_pretrained(folder).eval()
    encoded = preprocess(folder, recipe["call"])
    inputs = {k: v for k, v in encoded.items() if k in recipe["inputs"]}
    extra = recipe.get("extra", {})
    inputs.update(extra(inputs) if callable(extra) else extra)
    model_inputs = dict(inputs)
    if "expand_image" in recipe:  # the era's processor left one <image> token: the model expanded it
        inputs.update(expand_image(inputs, *recipe["expand_image"]))
    with torch.no_grad():
        # a model without a forward of its own (Bark) runs the sub-model ``module`` names
        output = (getattr(model, recipe["module"]) if recipe.get("module") else model)(**model_inputs)
        arrays = {f"in.{k}": to_array(v) for k, v in inputs.items()}
        for name in recipe["outputs"]:  # a bare tensor (a vocoder's waveform), or a field
            value = output if isinstance(output, torch.Tensor) else getattr(output, name)
            if isinstance(value, (tuple, list)):  # a backbone's feature maps: one array each
                arrays.update({f"out.{name}.{i}": to_array(item) for i, item in enumerate(value)})
            else:
                arrays[f"out.{name}"] = to_array(value)
        if recipe.get("base"):
            base_inputs = {k: v for k, v in inputs.items() if k in recipe["base_inputs"]}
            arrays["base.last_hidden_state"] = to_array(model.base_model(**base_inputs).last_hidden_state)
    np.savez_compressed(folder / "golden.npz", **arrays)
    meta = {"family": family, "transformers": transformers.__version__, "auto": recipe["auto"],
            "call": recipe["call"], "compare": sorted(k for k in encoded if k in recipe["inputs"]),
            "outputs": recipe["outputs"], "base": bool(recipe.get("base")), "module": recipe.get("module"),
            "weights": LEGACY_WEIGHTS.get(family, "safetensors") if VERSION < (4, 50) else "safetensors",
            "files": sorted(p.name for p in folder.iterdir() if p.name != "golden.npz")}
    (folder / "zoo.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"{ERA}/{family}: {', '.join(meta['files'])}")


def write_era(root: Path, absent: list[str], rebuilt: list[str]) -> None:
    """``<era>/era.json``: the version, and the families it does not have (the zoo test's list
    of what may be missing)."""
    path = root / ERA / "era.json"
    known = json.loads(path.read_text(encoding="utf-8")).get("absent", []) if path.is_file() else []
    absent = sorted(set(absent) | (set(known) - set(rebuilt)))
    path.write_text(json.dumps({"transformers": transformers.__version__, "absent": absent}, indent=1) + "\n",
                    encoding="utf-8")


def main(args: list[str]) -> None:
    """``make_zoo.py [--out DIR] [family ...]``: DIR instead of tests/golden/zoo (a check of a
    new release that should not touch the committed zoo)."""
    root = ROOT
    if args[:1] == ["--out"]:
        root, args = Path(args[1]), args[2:]
    torch.manual_seed(0)
    make_inputs()
    failed, absent = {}, []
    for family in args or RECIPES:
        if family not in RECIPES:
            raise SystemExit(f"unknown family {family!r}; known: {', '.join(RECIPES)}")
        if family not in CONFIG_MAPPING_NAMES and family not in SAVED_TYPES:  # newer than this version
            absent.append(family)
            continue
        try:
            build(family, root)
        except Exception as error:  # an era without the family, or a break: say so, go on
            shutil.rmtree(root / ERA / family, ignore_errors=True)
            failed[family] = f"{type(error).__name__}: {error}"
    for family, reason in failed.items():
        print(f"{ERA}/{family}: NOT BUILT: {reason[:300]}")
    write_era(root, absent, rebuilt=args or list(RECIPES))
    total = sum(p.stat().st_size for p in (root / ERA).rglob("*") if p.is_file())
    print(f"{ERA}: {len(args or RECIPES) - len(failed) - len(absent)} entries built, {len(failed)} not, "
          f"{len(absent)} families newer than {transformers.__version__}, {total / 1e6:.2f} MB")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
