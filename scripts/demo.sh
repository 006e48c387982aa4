#!/usr/bin/env bash
# make demo: the failover example DAG end to end on a real local Airflow against the OMNI sandbox.
#
#   scripts/demo.sh                  start everything, run the DAG once, print the outcome, stop
#   KEEP_RUNNING=1 scripts/demo.sh   same, then leave the UI running until Ctrl-C
#
# Everything lives in .airflow-demo/ (recreated on every run, gitignored). Processes started here
# are stopped on exit (each runs in its own process group, which is signalled as a whole).
# Knobs: DEMO_PORT (Airflow UI/API, default 8080 or a free port), DEMO_TIMEOUT (run timeout, s),
# DEMO_TIME_SCALE (sandbox clock speed-up, default 60), DEMO_DAG (default omni_viber_sms_failover),
# BACKEND (omni, the default, or messages_api: the DAG's backend param).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$REPO/.venv/bin"
PY="$BIN/python"
HOME_DIR="$REPO/.airflow-demo"
LOGS="$HOME_DIR/logs-demo"
DAG_ID="${DEMO_DAG:-omni_viber_sms_failover}"
TIME_SCALE="${DEMO_TIME_SCALE:-60}"
TIMEOUT="${DEMO_TIMEOUT:-150}"
KEEP_RUNNING="${KEEP_RUNNING:-0}"
BACKEND="${BACKEND:-omni}"
case "$BACKEND" in omni|messages_api) ;; *) echo "demo: BACKEND must be omni or messages_api, not '$BACKEND'" >&2; exit 2;; esac
SANDBOX_KEY="demo-sandbox-key"

[ -x "$PY" ] || { echo "demo: $PY is missing; run 'make venv' (or 'make demo') first" >&2; exit 2; }

START=$(date +%s)
say() { printf '[demo %3ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }

# --- process bookkeeping: every component is the leader of its own process group --------------
PGIDS=()
NAMES=()
start_bg() {  # start_bg NAME LOGFILE CMD...
  local name="$1" log="$2"; shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  PGIDS+=("$!")
  NAMES+=("$name")
}

group_alive() { kill -0 -- "-$1" 2>/dev/null; }

SLEEP_PID=""
stop_all() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$SLEEP_PID" ] || kill "$SLEEP_PID" 2>/dev/null || true
  if [ "${#PGIDS[@]}" -gt 0 ]; then
    say "stopping ${NAMES[*]}"
    local pg
    # SIGTERM to each leader first (clean shutdown), then to the whole group.
    for pg in "${PGIDS[@]}"; do kill -TERM "$pg" 2>/dev/null || true; done
    sleep 1
    for pg in "${PGIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
    local deadline=$(( $(date +%s) + 20 )) left
    while :; do
      left=0
      for pg in "${PGIDS[@]}"; do group_alive "$pg" && left=1; done
      [ "$left" = 0 ] && break
      if [ "$(date +%s)" -ge "$deadline" ]; then
        for pg in "${PGIDS[@]}"; do kill -KILL -- "-$pg" 2>/dev/null || true; done
        sleep 0.5
        break
      fi
      sleep 0.5
    done
    for pg in "${PGIDS[@]}"; do
      if group_alive "$pg"; then say "WARNING: process group $pg is still alive"; fi
    done
    say "all demo processes stopped"
  fi
  exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {  # free_port [PREFERRED]: the preferred port when it is free, else one the OS picks
  "$PY" - "${1:-0}" <<'EOF'
import socket, sys
want = int(sys.argv[1])
def try_bind(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no obstacle
    try:
        s.bind(("127.0.0.1", port))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
print(try_bind(want) if want and try_bind(want) else try_bind(0))
EOF
}

# --- a fresh Airflow home -----------------------------------------------------------------------
rm -rf "$HOME_DIR"
mkdir -p "$LOGS"
API_PORT="${DEMO_PORT:-$(free_port 8080)}"
SANDBOX_PORT="$(free_port 0)"
[ "$API_PORT" = 8080 ] || say "port 8080 is busy: the Airflow UI/API uses port $API_PORT"

export AIRFLOW_HOME="$HOME_DIR"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/example_dags"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__CORE__TEST_CONNECTION=Enabled
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$API_PORT"
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$API_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$API_PORT/execution/"
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=True
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=5
export AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=30
export AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC=2
export AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC=2
export PATH="$BIN:$PATH"
unset AIRFLOW_CONN_OMNI_DEFAULT  # the demo's connection lives in the metadata DB (visible in the UI)

say "sandbox on http://127.0.0.1:$SANDBOX_PORT (time scale x$TIME_SCALE), Airflow on http://127.0.0.1:$API_PORT"
start_bg sandbox "$LOGS/sandbox.log" "$BIN/omni-sandbox" --host 127.0.0.1 --port "$SANDBOX_PORT" \
  --time-scale "$TIME_SCALE" --api-key "$SANDBOX_KEY"

say "airflow db migrate"
"$BIN/airflow" db migrate >"$LOGS/db-migrate.log" 2>&1 || { tail -n 30 "$LOGS/db-migrate.log"; exit 1; }

say "starting api-server, scheduler, dag-processor, triggerer"
start_bg api-server "$LOGS/api-server.log" "$BIN/airflow" api-server --host 127.0.0.1 --port "$API_PORT"
start_bg scheduler "$LOGS/scheduler.log" "$BIN/airflow" scheduler
start_bg dag-processor "$LOGS/dag-processor.log" "$BIN/airflow" dag-processor
start_bg triggerer "$LOGS/triggerer.log" "$BIN/airflow" triggerer

set +e
"$PY" "$REPO/scripts/demo_run.py" \
  --api "http://127.0.0.1:$API_PORT" \
  --sandbox "http://127.0.0.1:$SANDBOX_PORT" --sandbox-key "$SANDBOX_KEY" \
  --dag-id "$DAG_ID" --timeout "$TIMEOUT" --logs "$LOGS" \
  --conf "$( [ "$DAG_ID" = omni_viber_sms_failover ] && printf '{"backend": "%s"}' "$BACKEND" || echo '{}')"
RC=$?
set -e

say "finished with exit code $RC (logs: ${LOGS#"$REPO"/})"
if [ "$KEEP_RUNNING" = 1 ]; then
  cat <<EOF

  Airflow UI:   http://127.0.0.1:$API_PORT/dags/$DAG_ID   (no login: all users are admins)
  Connection:   http://127.0.0.1:$API_PORT/connections    (omni_default -> the sandbox)
  Sandbox:      http://127.0.0.1:$SANDBOX_PORT/_sandbox/stats
  Logs:         $LOGS

  Everything keeps running. Press Ctrl-C here (or run: kill $$) to stop it all.
EOF
  trap 'exit "$RC"' INT TERM  # stopping a successful demo is a success
  while :; do
    sleep 3600 &
    SLEEP_PID=$!
    wait "$SLEEP_PID" || true
  done
fi
exit "$RC"
