"""The package's shape: a family added through the registry alone works end to end; no import
cycles; modules stay small; the server uses the pipelines' public hooks."""

from __future__ import annotations

import ast
import json
import shutil
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lightpipe"

TOY_MODEL = textwrap.dedent('''
    """A toy family: embeddings, mean over tokens, a linear classifier."""
    from torch import nn

    from lightpipe.modeling import ModelOutput, PreTrainedModel


    class ToyPreTrainedModel(PreTrainedModel):
        base_model_prefix = "toy"


    class ToyModel(ToyPreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)

        def forward(self, input_ids=None, attention_mask=None, **unused):
            hidden = self.embeddings(input_ids)  # (batch, seq, hidden)
            return ModelOutput(last_hidden_state=hidden)


    class ToyForSequenceClassification(ToyPreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.toy = ToyModel(config)
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, input_ids=None, attention_mask=None, **unused):
            hidden = self.toy(input_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            return ModelOutput(logits=self.classifier(pooled))


    HEADS = {"AutoModel": ToyModel, "AutoModelForSequenceClassification": ToyForSequenceClassification}
''')


@pytest.fixture
def toy_family(tmp_path, monkeypatch, minilm_path):
    """One registry entry + one module file: the 'toy' family, and a checkpoint of it."""
    import torch

    from lightpipe.families import FAMILIES, Family

    package = tmp_path / "toy_family_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "modeling_toy.py").write_text(TOY_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(FAMILIES, "toy", Family("toy_family_pkg.modeling_toy", tokenizer="BertTokenizer"))

    folder = tmp_path / "toy-checkpoint"
    folder.mkdir()
    for name in ("vocab.txt", "tokenizer.json", "special_tokens_map.json"):
        if (minilm_path / name).is_file():
            shutil.copy(minilm_path / name, folder / name)
    vocab_size = sum(1 for _ in open(folder / "vocab.txt", encoding="utf-8"))
    config = {"model_type": "toy", "architectures": ["ToyForSequenceClassification"],
              "vocab_size": vocab_size, "hidden_size": 8,
              "id2label": {"0": "NEG", "1": "POS"}, "label2id": {"NEG": 0, "POS": 1}}
    (folder / "config.json").write_text(json.dumps(config))
    generator = torch.Generator().manual_seed(0)
    from safetensors.torch import save_file

    save_file({"toy.embeddings.weight": torch.randn(vocab_size, 8, generator=generator),
               "classifier.weight": torch.randn(2, 8, generator=generator),
               "classifier.bias": torch.zeros(2)}, str(folder / "model.safetensors"))
    return folder


def test_a_family_added_through_the_registry_alone(toy_family):
    import torch

    from lightpipe import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(toy_family)
    assert type(model).__name__ == "ToyForSequenceClassification"
    assert type(AutoModel.from_pretrained(toy_family)).__name__ == "ToyModel"
    tokenizer = AutoTokenizer.from_pretrained(toy_family)
    encoded = tokenizer(["a good day", "bad"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**encoded).logits
    expected = torch.softmax(logits, -1)

    classify = pipeline(model=str(toy_family))  # the task is inferred from the architecture
    assert classify.task == "text-classification"
    results = classify(["a good day", "bad"])
    for row, result in enumerate(results):
        label = int(expected[row].argmax())
        assert result["label"] == ["NEG", "POS"][label]
        assert result["score"] == pytest.approx(float(expected[row, label]), rel=1e-5)


def test_unknown_model_type_names_the_registry(tmp_path):
    from lightpipe import AutoModel
    from lightpipe.errors import UnsupportedModelError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "berd"}))
    with pytest.raises(UnsupportedModelError, match="Did you mean 'bert'"):
        AutoModel.from_pretrained(tmp_path)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict, top_level_only: bool) -> set[str]:
    """The lightpipe modules ``name`` imports (at module level only, or everywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # module-level statements, but not `if TYPE_CHECKING:` blocks
        nodes = [n for n in nodes if not (isinstance(n, ast.If) and "TYPE_CHECKING" in ast.dump(n.test))]
        nodes = [inner for n in nodes for inner in ([n] if not isinstance(n, (ast.If, ast.Try)) else ast.walk(n))]
    targets = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in modules and t != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        # A package's own __init__ runs before its submodules: importing the parent package is
        # not an edge worth reporting for a submodule ("from . import X" inside the package).
        graph[name] = {t for t in _imports(name, path, modules, top_level_only=True)
                       if not name.startswith(t + ".")}
    assert _cycles(graph) == []


def test_serving_modules_do_not_import_each_other_in_a_cycle():
    modules = {n: p for n, p in _modules().items() if n.startswith("lightpipe.serving")}
    graph = {name: {t for t in _imports(name, path, modules, top_level_only=False)
                    if not name.startswith(t + ".")}
             for name, path in modules.items()}
    assert _cycles(graph) == []


def test_no_module_over_600_lines():
    sizes = {name: sum(1 for _ in open(path, encoding="utf-8")) for name, path in _modules().items()}
    assert {name: size for name, size in sizes.items() if size > 600} == {}


def test_server_runs_pipelines_through_their_public_hooks():
    for path in (PACKAGE / "serving").glob("*.py"):
        assert "Pipeline.__call__" not in path.read_text(encoding="utf-8"), path.name


def test_every_family_entry_resolves():
    """Each registry entry names a model module with HEADS and classes that import."""
    from lightpipe.families import FAMILIES, load, split_ref
    from lightpipe.models import heads_for

    for model_type, family in FAMILIES.items():
        assert heads_for(model_type), model_type
        for ref in (family.processor, family.image_processor, family.feature_extractor):
            if ref:
                assert load(ref).__name__ == split_ref(ref)[1].rpartition(":")[2], (model_type, ref)
