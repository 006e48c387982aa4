#!/usr/bin/env bash
# The compatibility matrix: the provider installed FROM THE WHEEL (never editable) in one venv per
# (Airflow, Python) combination, Airflow's provider CLI checked, and the test suite run against it.
#
#   scripts/test_matrix.sh                     (make test-matrix) every combination, MATRIX_JOBS at once
#   MATRIX_ONLY="2.11 3.2" scripts/test_matrix.sh   only these Airflow series (space or comma separated)
#
# Environment:
#   MATRIX_ONLY           Airflow series to run (default: all of MATRIX below)
#   MATRIX_TESTS          test paths, relative to the repository (default: tests)
#   MATRIX_PYTEST_ARGS    extra pytest arguments, appended (e.g. "-x -k sensor" or "-m 'not browser and not dag'")
#   MATRIX_MARKERS        the -m expression (default: "not bench"; "and not browser" is added for the
#                         combinations not marked "browser" in MATRIX)
#   MATRIX_JOBS           combinations run at once (default: 3; each has its own venv, AIRFLOW_HOME,
#                         temporary folder and free ports)
#   MATRIX_EXTRAS         extras of the wheel to install (default: test)
#   MATRIX_FORCE_INSTALL  1 (default): when the wheel does not install as declared, record the
#                         failure and install it anyway with apache-airflow overridden to the
#                         combination's version (uv --override), so the tests still show what breaks.
#                         0: stop that combination at the install failure.
#   MATRIX_PYTEST_TIMEOUT seconds after which one combination's pytest run gets SIGINT (then SIGKILL
#                         90 s later; pytest writes its JUnit report on SIGINT) (default: none)
#   MATRIX_WHEEL          a wheel to test instead of building one with scripts/build_wheel.sh
#   MATRIX_KEEP_STAGE     1: keep the staged copy of the tests after the run (default: removed)
#
# Each combination gets .venv-matrix/<series>-py<python>/ (recreated each run) holding the venv and,
# in _matrix/, the logs, the JUnit XML, a private AIRFLOW_HOME and a staged copy of the tests.
# The tests run from that copy (tests/, example_dags/, bench/, README.md, .ci/, pyproject.toml), so
# no directory holding the repository's airflow_provider_omni/ is on sys.path or the cwd of pytest
# or of the subprocesses the tests start; a small plugin prints airflow_provider_omni.__file__ in
# the pytest process and aborts when it is not the venv's copy.
#
# pytest runs with -p no:cacheprovider, -m "$MATRIX_MARKERS" and --continue-on-collection-errors (a test
# file that does not import on some Airflow must not hide the other files' results).
# Interpreters: python3.X from PATH, else ~/.pyenv/versions/3.X*/bin/python3.X (uv never downloads one).
#
# Exit status: non-zero when any combination failed (install, CLI check, or tests).
set -uo pipefail
# Everything runs inside main(), parsed in full before it starts: editing this file while it runs
# cannot change what the running copy does.
main() {
cd "$(dirname "$0")/.."
REPO=$(pwd)
UV=${UV:-$REPO/.venv/bin/uv}
ROOT=$REPO/.venv-matrix

# The diagonal: Airflow series and Python. The exact Airflow version comes from the combination's
# constraints file (constraints/airflow-<series>.txt, written by constraints/generate.sh).
# A third word "browser": that combination also runs the browser tests (the connection form in
# headless Chromium: the Flask AppBuilder UI on 2.11, the React UI on 3.3).
# Longest first, so that no long suite starts last (measured in CI, three at once: 3.2 16 min,
# 3.1 14, 3.0 11.4, 3.3 10, 2.11 8.4); the table at the end is sorted by series.
MATRIX=(
  "3.2 3.12"
  "3.1 3.12"
  "3.0 3.11"
  "3.3 3.13 browser"
  "2.11 3.11 browser"
)

MARKERS=${MATRIX_MARKERS:-not bench}
JOBS=${MATRIX_JOBS:-3}
EXTRAS=${MATRIX_EXTRAS:-test}
FORCE=${MATRIX_FORCE_INSTALL:-1}
read -r -a TEST_PATHS <<<"${MATRIX_TESTS:-tests}"
eval "EXTRA_ARGS=(${MATRIX_PYTEST_ARGS:-})"   # shell words, so quoted -m/-k expressions survive
ONLY=${MATRIX_ONLY:-}
ONLY=${ONLY//,/ }

find_python() {  # find_python 3.12 -> path of a working python3.12 (PATH first, then pyenv's versions)
  local v=$1 cand
  for cand in "$(command -v "python$v" 2>/dev/null)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v"*/bin/"python$v"; do
    [ -n "$cand" ] && [ -x "$cand" ] && "$cand" -c 'import sys' >/dev/null 2>&1 && { echo "$cand"; return 0; }
  done
  return 1
}

record() {  # record SERIES PY VERSION INSTALL IMPORTS CLI TESTS PASSED FAILED ERRORS SKIPPED MINUTES
  local IFS=$'\t'; echo "$*" >>"$RESULTS"
}

selected() {
  [ -z "$ONLY" ] && return 0
  local s; for s in $ONLY; do [ "$s" = "$1" ] && return 0; done; return 1
}

count=0
for combo in "${MATRIX[@]}"; do selected "${combo%% *}" && count=$((count + 1)); done
if [ "$count" -eq 0 ]; then
  echo "MATRIX_ONLY='$ONLY' selects no combination; known: $(printf '%s ' "${MATRIX[@]%% *}")" >&2
  return 2
fi

mkdir -p "$ROOT"
printf '*\n' >"$ROOT/.gitignore"   # the whole folder stays out of git, whatever .gitignore says

START_ALL=$(date +%s)

if [ -n "${MATRIX_WHEEL:-}" ]; then
  WHEEL=$(readlink -f "$MATRIX_WHEEL")
else
  echo "=== building the wheel (scripts/build_wheel.sh)"
  scripts/build_wheel.sh || { echo "wheel build failed" >&2; exit 1; }
  version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
  WHEEL=$REPO/dist/airflow_provider_omni-$version-py3-none-any.whl
fi
[ -f "$WHEEL" ] || { echo "no wheel at $WHEEL" >&2; exit 1; }
# Keep a private copy, so a rebuild during the run (another `make wheel`) does not change it.
mkdir -p "$ROOT/wheels"
cp -f "$WHEEL" "$ROOT/wheels/"
WHEEL=$ROOT/wheels/$(basename "$WHEEL")
echo "=== wheel: $WHEEL (sha256 $(sha256sum "$WHEEL" | cut -c1-16))"

RESULTS=$ROOT/results.tsv
: >"$RESULTS"
overall=0

stage_tests() {  # stage_tests DEST: a copy of what the tests read from the repository
  local dest=$1
  rm -rf "$dest"; mkdir -p "$dest"
  local item
  for item in tests example_dags bench .ci scripts constraints README.md CHANGELOG.md pyproject.toml; do
    [ -e "$REPO/$item" ] && cp -r "$REPO/$item" "$dest/"
  done
  find "$dest" -name __pycache__ -type d -prune -exec rm -rf {} +
  mkdir -p "$dest/_plugin"
  cat >"$dest/_plugin/matrix_guard.py" <<'PY'
"""Matrix guard: the tests must import the provider installed in this venv, not a source tree."""
import os
import sys

import pytest


def pytest_configure(config):
    import airflow
    import airflow_provider_omni

    where = os.path.realpath(airflow_provider_omni.__file__)
    prefix = os.path.realpath(sys.prefix)
    print(f"\nmatrix: airflow_provider_omni from {where}", file=sys.stderr)
    print(f"matrix: airflow {airflow.__version__} from {os.path.dirname(airflow.__file__)}", file=sys.stderr)
    if not where.startswith(prefix + os.sep):
        pytest.exit(f"airflow_provider_omni imported from {where}, not from the venv {prefix}", returncode=3)
PY
}

summarize_junit() {  # summarize_junit XML OUT -> prints "passed failed errors skipped", writes per-file first errors
  "$VENV/bin/python" - "$1" "$2" <<'PY'
import re, sys, xml.etree.ElementTree as ET
from collections import OrderedDict
xml, out = sys.argv[1:]
try:
    root = ET.parse(xml).getroot()
except Exception:
    print("0 0 0 0"); open(out, "w").write("no JUnit XML (pytest did not finish)\n"); sys.exit()
cases = root.iter("testcase")
counts = dict(passed=0, failed=0, errors=0, skipped=0)
per_file = OrderedDict()
for case in cases:
    name = case.get("classname") or case.get("name") or "?"   # collection errors have no classname
    parts = name.split(".")
    idx = next((i for i, part in enumerate(parts) if part.startswith("test_")), len(parts) - 1)
    file = "/".join(parts[: idx + 1]) + ".py"
    kind = "passed"
    detail = None
    for child in case:
        if child.tag in ("failure", "error"):
            kind = "failed" if child.tag == "failure" else "errors"
            lines = (child.get("message") or "").strip().splitlines()
            detail = lines[0] if lines else ""
            # The exception pytest shows last ("E   ...") says more than "collection failure".
            e_lines = [l[1:].strip() for l in (child.text or "").splitlines() if l.startswith("E ") and l[1:].strip()]
            errs = [l for l in e_lines if re.match(r"^[A-Za-z_.]*(Error|Exception|Exit|Timeout|Failed|Group)\b", l)]
            last = (errs or e_lines or [""])[-1]
            if last and last not in detail:
                detail = f"{detail} | {last}"
            break
        if child.tag == "skipped":
            kind = "skipped"
    counts[kind] += 1
    entry = per_file.setdefault(file, dict(passed=0, failed=0, errors=0, skipped=0, first=None))
    entry[kind] += 1
    if detail is not None and entry["first"] is None:
        entry["first"] = f'{case.get("name")}: {detail[:600]}'
with open(out, "w") as fh:
    for file, e in per_file.items():
        fh.write(f'{file}: passed={e["passed"]} failed={e["failed"]} errors={e["errors"]} skipped={e["skipped"]}\n')
        if e["first"]:
            fh.write(f'    first: {e["first"]}\n')
print(counts["passed"], counts["failed"], counts["errors"], counts["skipped"])
PY
}

run_combo() {  # run_combo SERIES PY [browser]: everything for one combination; console output to stdout
  local series=$1 py=$2 browser=${3:-}
  local name="${series}-py${py}"
  local VENV CONSTRAINTS started install imports cli tests passed failed errors skipped status
  local airflow_version interpreter LOGS wheel_req minutes STAGE junit cmd t0 timeout_cmd rc markers sub out
  VENV=$ROOT/$name
  CONSTRAINTS=$REPO/constraints/airflow-${series}.txt
  started=$(date +%s)
  install="ok"; imports="-"; cli="ok"; tests="-"; passed=0; failed=0; errors=0; skipped=0; status="PASS"
  echo
  echo "=================== Airflow ${series} on Python ${py}  (${VENV#"$REPO"/})"
  airflow_version=$(sed -n 's/^apache-airflow==\([^ ]*\).*/\1/p' "$CONSTRAINTS" 2>/dev/null)
  if [ ! -f "$CONSTRAINTS" ]; then
    echo "no $CONSTRAINTS: run constraints/generate.sh $series" >&2
    record "$series" "$py" "-" "no constraints" "-" "-" "-" 0 0 0 0 "0.0"
    return 1
  fi

  if ! interpreter=$(find_python "$py") ||
     ! UV_PYTHON_DOWNLOADS=never "$UV" venv -q --clear --python "$interpreter" "$VENV"; then
    echo "cannot create the venv: no working python${py}" >&2
    record "$series" "$py" "$airflow_version" "no python${py}" "-" "-" "-" 0 0 0 0 "0.0"
    return 1
  fi
  LOGS=$VENV/_matrix
  mkdir -p "$LOGS/airflow-home" "$LOGS/tmp"
  export VIRTUAL_ENV=$VENV

  # -- install: the wheel with its extras, Airflow pinned, everything under the constraints
  wheel_req="airflow-provider-omni[${EXTRAS}] @ file://${WHEEL}"
  echo "--- install: apache-airflow==${airflow_version} + wheel[${EXTRAS}] -c ${CONSTRAINTS#"$REPO"/}"
  if ! "$UV" pip install -c "$CONSTRAINTS" "apache-airflow==${airflow_version}" "$wheel_req" >"$LOGS/install.log" 2>&1; then
    install="FAIL"
    sed -n '1,15p' "$LOGS/install.log" | sed 's/^/    /'
    if [ "$FORCE" = "1" ]; then
      echo "--- install (forced): apache-airflow overridden to ${airflow_version}"
      printf 'apache-airflow==%s\n' "$airflow_version" >"$LOGS/override.txt"
      if "$UV" pip install -c "$CONSTRAINTS" --override "$LOGS/override.txt" \
           "apache-airflow==${airflow_version}" "$wheel_req" >>"$LOGS/install.log" 2>&1; then
        install="FAIL(forced)"
      else
        sed -n '1,15p' "$LOGS/install.log" | sed 's/^/    /'
      fi
    fi
  fi
  if [ "$install" = "FAIL" ]; then
    status="FAIL"; overall=1
    minutes=$(awk -v s="$(( $(date +%s) - started ))" 'BEGIN{printf "%.1f", s/60}')
    record "$series" "$py" "$airflow_version" "$install" "-" "-" "-" 0 0 0 0 "$minutes"
    return 1
  fi
  "$UV" pip freeze >"$LOGS/freeze.txt" 2>/dev/null
  echo "    $(grep -E '^(apache-airflow|apache-airflow-core|apache-airflow-task-sdk|apache-airflow-providers-common-compat|airflow-provider-omni)( @|==)' "$LOGS/freeze.txt" | sed 's/ @ .*/ (wheel)/' | tr '\n' ' ')"

  # -- where the provider comes from (outside the repository, in the venv)
  (cd "$LOGS" && "$VENV/bin/python" -c 'import airflow_provider_omni as p, sys; print("    airflow_provider_omni.__file__ =", p.__file__)') \
    || { echo "    cannot import airflow_provider_omni"; status="FAIL"; }

  # -- every module the provider declares (and the sandbox) imports; first error with the provider's line
  export AIRFLOW_HOME=$LOGS/airflow-home AIRFLOW__CORE__LOAD_EXAMPLES=False
  echo "--- imports"
  if ! (cd "$LOGS" && "$VENV/bin/python" -W ignore - <<'PY'
import importlib, traceback, sys
from airflow_provider_omni.get_provider_info import get_provider_info
info = get_provider_info()
modules = []
for section in ("hooks", "operators", "sensors", "triggers"):
    for entry in info.get(section, []):
        modules += entry["python-modules"]
classes = list(info.get("notifications", [])) + [c["hook-class-name"] for c in info.get("connection-types", [])]
modules += ["airflow_provider_omni.outcome", "airflow_provider_omni.sandbox.app", "airflow_provider_omni.sandbox.server"]
bad = 0
for target in modules + classes:
    module, _, attr = (target.rpartition(".") if target in classes else (target, "", ""))
    try:
        obj = importlib.import_module(module)
        if attr:
            getattr(obj, attr)
    except Exception as exc:
        bad += 1
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "airflow_provider_omni" in f.filename]
        where = f"{frames[-1].filename.split('site-packages/')[-1]}:{frames[-1].lineno}" if frames else "?"
        print(f"    {target}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}  [{where}]")
    else:
        print(f"    {target}: ok")
sys.exit(1 if bad else 0)
PY
  ) >"$LOGS/imports.log" 2>&1; then
    imports="FAIL($(grep -E '^    airflow_provider_omni' "$LOGS/imports.log" | grep -cv ': ok$'))"; status="FAIL"
  else
    imports="ok"
  fi
  grep -E '^    airflow_provider_omni' "$LOGS/imports.log" | grep -v ': ok$' | cut -c1-300

  # -- the providers CLI, with a private AIRFLOW_HOME
  local -A want=(
    [list]="airflow-provider-omni"
    [hooks]="infobip_omni"
    [triggers]="OmniDeliveryReportTrigger|airflow_provider_omni.triggers.delivery_report"
    [notifications]="OmniNotifier"
  )
  local cli_failed=()
  for sub in list hooks triggers notifications; do
    out="$LOGS/providers-$sub.log"
    (cd "$LOGS" && "$VENV/bin/airflow" providers "$sub" -o plain) >"$out" 2>&1
    rc=$?
    if [ $rc -ne 0 ] || ! grep -qE "${want[$sub]}" "$out"; then
      cli_failed+=("$sub")
      echo "    airflow providers $sub: FAIL (exit $rc, '${want[$sub]}' $(grep -qE "${want[$sub]}" "$out" && echo found || echo 'not found'))"
      grep -iE "error|exception|warning|omni" "$out" | grep -v '^\s*$' | head -5 | cut -c1-300 | sed 's/^/        /'
    else
      echo "    airflow providers $sub: ok ($(grep -m1 -E "${want[$sub]}" "$out" | tr -s ' ' | cut -c1-120))"
    fi
  done
  if [ ${#cli_failed[@]} -gt 0 ]; then cli="FAIL(${cli_failed[*]})"; status="FAIL"; fi
  unset AIRFLOW_HOME AIRFLOW__CORE__LOAD_EXAMPLES

  # -- the tests, from a staged copy, with this venv's pytest
  STAGE=$LOGS/stage
  stage_tests "$STAGE"
  junit=$LOGS/junit.xml
  # python -m pytest: the cwd (the staged copy, where tests/ is a namespace package for
  # `from tests.openapi import ...`) is on sys.path; it holds no airflow_provider_omni/.
  # --continue-on-collection-errors: a test file that does not import must not hide the others.
  markers=$MARKERS
  [ "$browser" = "browser" ] || markers="($MARKERS) and not browser"
  cmd=("$VENV/bin/python" -m pytest -p no:cacheprovider -p matrix_guard -m "$markers" -q -ra
       --continue-on-collection-errors
       --basetemp "$LOGS/pytest-tmp" --junitxml "$junit" "${TEST_PATHS[@]}" "${EXTRA_ARGS[@]}")
  echo "--- pytest (cwd ${STAGE#"$REPO"/}): ${cmd[*]#"$VENV"/}"
  t0=$(date +%s)
  timeout_cmd=()
  [ -n "${MATRIX_PYTEST_TIMEOUT:-}" ] && timeout_cmd=(timeout --signal=INT --kill-after=90 "$MATRIX_PYTEST_TIMEOUT")
  (
    cd "$STAGE" &&
    env -u PYTHONPATH PYTHONPATH="$STAGE/_plugin" AIRFLOW_HOME="$LOGS/airflow-home" OMNI_TEST_TMP="$LOGS/tmp" \
      TMPDIR="$LOGS/tmp" "${timeout_cmd[@]}" "${cmd[@]}"
  ) >"$LOGS/pytest.log" 2>&1
  rc=$?
  grep -m2 "^matrix: " "$LOGS/pytest.log" | sed 's/^/    /'
  tail -n 1 "$LOGS/pytest.log" | sed 's/^/    /'
  read -r passed failed errors skipped < <(summarize_junit "$junit" "$LOGS/by-file.txt")
  case $rc in
    0) tests="ok" ;;
    5) tests="none collected" ;;
    124|130) tests="TIMEOUT"; status="FAIL" ;;
    *) tests="FAIL(rc=$rc)"; status="FAIL" ;;
  esac
  echo "    pytest exit $rc in $(( $(date +%s) - t0 ))s; per file: ${LOGS#"$REPO"/}/by-file.txt"
  if [ -d "$STAGE/artifacts" ] && [ -n "$(ls -A "$STAGE/artifacts")" ]; then  # screenshots
    rm -rf "$REPO/artifacts/matrix-$name"; mkdir -p "$REPO/artifacts/matrix-$name"
    cp -r "$STAGE/artifacts/." "$REPO/artifacts/matrix-$name/"
    echo "    artifacts: artifacts/matrix-$name/ ($(ls "$REPO/artifacts/matrix-$name" | tr '\n' ' '))"
  fi
  [ "${MATRIX_KEEP_STAGE:-0}" = "1" ] || rm -rf "$STAGE" "$LOGS/pytest-tmp" "$LOGS/tmp"
  [ "$install" != "ok" ] && status="FAIL"
  minutes=$(awk -v s="$(( $(date +%s) - started ))" 'BEGIN{printf "%.1f", s/60}')
  record "$series" "$py" "$airflow_version" "$install" "$imports" "$cli" "$tests" \
    "$passed" "$failed" "$errors" "$skipped" "$minutes"
  [ "$status" = "PASS" ]
}

