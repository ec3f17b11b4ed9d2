#!/usr/bin/env bash
# Side by side: ChromaDB (its persistent client, in-process, from PyPI) against chatvault's
# in-process content store, and chatvault's Chroma-backed store against a local `chroma run`
# server — the SAME seeded vectors and texts, each side's HNSW tuned to the same recall@10: ChromaDB
# to the target, chatvault to at least the recall ChromaDB reached (equal or better recall).
#
#   benches/compare/run.sh                 # N = 100000 (several minutes on 2 cores)
#   N=20000 benches/compare/run.sh         # smaller
#   SIDES="chroma chatvault" benches/compare/run.sh   # skip the Chroma-server column
#   COMPARE_REAL_VECTORS=emb.npy benches/compare/run.sh   # real embeddings (N x 384 float32)
#   COMPARE_REAL_VECTORS=minilm benches/compare/run.sh    # all-MiniLM-L6-v2 of testdata/'s messages
#
# Other knobs: Q (queries, 200), SEED (42), TARGET_RECALL (0.95), HNSW_M (16), EF_CONSTRUCTION
# (100), EF_LIST, BATCH (5000), COMPARE_TMP (where data goes), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
HERE="$ROOT/benches/compare"
export N="${N:-100000}" Q="${Q:-200}" SEED="${SEED:-42}"
export TARGET_RECALL="${TARGET_RECALL:-0.95}" HNSW_M="${HNSW_M:-16}" EF_CONSTRUCTION="${EF_CONSTRUCTION:-100}"
SIDES="${SIDES:-chroma chatvault chroma-server}"

VENV="$("$ROOT/scripts/chroma-server.sh" venv)"
PY="$VENV/bin/python"

WORK="$(mktemp -d "${COMPARE_TMP:-${TMPDIR:-/tmp}}/chatvault-compare.XXXXXX")"
export COMPARE_TMP="$WORK"
SERVER_STATE="$WORK/server.state"
cleanup() {
    CHATVAULT_CHROMA_STATE="$SERVER_STATE" "$ROOT/scripts/chroma-server.sh" stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "${COMPARE_REAL_VECTORS:-}" = "minilm" ]; then
    # real all-MiniLM-L6-v2 embeddings of the chat text of the bundled exports (testdata/)
    echo "== embedding the bundled exports' messages with all-MiniLM-L6-v2" >&2
    "$PY" - "$ROOT/testdata" "$WORK/texts.txt" <<'PY'
import json, pathlib, sys
root, out = pathlib.Path(sys.argv[1]), sys.argv[2]
texts = []
for f in sorted(root.rglob("*.json")):
    try:
        data = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError):
        continue
    if isinstance(data, list):
        for m in data:
            t = m.get("text") if isinstance(m, dict) else None
            if isinstance(t, str) and t.strip():
                texts.append(" ".join(t.split()))
with open(out, "w") as fh:
    fh.write("\n".join(texts) + "\n")
print(f"{len(texts)} messages", file=sys.stderr)
PY
    CHATVAULT_MODEL_DIR="${CHATVAULT_MODEL_DIR:-$("$ROOT/scripts/fetch-model.sh" | tail -n 1)}" \
        cargo run --quiet --release -p chatvault-embed --example embed_lines -- "$WORK/texts.txt" "$WORK/real.npy"
    export COMPARE_REAL_VECTORS="$WORK/real.npy"
fi

echo "== dataset (N=$N, Q=$Q, seed $SEED)" >&2
"$PY" "$HERE/dataset.py" "$WORK/data"

echo "== building the Rust side" >&2
# The dev profile already optimises dependencies (tantivy); optimise our crates too, so
# the numbers measure the design and not unoptimised code (without a full release build).
OPT=()
for p in chatvault-core chatvault-storage-vector chatvault-storage-chroma; do
    OPT+=(--config "profile.dev.package.\"$p\".opt-level=3")
done
cargo build --quiet "${OPT[@]}" -p chatvault-storage-chroma --example compare_vector
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/compare_vector"

