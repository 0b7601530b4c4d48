#!/usr/bin/env bash
# Check lightpipe against the newest transformers release, in a virtualenv of its own (not in
# CI; run it at the start of a session): lightpipe's test extra with that transformers as the
# reference, then
#   1. the parity tests (every test that compares with transformers),
#   2. the checkpoint zoo maker (tests/golden/make_zoo.py) for that release, into a temporary
#      folder, and tests/test_zoo.py over the committed zoo plus the new entries,
# and a summary of what broke. The repository is not changed.
#
#   bench/check_newest_transformers.sh            # the newest release on the package index
#   bench/check_newest_transformers.sh 5.26.0     # a given one
#   VENV=/tmp/venv-x KEEP=1 bench/...             # where the virtualenv goes; keep the new zoo
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VERSION=${1:-$(pip index versions transformers 2>/dev/null | sed -n 's/^transformers (\(.*\))$/\1/p')}
if [ -z "$VERSION" ]; then
    echo "could not ask the package index for the newest transformers: pass a version" >&2
    exit 2
fi
VENV=${VENV:-/tmp/venv-transformers-$VERSION}
OUT=$(mktemp -d /tmp/zoo-newest.XXXXXX)
LOG=$OUT/log
echo "transformers $VERSION in $VENV; logs and the new zoo in $OUT"

# The venv sees this interpreter's packages (the test extra, installed as the README says:
# building its native dependencies again takes most of an hour on two cores); what it installs
# itself, the release under test above all, shadows them. torch: the local CPU build. The test
# extra pins the transformers the suite is made for, so the release under test comes after it
# (pip reports the pin as a conflict: expected).
if [ ! -x "$VENV/bin/python" ]; then
    python -m venv --system-site-packages "$VENV" || exit 2
fi
"$VENV/bin/pip" install -q torch==2.13.0 -e ".[test]" >"$LOG.install" 2>&1 &&
    "$VENV/bin/pip" install -q "transformers==$VERSION" scipy pandas protobuf >>"$LOG.install" 2>&1 ||
    { tail -20 "$LOG.install"; echo "install failed (log: $LOG.install)"; exit 2; }
"$VENV/bin/python" -c "import transformers, torch; print('reference', transformers.__version__, 'torch', torch.__version__)"

PARITY=(tests/models tests/pipelines tests/test_tokenization.py tests/test_tokenization_speech.py
        tests/test_tokenization_spm.py tests/test_tokenization_tapas.py tests/test_loading.py
        tests/test_image_processing.py tests/test_audio.py tests/test_generation.py)
echo "== parity tests"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -rf "${PARITY[@]}" >"$LOG.parity" 2>&1
parity=$?
grep -E "^(FAILED|ERROR)" "$LOG.parity" | cut -c1-220
tail -1 "$LOG.parity"

echo "== zoo maker ($VERSION)"
"$VENV/bin/python" tests/golden/make_zoo.py --out "$OUT/zoo" >"$LOG.maker" 2>&1
maker=$?
grep -E "NOT BUILT|entries built" "$LOG.maker"

echo "== zoo test (committed zoo + $VERSION)"
LIGHTPIPE_ZOO="$OUT/zoo" "$VENV/bin/python" -m pytest -q -p no:cacheprovider -rfX tests/test_zoo.py \
    >"$LOG.zoo" 2>&1
zoo=$?
grep -E "^(FAILED|ERROR|XPASS)" "$LOG.zoo" | cut -c1-220
tail -1 "$LOG.zoo"

echo "== summary: parity $([ $parity = 0 ] && echo ok || echo BROKE)," \
     "zoo maker $([ $maker = 0 ] && echo ok || echo BROKE)," \
     "zoo $([ $zoo = 0 ] && echo ok || echo BROKE) (logs: $LOG.*)"
[ -n "${KEEP:-}" ] || rm -rf "$OUT/zoo"
[ $parity = 0 ] && [ $maker = 0 ] && [ $zoo = 0 ]
