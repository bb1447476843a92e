#!/usr/bin/env bash
# Remote-write ingest, side by side: the same pre-encoded batches sent on loopback to
# `nightshift serve` (decode, normalise, derive golden signals, detect) and to a real
# Prometheus (Debian's 2.42, --web.enable-remote-write-receiver, storing only), one after the
# other in the same run. Writes OUTDIR/summary.md and OUTDIR/results.json.
#
# usage: bench/remote_write/run.sh [--out OUTDIR] [--seconds S] [--connections C] [--services N] [--skip-build]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$repo/bench/out/remote_write"
seconds=20
connections=4
services=400
build=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --services) services="$2"; shift 2 ;;
    --skip-build) build=0; shift ;;
    -h|--help) sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
command -v prometheus >/dev/null || { echo "run.sh: no prometheus binary; install Debian's 'prometheus' (scripts/test does)" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-$repo/target}/release"
if [[ $build -eq 1 ]]; then
  (cd "$repo" && cargo build --release --bin nightshift --example remote_write_load)
fi
mkdir -p "$out"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1$2" >/dev/null && return 0; sleep 0.2; done; echo "run.sh: port $1 never became ready" >&2; return 1; }
load() { local url=$1 pid=$2; shift 2; "$target/examples/remote_write_load" --url "$url" --pid "$pid" --seconds "$seconds" --connections "$connections" --services "$services" --json "$@"; }

# 1. Nightshift: every golden signal derived and detected, and the memory series of every pod
#    scored by its own ensemble.
ns=$(port)
cat > "$work/nightshift.yaml" <<YAML
serve:
  listen: 127.0.0.1:$ns
  interval: 1s
store:
  path: $work/nightshift.db
detect:
  watch: ['container_memory_working_set_bytes']
YAML
"$target/nightshift" serve --config "$work/nightshift.yaml" 2>"$work/nightshift.log" &
ns_pid=$!
wait_ready "$ns" /readyz
echo "== nightshift serve (pid $ns_pid)" >&2
load "http://127.0.0.1:$ns/api/v1/write" "$ns_pid" > "$work/nightshift.json"
sleep 2
curl -s "http://127.0.0.1:$ns/metrics" | grep -E '^nightshift_(derived_series|watched_series|ingest_samples_total|anomaly_reports_total|detector_state_bytes)' > "$work/nightshift.metrics" || true
kill "$ns_pid"; wait "$ns_pid" 2>/dev/null || true

# 1b. The same Nightshift over HTTPS with a bearer token (serve.tls, serve.auth), as
#     docs/security.md configures it: what TLS and the credentials check cost.
#     A throwaway CA and a server certificate it signs (rustls takes no self-signed CA as a
#     server's own certificate).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/req.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$work/ext.cnf"
openssl x509 -req -in "$work/req.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -extfile "$work/ext.cnf" -out "$work/cert.pem" 2>/dev/null
token=$(openssl rand -hex 32)
nt=$(port)
cat > "$work/nightshift-tls.yaml" <<YAML
serve:
  listen: 127.0.0.1:$nt
  interval: 1s
  tls: {cert_file: $work/cert.pem, key_file: $work/key.pem}
  auth:
    tokens: [{name: prometheus, token: $token, scopes: [ingest]}]
store:
  path: $work/nightshift-tls.db
detect:
  watch: ['container_memory_working_set_bytes']
YAML
"$target/nightshift" serve --config "$work/nightshift-tls.yaml" 2>"$work/nightshift-tls.log" &
nt_pid=$!
for _ in $(seq 100); do curl -sf --cacert "$work/ca.pem" "https://127.0.0.1:$nt/readyz" >/dev/null && break; sleep 0.2; done
echo "== nightshift serve over TLS with a token (pid $nt_pid)" >&2
load "https://127.0.0.1:$nt/api/v1/write" "$nt_pid" --token "$token" --ca-file "$work/ca.pem" > "$work/nightshift-tls.json"
kill "$nt_pid"; wait "$nt_pid" 2>/dev/null || true

# 2. Prometheus, receiving the same batches.
pr=$(port)
printf 'global:\n  scrape_interval: 15s\n' > "$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address="127.0.0.1:$pr" --web.enable-remote-write-receiver 2>"$work/prometheus.log" &
pr_pid=$!
wait_ready "$pr" /-/ready
echo "== prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') (pid $pr_pid)" >&2
load "http://127.0.0.1:$pr/api/v1/write" "$pr_pid" > "$work/prometheus.json"
kill "$pr_pid"; wait "$pr_pid" 2>/dev/null || true

python3 - "$work" "$out" <<'PY'
import json, sys, pathlib
work, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
ns = json.loads((work / "nightshift.json").read_text())
pr = json.loads((work / "prometheus.json").read_text())
nt = json.loads((work / "nightshift-tls.json").read_text())
metrics = (work / "nightshift.metrics").read_text().strip()
(out / "results.json").write_text(json.dumps({"nightshift": ns, "nightshift_tls_auth": nt, "prometheus": pr, "nightshift_metrics": metrics}, indent=2) + "\n")
def row(name, r):
    mib = "–" if r["peak_rss_kib"] is None else f'{r["peak_rss_kib"] / 1024:,.0f}'
    return f'| {name} | {r["samples_per_second"]:,.0f} | {r["samples_accepted"]:,} | {r["seconds"]:.1f} | {r["requests_refused"]} | {mib} |'
ratio = ns["samples_per_second"] / pr["samples_per_second"]
text = "\n".join([
    "# Remote-write ingest: Nightshift and Prometheus",
    "",
    f'Same pre-encoded batches ({ns["series"]:,} series, 2,000 samples a request), loopback, one receiver at a time.',
    "",
    "| receiver | samples/s accepted | samples | seconds | requests refused (503/429, retried) | peak RSS MiB |",
    "|---|---|---|---|---|---|",
    row("nightshift serve (decode, derive, detect)", ns),
    row("nightshift serve over TLS with a bearer token", nt),
    row("Prometheus (store only)", pr),
    "",
    f"Nightshift ÷ Prometheus: {ratio:.2f}×. TLS and auth ÷ plain: {nt['samples_per_second'] / ns['samples_per_second']:.2f}×.",
    "",
    "Nightshift after the run:",
    "",
    "```",
    metrics,
    "```",
    "",
])
(out / "summary.md").write_text(text)
print(text)
PY
