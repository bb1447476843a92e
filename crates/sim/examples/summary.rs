//! Prints a per-minute summary of a built-in scenario as a consumer of the telemetry would
//! derive it: `cargo run --release -p nightshift-sim --example summary -- shop-db-saturation`.

use nightshift_sim::{Scenario, Simulation, builtin_scenarios};
use std::collections::BTreeMap;

fn main() {
    let wanted = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "shop-db-saturation".to_string());
    let every: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let Some((file, yaml)) = builtin_scenarios()
        .into_iter()
        .find(|(f, _)| f.trim_end_matches(".yaml") == wanted)
    else {
        eprintln!("no built-in scenario {wanted}");
        std::process::exit(2);
    };
    let scenario = match Scenario::parse(yaml, file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let sim = Simulation::new(&scenario);
    let series = sim.series().to_vec();
    println!(
        "{} series, {} ticks; faults: {:?}",
        series.len(),
        sim.total_ticks(),
        scenario.faults()
    );
    // Which series feed which per-service sums.
    let mut req: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut err: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut hsum: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut hcount: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut up: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (i, k) in series.iter().enumerate() {
        let svc = k.label("service").unwrap_or("").to_string();
        let i = i as u32;
        match k.metric.as_str() {
            "http_requests_total" => {
                req.entry(svc.clone()).or_default().push(i);
                if k.label("code").is_some_and(|c| c.starts_with('5')) {
                    err.entry(svc).or_default().push(i);
                }
            }
            "http_request_duration_seconds_sum" => hsum.entry(svc).or_default().push(i),
            "http_request_duration_seconds_count" => hcount.entry(svc).or_default().push(i),
            "up" if k.label("job") != Some("node-exporter") => up.entry(svc).or_default().push(i),
            _ => {}
        }
    }
    let mut last: Vec<Option<f64>> = vec![None; series.len()];
    let mut prev: Vec<Option<f64>> = vec![None; series.len()];
    let mut cur: Vec<Option<f64>> = vec![None; series.len()];
    let start = scenario.start_ms();
    let mut edge_acc: BTreeMap<(String, String), (u64, u64, f64)> = BTreeMap::new();
    let mut err_logs: BTreeMap<String, usize> = BTreeMap::new();
    let show_logs = std::env::var_os("SHOW_LOGS").is_some();
    let mut log_shapes: BTreeMap<(String, String), (usize, String)> = BTreeMap::new();
    let mut n_samples = 0usize;
    let mut n_logs = 0usize;
    for (t, tick) in sim.enumerate() {
        n_samples += tick.samples.len();
        n_logs += tick.logs.len();
        cur.iter_mut().for_each(|v| *v = None);
        for (i, v) in &tick.samples {
            cur[*i as usize] = Some(*v);
            last[*i as usize] = Some(*v);
        }
        for s in &tick.spans {
            let e = edge_acc
                .entry((s.client.clone(), s.server.clone()))
                .or_default();
            e.0 += s.requests;
            e.1 += s.errors;
            e.2 += s.duration_seconds_sum;
        }
        for l in &tick.logs {
            if show_logs {
                let svc = l.resource.service_name().unwrap_or("?").to_string();
                let shape: String = l
                    .body
                    .chars()
                    .filter(|c| !c.is_ascii_digit())
                    .take(50)
                    .collect();
                let e = log_shapes
                    .entry((svc, format!("{:?} {shape}", l.severity)))
                    .or_insert((0, l.body.clone()));
                e.0 += 1;
            }
            if l.severity >= nightshift_core::Severity::Error {
                *err_logs
                    .entry(l.resource.service_name().unwrap_or("?").to_string())
                    .or_default() += 1;
            }
        }
        for c in &tick.changes {
            println!(
                "  CHANGE {:>6} {:?} {} {:?} {}",
                (c.ts - start) / 1000,
                c.kind,
                c.target,
                c.version,
                c.description
            );
        }
        for e in &tick.events {
            if !matches!(
                e.reason.as_str(),
                "Pulled" | "Created" | "Started" | "Pulling" | "Scheduled"
            ) {
                println!(
                    "  EVENT  {:>6} {} {} {}",
                    (e.ts - start) / 1000,
                    e.reason,
                    e.object,
                    e.message
                );
            }
        }
        for a in &tick.alerts {
            println!(
                "  ALERT  {:>6} {:?} {} {} {}",
                (tick.ts - start) / 1000,
                a.status,
                a.name(),
                a.label("pod")
                    .or(a.label("service"))
                    .or(a.label("node"))
                    .unwrap_or(""),
                a.annotations
                    .get("description")
                    .map(String::as_str)
                    .unwrap_or("")
            );
        }
        if t % every != 0 || tick.ts < start - 10 * 60_000 {
            if tick.ts < start - 10 * 60_000 {
                prev.clone_from(&last);
            }
            continue;
        }
        let delta = |ids: &[u32]| -> f64 {
            ids.iter()
                .map(|i| match (cur[*i as usize], prev[*i as usize]) {
                    (Some(c), Some(p)) if c >= p => c - p,
                    (Some(c), _) => c,
                    _ => 0.0,
                })
                .sum()
        };
        let mut line = format!("{:>5}m", (tick.ts - start) / 60_000);
        for (svc, ids) in &req {
            let r = delta(ids);
            let e = delta(&err[svc]);
            let s = delta(&hsum[svc]);
            let c = delta(&hcount[svc]);
            let u: f64 = up[svc].iter().filter_map(|i| cur[*i as usize]).sum();
            let n = up[svc]
                .iter()
                .filter(|i| cur[**i as usize].is_some())
                .count();
            line.push_str(&format!(
                " | {}:{:.0}/s e{:.1}% {:.0}ms u{}/{}",
                &svc[..svc.len().min(6)],
                r / (every as f64 * scenario.step_ms() as f64 / 1000.0),
                if r > 0.0 { 100.0 * e / r } else { 0.0 },
                if c > 0.0 { 1000.0 * s / c } else { 0.0 },
                u,
                n
            ));
        }
        println!("{line}");
        prev.clone_from(&last);
    }
    println!("samples {n_samples}, logs {n_logs}");
    for ((c, s), (r, e, d)) in &edge_acc {
        println!(
            "edge {c}->{s}: {r} req, {:.2}% err, {:.1}ms",
            100.0 * *e as f64 / *r as f64,
            1000.0 * d / *r as f64
        );
    }
    println!("error logs: {err_logs:?}");
    for ((svc, _), (n, example)) in &log_shapes {
        println!("{n:>6} {svc}: {example}");
    }
}