# Up to $JOBS combinations at once (the tests mostly wait on the sandbox's simulated time and on
# subprocesses, so 3 at once fit 2 cores); each one's console output is printed when it ends.
pids=(); names=()
for combo in "${MATRIX[@]}"; do
  read -r series py browser <<<"$combo"
  selected "$series" || continue
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  name="${series}-py${py}"
  echo "--- $(date +%H:%M:%S) starting Airflow $series on Python $py${browser:+ (with the browser tests)}"
  ( run_combo "$series" "$py" "$browser" ) >"$ROOT/$name.out" 2>&1 &
  pids+=($!); names+=("$name")
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || overall=1
  cat "$ROOT/${names[$i]}.out"
done

TOTAL=$(( $(date +%s) - START_ALL ))
echo
echo "=================== matrix results (pytest -m \"$MARKERS\", browser tests where marked${MATRIX_PYTEST_ARGS:+; $MATRIX_PYTEST_ARGS})"
{
  printf 'Airflow\tPython\tversion\tinstall\timports\tproviders CLI\ttests\tpassed\tfailed\terrors\tskipped\tminutes\n'
  sort -V "$RESULTS"
} | column -t -s $'\t'
awk -v t="$TOTAL" 'BEGIN{printf "total wall time: %.1f minutes\n", t/60}'
echo "logs: .venv-matrix/<series>-py<python>/_matrix/ (install.log, providers-*.log, pytest.log, by-file.txt)"
# Last, so that a log cut to its tail still names what failed: each failing combination's tests.
for name in "${names[@]}"; do
  grep -q "^FAILED \|^ERROR " "$ROOT/$name/_matrix/pytest.log" 2>/dev/null || continue
  echo "--- $name: what failed (the whole log: .venv-matrix/$name/_matrix/pytest.log)"
  grep "^FAILED \|^ERROR " "$ROOT/$name/_matrix/pytest.log" | cut -c1-400 | head -n 20 | sed 's/^/    /'
done
return $overall
}

# One compound command: bash reads it whole before running it, so it never reads this file again.
{ main "$@"; exit $?; }
