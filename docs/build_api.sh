#!/usr/bin/env bash
# Build lightpipe's API reference (HTML) from its docstrings with pdoc into docs/api/
# (git-ignored). Needs pdoc: pip install pdoc (it is in the "test" extra).
# Usage: docs/build_api.sh [output folder]; then open docs/api/index.html.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-docs/api}"
rm -rf "$OUT"
# The public modules, with their submodules (pdoc walks packages); docstrings are Google style
# ("Arguments:", "Returns:" sections).
python -m pdoc --docformat google --no-show-source --output-directory "$OUT" \
    lightpipe lightpipe.pipelines lightpipe.embeddings lightpipe.logging lightpipe.ray \
    lightpipe.generation lightpipe.tokenization lightpipe.processing lightpipe.errors \
    lightpipe.config lightpipe.modeling \
    '!lightpipe.models' '!lightpipe.models.*' '!lightpipe.serving' '!lightpipe.serving.*' \
    '!lightpipe.cli*' '!lightpipe.demo' '!lightpipe.gguf*' '!lightpipe.quantization*'
echo "API reference written to $OUT/index.html"
