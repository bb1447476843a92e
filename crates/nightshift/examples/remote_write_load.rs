//! Load generator for remote-write receivers: sends pre-encoded Prometheus remote-write 1.0
//! batches on loopback, as fast as the receiver takes them, and reports samples/s accepted
//! (2xx), requests refused (5xx/429, which Prometheus would retry) and the receiver's peak
//! memory. `bench/remote_write/run.sh` runs it against `nightshift serve` and a real Prometheus.
//!
//! usage: remote_write_load --url URL [--seconds S] [--connections C] [--services N]
//!        [--batch SAMPLES] [--rounds R] [--pid PID] [--token T] [--ca-file PEM] [--json]

use nightshift_ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    seconds: u64,
    connections: usize,
    services: usize,
    batch: usize,
    rounds: usize,
    pid: Option<u32>,
    /// Sent as `Authorization: Bearer`, as Prometheus' `remote_write.authorization` does.
    token: Option<String>,
    /// The CA of an https receiver.
    ca_file: Option<String>,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        seconds: 20,
        connections: 4,
        services: 400,
        batch: 2000,
        rounds: 200,
        pid: None,
        token: None,
        ca_file: None,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--url" => a.url = value()?,
            "--seconds" => a.seconds = num(value()?)?,
            "--connections" => a.connections = num(value()?)? as usize,
            "--services" => a.services = num(value()?)? as usize,
            "--batch" => a.batch = num(value()?)? as usize,
            "--rounds" => a.rounds = num(value()?)? as usize,
            "--pid" => a.pid = Some(num(value()?)? as u32),
            "--token" => a.token = Some(value()?),
            "--ca-file" => a.ca_file = Some(value()?),
            "--json" => a.json = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.url.is_empty() {
        return Err("--url is required, e.g. --url http://127.0.0.1:9797/api/v1/write".into());
    }
    Ok(a)
}

/// The series of a cluster of `services` services with 4 pods each, as docs/signals.md lists
/// them: request counters by code, a latency histogram, CPU and memory. 41 series per pod.
fn series(services: usize) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    for s in 0..services {
        for p in 0..4 {
            let base = |name: &str| {
                vec![
                    ("__name__".to_string(), name.to_string()),
                    ("namespace".to_string(), "shop".to_string()),
                    ("service".to_string(), format!("svc-{s}")),
                    ("pod".to_string(), format!("svc-{s}-{p}")),
                    ("job".to_string(), format!("svc-{s}")),
                ]
            };
            for code in ["200", "404", "500", "503"] {
                let mut l = base("http_requests_total");
                l.push(("code".into(), code.into()));
                out.push(l);
            }
            for le in [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                "+Inf",
            ] {
                let mut l = base("http_request_duration_seconds_bucket");
                l.push(("le".into(), le.into()));
                out.push(l);
            }
            out.push(base("http_request_duration_seconds_sum"));
            out.push(base("http_request_duration_seconds_count"));
            out.push(base("container_cpu_usage_seconds_total"));
            out.push(base("container_memory_working_set_bytes"));
            for _ in 0..21 {
                // Padding to a typical exporter's breadth: go runtime and process series.
                let n = out.len();
                let mut l = base("go_memstats_alloc_bytes");
                l.push(("shard".into(), n.to_string()));
                out.push(l);
            }
        }
    }
    out
}

/// `rounds` scrapes of every series, one second apart from `start`, cut into request bodies of
/// `batch` samples: each series with one sample, as Prometheus' queue sends them.
fn bodies(
    all: &[Vec<(String, String)>],
    rounds: usize,
    batch: usize,
    start: i64,
) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut counters = vec![0.0f64; all.len()];
    for r in 0..rounds {
        let ts = start + r as i64 * 1000;
        for chunk in all.chunks(batch).enumerate() {
            let (offset, labels) = (chunk.0 * batch, chunk.1);
            let timeseries = labels
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    counters[offset + i] += (state % 100) as f64;
                    TimeSeries {
                        labels: l
                            .iter()
                            .map(|(n, v)| Label {
                                name: n.clone(),
                                value: v.clone(),
                            })
                            .collect(),
                        samples: vec![Sample {
                            value: counters[offset + i],
                            timestamp: ts,
                        }],
                    }
                })
                .collect::<Vec<_>>();
            let n = timeseries.len();
            let req = WriteRequest { timeseries };
            let body = snap::raw::Encoder::new()
                .compress_vec(&req.encode_to_vec())
                .expect("compresses");
            out.push((body, n));
        }
    }
    out
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("remote_write_load: {e}");
            std::process::exit(2);
        }
    };
    let all = series(args.services);
    // Rounds one second apart from five minutes ago: inside what both receivers accept (not
    // more than 10 minutes ahead for Nightshift, not older than the head for Prometheus).
    let start = jiff::Timestamp::now().as_millisecond() - 5 * 60_000;
    eprintln!(
        "encoding {} rounds of {} series in batches of {} ...",
        args.rounds,
        all.len(),
        args.batch
    );
    let bodies = Arc::new(bodies(&all, args.rounds, args.batch, start));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut client = reqwest::Client::builder().pool_max_idle_per_host(args.connections);
    if let Some(ca) = &args.ca_file {
        let pem = std::fs::read(ca).expect("the CA file reads");
        for c in reqwest::Certificate::from_pem_bundle(&pem).expect("PEM certificates") {
            client = client.add_root_certificate(c);
        }
    }
    let client = client.build().expect("an HTTP client");
    let token = args.token.clone();
    let next = Arc::new(AtomicUsize::new(0));
    let (accepted, refused, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (client, bodies, next) = (client.clone(), bodies.clone(), next.clone());
        let (accepted, refused, failed) = (accepted.clone(), refused.clone(), failed.clone());
        let (url, token) = (args.url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                // Bodies are sent in order, each once (a retry sends the same one again).
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((body, n)) = bodies.get(i) else {
                    break;
                };
                loop {
                    let mut req = client.post(&url);
                    if let Some(t) = &token {
                        req = req.bearer_auth(t);
                    }
                    let r = req
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(body.clone())
                        .send()
                        .await;
                    match r.map(|r| r.status()) {
                        Ok(s) if s.is_success() => {
                            accepted.fetch_add(*n as u64, Ordering::Relaxed);
                            break;
                        }
                        Ok(s) if s.as_u16() == 429 || s.is_server_error() => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            if Instant::now() >= deadline {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = began.elapsed().as_secs_f64();
    let accepted = accepted.load(Ordering::Relaxed);
    let rate = accepted as f64 / secs;
    let memory = args.pid.and_then(peak_kib);
    let sent_all = next.load(Ordering::Relaxed) >= bodies.len();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "samples_accepted": accepted,
                "seconds": secs,
                "samples_per_second": rate,
                "requests_refused": refused.load(Ordering::Relaxed),
                "requests_failed": failed.load(Ordering::Relaxed),
                "series": all.len(),
                "ran_out_of_batches": sent_all,
                "peak_rss_kib": memory,
            })
        );
    } else {
        println!(
            "{accepted} samples accepted in {secs:.1} s: {rate:.0} samples/s; {} requests refused (retried), {} failed; peak memory {}",
            refused.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            memory.map_or("unknown".into(), |k| format!("{} MiB", k / 1024))
        );
    }
}
