#!/usr/bin/env bash
# Builds the sdist and the wheel into dist/ in a throwaway venv, runs `twine check`, and checks that
# the wheel holds every file the package needs at run time.
#
#   scripts/build_wheel.sh          (make wheel)
#
# Checks, besides `twine check` (metadata and README rendering):
#   * every module and every non-Python file under airflow_provider_omni/ in the working tree
#     (tracked or not, except git-ignored ones such as __pycache__) is in the wheel, py.typed included;
#   * the wheel holds nothing outside airflow_provider_omni/ and its .dist-info (no tests, bench, ...);
#   * the entry points Airflow and pytest look for: apache_airflow_provider, pytest11, omni-sandbox;
#   * the sdist holds pyproject.toml, README.md and the same package files.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
UV=${UV:-$REPO/.venv/bin/uv}
PYTHON=${PYTHON:-python3}
DIST=${DIST:-$REPO/dist}
# build and twine at the versions pinned for the newest matrix entry.
BUILD_CONSTRAINTS=${BUILD_CONSTRAINTS:-$REPO/constraints/airflow-3.3.txt}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/omni-wheel-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo ">> throwaway venv in $WORK/venv"
"$UV" venv -q --python "$PYTHON" "$WORK/venv"
VIRTUAL_ENV="$WORK/venv" "$UV" pip install -q -c "$BUILD_CONSTRAINTS" build twine

version=$("$WORK/venv/bin/python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
mkdir -p "$DIST"
rm -f "$DIST"/airflow_provider_omni-"$version"-*.whl "$DIST"/airflow_provider_omni-"$version".tar.gz

echo ">> python -m build --outdir $DIST (sdist, then the wheel from the sdist)"
"$WORK/venv/bin/python" -m build --outdir "$DIST" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
tail -n 1 "$WORK/build.log"

WHEEL="$DIST/airflow_provider_omni-$version-py3-none-any.whl"
SDIST="$DIST/airflow_provider_omni-$version.tar.gz"
echo ">> twine check"
"$WORK/venv/bin/twine" check --strict "$SDIST" "$WHEEL"

# The package files of the working tree: tracked and untracked, git-ignored ones left out.
git ls-files --cached --others --exclude-standard -- airflow_provider_omni | sort -u >"$WORK/tree.txt"

echo ">> wheel and sdist contents"
"$WORK/venv/bin/python" - "$WHEEL" "$SDIST" "$WORK/tree.txt" "$version" <<'PY'
import sys, tarfile, zipfile, configparser

wheel, sdist, tree_file, version = sys.argv[1:]
tree = [line.strip() for line in open(tree_file) if line.strip()]
tree = [p for p in tree if not p.endswith((".pyc", ".pyo"))]
problems = []

with zipfile.ZipFile(wheel) as zf:
    names = set(zf.namelist())
    dist_info = f"airflow_provider_omni-{version}.dist-info/"
    entry_points = zf.read(dist_info + "entry_points.txt").decode()
    metadata = zf.read(dist_info + "METADATA").decode()

for path in tree:
    if path not in names:
        problems.append(f"wheel lacks {path}")
if "airflow_provider_omni/py.typed" not in names:
    problems.append("wheel lacks airflow_provider_omni/py.typed")
for name in sorted(names):
    if not (name.startswith("airflow_provider_omni/") or name.startswith(dist_info)):
        problems.append(f"wheel holds a file outside the package: {name}")
extra = sorted(n for n in names if n.startswith("airflow_provider_omni/") and n not in tree)
if extra:
    problems.append("wheel holds package files that the working tree does not: " + ", ".join(extra))

ep = configparser.ConfigParser()
ep.read_string(entry_points)
expect = {
    ("apache_airflow_provider", "provider_info"): "airflow_provider_omni.get_provider_info:get_provider_info",
    ("pytest11", "omni_sandbox"): "airflow_provider_omni.sandbox.pytest_plugin",
    ("console_scripts", "omni-sandbox"): "airflow_provider_omni.sandbox.__main__:main",
}
for (section, key), value in expect.items():
    got = ep.get(section, key, fallback=None)
    if got != value:
        problems.append(f"entry point [{section}] {key} = {got!r}, expected {value!r}")

with tarfile.open(sdist) as tf:
    snames = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
for path in ["pyproject.toml", "README.md", *tree]:
    if path not in snames:
        problems.append(f"sdist lacks {path}")

non_py = [p for p in tree if not p.endswith(".py")]
requires_python = next((l.split(":", 1)[1].strip() for l in metadata.splitlines() if l.startswith("Requires-Python:")), None)
requires_airflow = [l.split(":", 1)[1].strip() for l in metadata.splitlines()
                    if l.startswith("Requires-Dist:") and l.split(":", 1)[1].strip().startswith("apache-airflow")]
print(f"   wheel: {len(names)} files; package files in the tree: {len(tree)} ({len(tree) - len(non_py)} .py, non-Python: {', '.join(non_py) or 'none'})")
print(f"   Requires-Python: {requires_python}; Requires-Dist: {'; '.join(requires_airflow)}")
if problems:
    print("FAILED:")
    for p in problems:
        print("  - " + p)
    sys.exit(1)
print("   OK: every package file, py.typed, the entry points; nothing else in the wheel")
PY
ls -l "$SDIST" "$WHEEL"