CHROMA_EF=""
CHROMA_RECALL=""
for side in $SIDES; do
    case "$side" in
    chroma)
        echo "== ChromaDB (PersistentClient)" >&2
        "$PY" "$HERE/chroma_side.py" "$WORK/data" >"$WORK/chroma.json"
        CHROMA_EF="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["ef_search"])' "$WORK/chroma.json")"
        CHROMA_RECALL="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["recall"])' "$WORK/chroma.json")"
        ;;
    chatvault)
        echo "== chatvault (in-process)" >&2
        # tuned to at least ChromaDB's recall when that side ran: QPS at equal or better recall
        MATCH_RECALL="$CHROMA_RECALL" "$BIN" "$WORK/data" chatvault >"$WORK/chatvault.json"
        ;;
    chroma-server)
        echo "== chatvault-storage-chroma against a local chroma run" >&2
        url="$(CHATVAULT_CHROMA_STATE="$SERVER_STATE" "$ROOT/scripts/chroma-server.sh" start)"
        CHROMA_EF_SEARCH="${CHROMA_EF:-100}" "$BIN" "$WORK/data" chroma-server "$url" >"$WORK/chroma-server.json"
        # the server's memory is its own process's
        # shellcheck disable=SC1090
        source "$SERVER_STATE"
        hwm_kb="$(awk '/VmHWM/ {print $2}' "/proc/$CHROMA_PID/status" 2>/dev/null || echo 0)"
        "$PY" - "$WORK/chroma-server.json" "$hwm_kb" <<'PY'
import json, sys
p, kb = sys.argv[1], float(sys.argv[2] or 0)
d = json.load(open(p)); d["server_peak_rss_mb"] = kb / 1024
json.dump(d, open(p, "w"))
PY
        CHATVAULT_CHROMA_STATE="$SERVER_STATE" "$ROOT/scripts/chroma-server.sh" stop >/dev/null 2>&1 || true
        ;;
    *) echo "unknown side $side" >&2; exit 2 ;;
    esac
done

"$PY" - "$WORK" "$SIDES" <<'PY'
import json, os, sys
work, sides = sys.argv[1], sys.argv[2].split()
meta = json.load(open(os.path.join(work, "data", "meta.json")))
names = {"chroma": "chroma.json", "chatvault": "chatvault.json", "chroma-server": "chroma-server.json"}
res = {s: json.load(open(os.path.join(work, names[s]))) for s in sides}
print(f"\nN = {meta['n']} x {meta['d']}-d ({meta['source']}), {meta['q']} queries, k = {meta['k']}, "
      f"filter = 1 channel of {meta['groups']} (1%), target recall@10 >= {os.environ.get('TARGET_RECALL', '0.95')}\n")
cols = [s for s in ["chroma", "chatvault", "chroma-server"] if s in res]
def mem(r):
    return r.get("server_peak_rss_mb") or r["peak_rss_mb"]
rows = [
    ("insert docs/s (searchable)", lambda r: f"{r['insert_per_s']:.0f}"),
    ("  graph complete after", lambda r: f"{r['graph_complete_s']:.1f} s" if r.get("graph_complete_s") else "-"),
    ("ef_search (tuned)", lambda r: f"{r['ef_search']}"),
    ("search QPS (1 thread)", lambda r: f"{r['qps']:.0f}"),
    ("recall@10", lambda r: f"{r['recall']:.3f}"),
    ("filtered QPS (1%)", lambda r: f"{r['filtered_qps']:.0f}"),
    ("filtered recall@10", lambda r: f"{r['filtered_recall']:.3f}"),
    ("peak RSS MiB", lambda r: f"{mem(r):.0f}"),
]
labels = {"chroma": "ChromaDB", "chatvault": "chatvault", "chroma-server": "cv-on-chroma-srv"}
w = 28
head = f"{'':{w}}" + "".join(f"{labels[c]:>18}" for c in cols)
if "chroma" in res and "chatvault" in res:
    head += f"{'chatvault/Chroma':>18}"
print(head)
ratio = {
    "insert docs/s (searchable)": ("insert_per_s", 1),
    "search QPS (1 thread)": ("qps", 1),
    "filtered QPS (1%)": ("filtered_qps", 1),
    "peak RSS MiB": (None, 1),
}
for name, f in rows:
    line = f"{name:{w}}" + "".join(f"{f(res[c]):>18}" for c in cols)
    if "chroma" in res and "chatvault" in res and name in ratio:
        key = ratio[name][0]
        a = res["chatvault"][key] if key else mem(res["chatvault"])
        b = res["chroma"][key] if key else mem(res["chroma"])
        line += f"{(a / b if b else float('nan')):>17.2f}x"
    print(line)
print()
for c in cols:
    print(f"{labels[c]}: {res[c]['side']}; {res[c]['settings']}")
print("peak RSS includes the dataset held in memory by each side "
      + ", ".join(f"{labels[c]} {res[c]['dataset_rss_mb']:.0f} MiB" for c in cols if "dataset_rss_mb" in res[c])
      + "; the server column is the chroma server process")
print("\nJSON:", json.dumps(res))
PY
