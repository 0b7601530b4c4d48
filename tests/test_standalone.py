"""lightpipe runs with transformers (and its kin) made unimportable, and never imports them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent("""
    import sys
    BLOCKED = ("transformers", "accelerate", "sentence_transformers", "optimum")

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
""")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300)


def test_pipelines_work_without_transformers(tiny_model, minilm_path):
    clf_folder = tiny_model("roberta", "AutoModelForSequenceClassification", num_labels=3)
    result = _run(f"""
        import json, sys
        try:
            import transformers
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker did not block")
        import lightpipe
        clf = lightpipe.pipeline("sentiment-analysis", model={str(clf_folder)!r})
        labels = clf(["I love it", "I hate it", ""], batch_size=2, top_k=None)
        features = lightpipe.pipeline("feature-extraction", model={str(minilm_path)!r})("hello world")
        tok = lightpipe.AutoTokenizer.from_pretrained({str(minilm_path)!r})
        ids = tok("hi there", return_tensors="pt")["input_ids"]
        kin = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        print(json.dumps({{"labels": labels, "tokens": len(features[0]), "width": len(features[0][0]),
                           "ids": ids.tolist(), "kin": kin}}))
    """)
    assert result.returncode == 0, result.stderr
    import json

    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(out["labels"]) == 3 and all(len(r) == 3 for r in out["labels"])
    assert out["tokens"] == 4 and out["width"] == 384  # [CLS] hello world [SEP]
    assert out["ids"] == [[101, 7632, 2045, 102]]
    assert out["kin"] == []


def test_library_source_never_imports_the_reference():
    import pathlib
    import re

    import lightpipe

    root = pathlib.Path(lightpipe.__file__).parent
    pattern = re.compile(r"^\s*(import|from)\s+(transformers|accelerate|sentence_transformers|optimum)\b", re.M)
    offenders = [str(p) for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_speech_vision_and_seq2seq_work_without_transformers(whisper_folder, vision_model, speech_files):
    """The other modalities too, with every library module imported, and nothing of the
    reference's kin (nor torchaudio, librosa, timm) loaded."""
    import json
    from pathlib import Path

    whisper = whisper_folder()
    vit = vision_model("vit", "AutoModelForImageClassification")
    bart = Path(__file__).parent / "golden" / "seq2seq" / "bart"
    result = _run(f"""
        import importlib, json, pkgutil, sys
        import numpy as np
        import lightpipe
        for module in pkgutil.walk_packages(lightpipe.__path__, "lightpipe."):
            if not module.name.startswith(("lightpipe.serving", "lightpipe.demo", "lightpipe.__main__")):
                importlib.import_module(module.name)
        asr = lightpipe.pipeline("automatic-speech-recognition", model={str(whisper)!r})
        text = asr({str(speech_files["flac"])!r}, generate_kwargs={{"max_new_tokens": 5}})["text"]
        image = (np.arange(40 * 30 * 3) % 255).astype(np.uint8).reshape(40, 30, 3)
        labels = lightpipe.pipeline("image-classification", model={str(vit)!r})(image, top_k=2)
        summary = lightpipe.pipeline("summarization", model={str(bart)!r})("a b c d e", max_length=8)
        kin = [m for m in sys.modules if m.split(".")[0] in BLOCKED + ("torchaudio", "librosa", "timm")]
        print(json.dumps({{"text": text, "labels": labels, "summary": summary, "kin": kin}}))
    """)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(out["text"], str) and len(out["labels"]) == 2
    assert isinstance(out["summary"][0]["summary_text"], str)
    assert out["kin"] == []


def test_import_asks_torch_for_huge_pages_unless_told_otherwise():
    """``import lightpipe`` before any tensor: torch's large CPU allocations are madvised to
    transparent huge pages (THP_MEM_ALLOC_ENABLE); a caller's own setting wins."""
    code = """
        import os
        {preset}
        import torch, lightpipe
        print(os.environ.get("THP_MEM_ALLOC_ENABLE"))
    """
    for preset, want in (("", "1"), ("os.environ['THP_MEM_ALLOC_ENABLE'] = '0'", "0")):
        result = _run(code.format(preset=preset))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == want
