#!/usr/bin/env bash
# make e2e-distributed: the provider on Airflow's distributed engine (CeleryExecutor, two workers,
# two triggerers, PostgreSQL, Redis), with a worker and a triggerer SIGKILLed and PostgreSQL
# restarted mid-run; the invariants are checked from the sandbox's records and Airflow's REST API.
#
#   scripts/e2e_distributed.sh              install what is missing, run, check, clean up
#   E2E_SEED=7 scripts/e2e_distributed.sh   other kill moments (worker, request, triggerer, delays)
#   E2E_KEEP_LOGS=DIR                        copy the component logs to DIR before the clean-up
#
# Installs, when missing: Debian's postgresql and redis-server packages (apt-get, as root), and a
# venv .venv-e2e with Airflow 3.3.2, its celery and postgres extras and this provider, pinned by
# constraints.txt (uv, from .venv made by `make venv`). Everything else lives in a temporary folder
# that is removed at the end, also on failure or Ctrl-C. Exit code: 0 every invariant held, 1 one
# failed (or a process was left running), 2 the set-up failed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
START=$(date +%s)
say() { printf '[e2e-setup %3ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }

# --- system packages -----------------------------------------------------------------------------
have_postgres() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; }
if ! have_postgres || ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "e2e: install the Debian packages postgresql and redis-server (as root: apt-get install" \
         "postgresql redis-server)" >&2
    exit 2
  fi
  say "apt-get install postgresql redis-server"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null
fi
# Debian's packages start system services where a service manager runs; this run uses only its own.

# --- Python: .venv-e2e (Airflow with Celery and PostgreSQL drivers, pinned) --------------------------
VENV="$REPO/.venv-e2e"
STAMP="$VENV/.installed"
UV="$REPO/.venv/bin/uv"
[ -x "$UV" ] || { echo "e2e: $UV is missing; run 'make venv' first (make e2e-distributed does)" >&2; exit 2; }
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ constraints.txt -nt "$STAMP" ]; then
  say "installing .venv-e2e: apache-airflow[celery,postgres]==3.3.2 and the provider (constraints.txt)"
  [ -x "$VENV/bin/python" ] || "$UV" venv -q "$VENV" --python "$REPO/.venv/bin/python"
  VIRTUAL_ENV="$VENV" "$UV" pip install -q -c constraints.txt "apache-airflow[celery,postgres]==3.3.2" -e .
  touch "$STAMP"
fi
say "installed: $("$VENV/bin/python" -c 'import airflow, airflow.providers.celery as c; print("Airflow", airflow.__version__, "celery provider", c.__version__)')"

# --- the run -------------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/omni-e2e.XXXXXX")"
chmod 755 "$WORK"  # the postgres user reaches its cluster folder inside
DRIVER_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
    kill -TERM "$DRIVER_PID" 2>/dev/null || true
    wait "$DRIVER_PID" 2>/dev/null || true
  fi
  # belt and braces: every process group the driver started (it records them) must be gone
  local left=0 pg
  if [ -f "$WORK/pgids" ]; then
    for pg in $(cat "$WORK/pgids"); do
      if kill -0 -- "-$pg" 2>/dev/null; then
        kill -KILL -- "-$pg" 2>/dev/null || true
        left=1
      fi
    done
  fi
  sleep 0.5
  local stray
  stray="$(pgrep -f "$WORK" || true)"  # only processes whose command line names this run's folder
  if [ -n "$stray" ]; then
    say "FAIL: processes still running from $WORK:"
    ps -o pid,args -p "$(echo $stray | tr ' ' ',')" || true
    kill -KILL $stray 2>/dev/null || true
    left=1
  fi
  if [ -n "${E2E_KEEP_LOGS:-}" ] && [ -d "$WORK/logs" ]; then
    mkdir -p "$E2E_KEEP_LOGS" && cp -r "$WORK/logs/." "$E2E_KEEP_LOGS/" && say "logs copied to $E2E_KEEP_LOGS"
  fi
  rm -rf "$WORK"
  if [ "$left" = 1 ]; then
    say "FAIL: something was left running after the run (now killed)"
    [ "$rc" = 0 ] && rc=1
  else
    say "nothing left running; $WORK removed"
  fi
  say "finished in $(( $(date +%s) - START )) s with exit code $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

set +e
"$VENV/bin/python" "$REPO/scripts/e2e_distributed.py" --work "$WORK" "$@" &
DRIVER_PID=$!
wait "$DRIVER_PID"
RC=$?
set -e
DRIVER_PID=""
exit "$RC"
