#!/usr/bin/env bash
# Log template mining side by side: Nightshift's miner and PyPI's drain3 (default
# configuration) in the same run, on the Loghub 2k samples (grouping accuracy, lines/s) and
# on a synthetic log of LINES lines from the simulator's services (throughput, peak memory).
# Writes OUTDIR/summary.md and OUTDIR/results.json.
#
# usage: bench/logs_peers/run.sh [--data DIR] [--lines N] [--out OUTDIR] [--skip-build]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
data="$repo/../shared/data/loghub2k"
lines=1000000
out="$repo/bench/out/logs"
build=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --lines) lines="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --skip-build) build=0; shift ;;
    -h|--help) sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -d "$data" ]] || { echo "run.sh: no Loghub samples at $data (pass --data DIR)" >&2; exit 2; }
mkdir -p "$out"
venv="$repo/bench/.venv-logs"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi
target="${CARGO_TARGET_DIR:-$repo/target}/release"
if [[ $build -eq 1 ]]; then
  (cd "$repo" && cargo build --release --bin nightshift --example synthetic_log)
fi
log="$out/synthetic-$lines.log"
[[ -f "$log" ]] || "$target/examples/synthetic_log" "$lines" > "$log"

echo "== nightshift" >&2
"$target/nightshift" eval logs --data "$data" --json > "$out/nightshift-loghub.json"
/usr/bin/time -f '%M' -o "$out/nightshift-rss.txt" "$target/nightshift" logs parse "$log" --json > "$out/nightshift-large.json"
echo "== drain3" >&2
"$venv/bin/python" "$here/peers.py" --loghub "$data" --large "$log" > "$out/drain3.json"

python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
ns_lh = json.loads((out / "nightshift-loghub.json").read_text())
ns_lg = json.loads((out / "nightshift-large.json").read_text())
ns_rss = int((out / "nightshift-rss.txt").read_text().split()[-1])
d3 = json.loads((out / "drain3.json").read_text())
rows = []
for name, s in ns_lh["systems"].items():
    d = d3["systems"].get(name, {})
    rows.append(f'| {name} | {s["ga"]:.3f} | {d.get("ga", float("nan")):.3f} | {s["lines_per_s"]:,.0f} | {d.get("lines_per_s", float("nan")):,.0f} |')
lg = d3["large"]
ratio = ns_lg["lines_per_s"] / lg["lines_per_s"]
text = "\n".join([
    "# Log template mining: Nightshift and drain3",
    "",
    "| Loghub 2k system | Nightshift GA | drain3 GA | Nightshift lines/s | drain3 lines/s |",
    "|---|---|---|---|---|",
    *rows,
    f'| **mean** | **{ns_lh["mean_ga"]:.3f}** | **{d3["mean_ga"]:.3f}** | | |',
    "",
    f'Synthetic log, {ns_lg["lines"]:,} lines from the simulator\'s services:',
    "",
    "| miner | lines/s (mining only) | templates | peak RSS MiB |",
    "|---|---|---|---|",
    f'| Nightshift | {ns_lg["lines_per_s"]:,.0f} | {len(ns_lg["templates"])} | {ns_rss / 1024:,.0f} |',
    f'| drain3 0.9.11 | {lg["lines_per_s"]:,.0f} | {lg["templates"]} | {lg["peak_rss_kib"] / 1024:,.0f} |',
    "",
    f"Nightshift ÷ drain3: {ratio:,.0f}× lines/s.",
    "",
])
(out / "summary.md").write_text(text)
(out / "results.json").write_text(json.dumps({"nightshift_loghub": ns_lh, "nightshift_large": {k: v for k, v in ns_lg.items() if k != "templates"}, "nightshift_rss_kib": ns_rss, "drain3": d3}, indent=2) + "\n")
print(text)
PY
