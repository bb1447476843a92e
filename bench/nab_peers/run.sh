#!/usr/bin/env bash
# Runs peer anomaly detectors (ADTK, IsolationForest, Prophet) on the NAB corpus, times them,
# scores them and Nightshift with `nightshift eval nab`, and writes OUTDIR/summary.md.
#
# usage: bench/nab_peers/run.sh [--data DIR] [--out OUTDIR] [--skip-build] [--peers-only] [-- PEERS.PY ARGS...]
#   --data DIR     NAB folder with data/ and labels/ (default: ../shared/data/nab from the repo root)
#   --out OUTDIR   results folder (default: bench/out/nab)
#   --skip-build   use target/release/nightshift (under $CARGO_TARGET_DIR when set) as it is
#                  instead of running `cargo build --release` first
#   --peers-only   stop after the peers have written their results and timings
#   after --        extra arguments for peers.py (e.g. --detectors adtk --only exchange-2;
#                  a subset of files only makes sense with --peers-only: the scorer needs every file)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

data="$repo/../shared/data/nab"
out="$repo/bench/out/nab"
build=1
peers_only=0
peers_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --skip-build) build=0; shift ;;
    --peers-only) peers_only=1; shift ;;
    --) shift; peers_args=("$@"); break ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

[[ -d "$data/data" ]] || { echo "run.sh: no NAB data at $data/data (pass --data DIR)" >&2; exit 2; }
data="$(cd "$data" && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

say() { printf '\n== %s\n' "$*" >&2; }

# 1. Virtualenv with the pinned peers (re-used while requirements.txt is unchanged).
venv="$repo/bench/.venv"
py="$venv/bin/python"
req="$here/requirements.txt"
stamp="$venv/.nab_peers.requirements.sha256"
if [[ ! -x "$py" ]]; then
  say "creating virtualenv $venv"
  python3 -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' \
    || { echo "run.sh: the pinned wheels need CPython >= 3.11; python3 is $(python3 --version 2>&1)" >&2; exit 1; }
  python3 -m venv "$venv"
fi
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  say "installing pinned peers into $venv"
  "$py" -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r "$req"
  "$py" -m pip check
  echo "$want" > "$stamp"
fi

# Prophet ships its compiled Stan model in the wheel: check that a fit works with no network
# (inside an empty network namespace when the kernel lets us make one).
say "checking that Prophet fits offline"
smoke='
import logging, warnings; warnings.simplefilter("ignore")
logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)
import pandas as pd, numpy as np
from prophet import Prophet
logging.getLogger("prophet").setLevel(logging.ERROR); logging.getLogger("cmdstanpy").disabled = True
t = pd.date_range("2024-01-01", periods=576, freq="5min")
y = np.sin(np.arange(576) * 2 * np.pi / 288)
f = Prophet(daily_seasonality=True, weekly_seasonality=False, yearly_seasonality=False).fit(pd.DataFrame({"ds": t, "y": y}))
assert abs(f.predict(pd.DataFrame({"ds": t[:1]}))["yhat"].iloc[0]) < 0.2
print("prophet fit ok")
'
if unshare -rn true 2>/dev/null; then
  unshare -rn "$py" -c "$smoke"
else
  echo "(no network namespace available: checking without isolation)" >&2
  "$py" -c "$smoke"
fi

# 2. The peers, timed inside peers.py (detector work only).
say "running peers on $data -> $out"
t0=$(date +%s)
"$py" "$here/peers.py" --data "$data" --out "$out" ${peers_args[@]+"${peers_args[@]}"}
peers_wall=$(( $(date +%s) - t0 ))
say "peers done in ${peers_wall}s"
cat "$out/timings.json"
[[ $peers_only -eq 1 ]] && exit 0

# 3. Score every peer and Nightshift itself with Nightshift's NAB scorer.
bin="${CARGO_TARGET_DIR:-$repo/target}/release/nightshift"
if [[ $build -eq 1 ]]; then
  say "cargo build --release"
  (cd "$repo" && cargo build --release)
fi
[[ -x "$bin" ]] || { echo "run.sh: $bin not found: run 'cargo build --release' at the repo root" >&2; exit 1; }

mkdir -p "$out/scores"
say "nightshift eval nab (Nightshift's own detector)"
"$bin" eval nab --data "$data" --json > "$out/scores/nightshift.json"
for dir in "$out"/*/; do
  det="$(basename "$dir")"
  [[ "$det" == scores ]] && continue
  [[ -f "$out/timings.json" ]] && grep -q "\"$det\"" "$out/timings.json" || continue
  say "nightshift eval nab --results $det"
  "$bin" eval nab --data "$data" --results "$out/$det" --json > "$out/scores/$det.json"
done

say "summary"
"$py" "$here/summary.py" --out "$out" --data "$data" --wall-seconds "$peers_wall"
echo >&2
echo "wrote $out/summary.md" >&2
