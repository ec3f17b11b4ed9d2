#!/usr/bin/env bash
# Runs a throwaway ChromaDB server for chatvault's tests and benches.
#
#   scripts/chroma-server.sh start   # prints http://127.0.0.1:<port>
#   scripts/chroma-server.sh url     # the running server's URL
#   scripts/chroma-server.sh stop    # stops it and removes its data
#   scripts/chroma-server.sh venv    # only creates/updates the virtual environment, prints its path
#
# The virtual environment (chromadb from PyPI, pinned below) is created once and reused:
#   CHATVAULT_CHROMA_VENV   (default: $HOME/.cache/chatvault/chroma-venv)
# The server's pid, URL and data path are kept in a state file, so start/stop can be called from
# different shells:
#   CHATVAULT_CHROMA_STATE  (default: ${TMPDIR:-/tmp}/chatvault-chroma-$UID.state)
# Messages go to stderr; only the URL (or venv path) goes to stdout.
set -euo pipefail

CHROMADB_VERSION="1.5.9"
VENV="${CHATVAULT_CHROMA_VENV:-$HOME/.cache/chatvault/chroma-venv}"
STATE="${CHATVAULT_CHROMA_STATE:-${TMPDIR:-/tmp}/chatvault-chroma-$(id -u).state}"
STARTUP_TIMEOUT="${CHATVAULT_CHROMA_STARTUP_TIMEOUT:-90}"

log() { echo "chroma-server: $*" >&2; }
die() { log "error: $*"; exit 1; }

ensure_venv() {
    local marker="$VENV/.chatvault-chromadb-$CHROMADB_VERSION"
    if [[ -x "$VENV/bin/chroma" && -f "$marker" ]]; then
        return 0
    fi
    command -v python3 >/dev/null || die "python3 is not installed"
    log "creating the virtual environment $VENV with chromadb==$CHROMADB_VERSION (once)"
    mkdir -p "$(dirname "$VENV")"
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "chromadb==$CHROMADB_VERSION" numpy >&2 \
        || die "pip install chromadb==$CHROMADB_VERSION failed"
    [[ -x "$VENV/bin/chroma" ]] || die "chromadb installed but $VENV/bin/chroma is missing"
    rm -f "$VENV"/.chatvault-chromadb-*
    touch "$marker"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

read_state() {
    # shellcheck disable=SC1090
    [[ -f "$STATE" ]] && source "$STATE"
}

alive() { [[ -n "${CHROMA_PID:-}" ]] && kill -0 "$CHROMA_PID" 2>/dev/null; }

heartbeat() { curl -fsS --max-time 2 "$1/api/v2/heartbeat" >/dev/null 2>&1; }

cmd_start() {
    read_state || true
    if alive && heartbeat "$CHROMA_URL"; then
        log "already running (pid $CHROMA_PID)"
        echo "$CHROMA_URL"
        return 0
    fi
    command -v curl >/dev/null || die "curl is not installed"
    ensure_venv
    local dir port url pid
    dir="$(mktemp -d "${TMPDIR:-/tmp}/chatvault-chroma.XXXXXX")"
    for _ in 1 2 3; do
        port="$(free_port)"
        url="http://127.0.0.1:$port"
        # setsid: the server gets its own process group, so stop can end it with its children.
        setsid "$VENV/bin/chroma" run --host 127.0.0.1 --port "$port" --path "$dir/data" \
            >"$dir/server.log" 2>&1 </dev/null &
        pid=$!
        printf 'CHROMA_PID=%s\nCHROMA_URL=%s\nCHROMA_DIR=%s\n' "$pid" "$url" "$dir" >"$STATE"
        local waited=0
        while (( waited < STARTUP_TIMEOUT * 10 )); do
            if heartbeat "$url"; then
                log "ChromaDB $CHROMADB_VERSION listening on $url (pid $pid, data $dir/data)"
                echo "$url"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
            log "server did not answer within ${STARTUP_TIMEOUT}s; last lines of its log:"
            tail -n 20 "$dir/server.log" >&2 || true
            rm -f "$STATE"; rm -rf "$dir"
            exit 1
        fi
        # exited early: most likely the port was taken in between; try another
        log "server exited at start (port $port); retrying. Last lines of its log:"
        tail -n 5 "$dir/server.log" >&2 || true
    done
    rm -f "$STATE"; rm -rf "$dir"
    die "could not start chroma"
}

cmd_stop() {
    read_state || { log "not running"; return 0; }
    if alive; then
        kill -- "-$CHROMA_PID" 2>/dev/null || kill "$CHROMA_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$CHROMA_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$CHROMA_PID" 2>/dev/null; then
            kill -9 -- "-$CHROMA_PID" 2>/dev/null || kill -9 "$CHROMA_PID" 2>/dev/null || true
        fi
        log "stopped pid $CHROMA_PID"
    fi
    if [[ -n "${CHROMA_DIR:-}" && "$CHROMA_DIR" == *chatvault-chroma.* && -d "$CHROMA_DIR" ]]; then
        rm -rf "$CHROMA_DIR"
    fi
    rm -f "$STATE"
}

cmd_url() {
    read_state || die "not running (no state file $STATE)"
    alive || die "not running (pid ${CHROMA_PID:-?} is gone)"
    echo "$CHROMA_URL"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    url) cmd_url ;;
    venv) ensure_venv; echo "$VENV" ;;
    *) echo "usage: $0 start|stop|url|venv" >&2; exit 2 ;;
esac
