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
