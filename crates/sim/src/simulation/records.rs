//! What the pods would log this tick and the probe events the kubelet would record.

use super::{
    C_DNS, C_IO_TIMEOUT, C_REFUSED, C_RESET, C_SERVER, C_TIMEOUT, C_TLS, C_TOO_MANY, Simulation,
};
use crate::cluster::Pod;
use crate::logs::{self, Cause};
use crate::scenario::{FaultKind, ServiceKind};
use crate::stats::poisson;
use nightshift_core::{EventType, LogRecord, Severity};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::lifecycle::pod_event;

impl Simulation {
    pub(super) fn emit_logs(&mut self, ts: i64) {
        let step_s = self.step_s();
        let scale = step_s / 15.0;
        let expiry: Vec<String> = self
            .cluster
            .faults
            .iter()
            .map(|f| {
                if f.kind == FaultKind::CertExpiry {
                    rfc3339(f.start_ms / 1000 - 1)
                } else {
                    String::new()
                }
            })
            .collect();
        let mut causes: Vec<(Cause, Option<usize>, f64)> = Vec::new();
        for p in 0..self.pods.len() {
            let st = &self.pods[p];
            if !st.running {
                continue;
            }
            let pod = &self.cluster.pods[p];
            let s = pod.service;
            let svc = &self.cluster.services[s];
            let fx = self.fx[s];
            let lo = ts - self.step_ms;
            let rng = &mut self.rng;
            let step_ms = self.step_ms;
            let at = move |rng: &mut ChaCha8Rng| lo + 1 + rng.random_range(0..step_ms);
            let info_rate = if svc.has_http() {
                2.0 * (st.util / 0.3).clamp(0.5, 1.5)
            } else {
                0.6
            };
            for _ in 0..poisson(rng, info_rate * scale) {
                let body = logs::info_line(rng, svc, st.moments.mean.max(st.own_mean));
                self.logs.push(log(at(rng), pod, Severity::Info, body));
            }
            if rng.random_bool((0.02 * scale).min(1.0)) {
                let body = logs::routine_warning(rng, svc);
                self.logs.push(log(at(rng), pod, Severity::Warn, body));
            }
            if st.mem_frac > 0.85 && svc.kind == ServiceKind::Service {
                for _ in 0..poisson(rng, 1.5 * scale * (st.mem_frac - 0.85) / 0.15) {
                    let body = logs::memory_warning(rng, svc, st.mem_frac);
                    self.logs.push(log(at(rng), pod, Severity::Warn, body));
                }
            }
            // Slowness the pod notices: slow queries on a database, slow upstreams or slow handlers elsewhere.
            let slow_own = st.own_mean > 5.0 * svc.latency_s && st.own_mean > 0.05;
            let slowest = self.out_edges[s]
                .iter()
                .map(|e| (self.edges[*e].server, self.edge_ticks[*e].moments.mean))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let slow_peer = slowest.filter(|(_, m)| *m > 0.25);
            if slow_own || slow_peer.is_some() {
                for _ in 0..poisson(rng, 1.2 * scale) {
                    let (lat, peer) = match slow_peer {
                        Some((k, m)) if !slow_own => (m, Some(&self.cluster.services[k])),
                        _ => (st.own_mean, None),
                    };
                    let body = logs::slow_warning(rng, svc, lat, peer);
                    self.logs.push(log(at(rng), pod, Severity::Warn, body));
                }
            }

            if !svc.has_http() {
                let t = &self.svc[s];
                let share = 1.0 / t.ready.len().max(1) as f64;
                let rejected = t.attempted * t.reject * share * step_s;
                if rejected > 0.0 {
                    for _ in 0..poisson(rng, (rejected * 0.05).min(25.0)) {
                        self.logs.push(log(
                            at(rng),
                            pod,
                            Severity::Error,
                            logs::too_many_clients_server_line(),
                        ));
                    }
                }
                let disk_fails = st.rps * t.disk_err * step_s;
                if disk_fails > 0.0
                    || (fx.disk.is_some()
                        && st.disk_extra > 0.0
                        && 1.0 - svc.pvc_base_used - st.disk_extra < 0.01)
                {
                    for _ in 0..poisson(rng, (disk_fails * 0.05).clamp(0.5, 25.0)) {
                        let body = logs::disk_full_line(rng, svc);
                        self.logs.push(log(at(rng), pod, Severity::Error, body));
                    }
                }
                continue;
            }

            if st.last_errors == 0 {
                continue;
            }
            causes.clear();
            let base_err = (st.own_err - st.bad_err - st.gc_err).max(0.0);
            causes.push((Cause::Generic, None, base_err));
            causes.push((Cause::BadDeploy, None, st.bad_err));
            causes.push((Cause::GcPressure, None, st.gc_err));
            causes.push((Cause::Overloaded, None, st.shed * 3.0));
            for &e in &self.out_edges[s] {
                let et = &self.edge_ticks[e];
                let k = self.edges[e].server;
                let a = self.edges[e].alpha;
                let server_cause = if self.svc[k].disk_err > 0.0 {
                    Cause::PeerDiskFull
                } else {
                    Cause::Upstream
                };
                for (ci, cause) in [
                    (C_DNS, Cause::Dns),
                    (C_TLS, Cause::Tls),
                    (C_REFUSED, Cause::Refused),
                    (C_RESET, Cause::Reset),
                    (C_IO_TIMEOUT, Cause::IoTimeout),
                    (C_TOO_MANY, Cause::TooManyClients),
                    (C_TIMEOUT, Cause::Timeout),
                    (C_SERVER, server_cause),
                ] {
                    if et.causes[ci] > 0.0 {
                        causes.push((
                            cause,
                            Some(k),
                            a * et.causes[ci] * self.edges[e].per_request.min(1.0),
                        ));
                    }
                }
            }
            let total: f64 = causes.iter().map(|c| c.2).sum();
            if total <= 0.0 {
                continue;
            }
            let n_lines = poisson(rng, (st.last_errors as f64 * 0.05).min(30.0 * scale));
            for _ in 0..n_lines {
                let mut pick = rng.random::<f64>() * total;
                let mut chosen = causes[0];
                for c in &causes {
                    if pick < c.2 {
                        chosen = *c;
                        break;
                    }
                    pick -= c.2;
                }
                let (cause, peer, _) = chosen;
                let peer_svc = peer.map(|k| &self.cluster.services[k]);
                let expiry_for = peer
                    .and_then(|k| {
                        self.cluster
                            .faults
                            .iter()
                            .position(|f| f.kind == FaultKind::CertExpiry && f.target == k)
                    })
                    .map_or("", |fi| expiry[fi].as_str());
                let t = at(rng);
                let now = if cause == Cause::Tls {
                    rfc3339(t / 1000)
                } else {
                    String::new()
                };
                let (sev, body) = logs::error_line(
                    rng,
                    svc,
                    peer_svc,
                    cause,
                    &self.cluster.namespace,
                    &now,
                    expiry_for,
                );
                self.logs.push(log(t, pod, sev, body));
            }
        }
    }

    pub(super) fn emit_probe_events(&mut self, ts: i64) {
        for p in 0..self.pods.len() {
            let st = &self.pods[p];
            if !st.ready || ts - st.last_unhealthy < 60_000 {
                continue;
            }
            let pod = &self.cluster.pods[p];
            // The probe has a 1 s timeout; a pod this slow or this close to OOM misses it.
            if st.own_mean > 0.5 || st.mem_frac > 0.97 {
                let msg = format!(
                    "Readiness probe failed: Get \"http://{}:8080/healthz\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                    pod.ip
                );
                self.events.push(pod_event(
                    ts - self.step_ms / 3,
                    EventType::Warning,
                    "Unhealthy",
                    pod,
                    msg,
                ));
                self.pods[p].last_unhealthy = ts;
            }
        }
    }
}

fn rfc3339(epoch_s: i64) -> String {
    match jiff::Timestamp::from_second(epoch_s) {
        Ok(t) => t.to_string(),
        Err(_) => epoch_s.to_string(),
    }
}

pub(super) fn log(ts: i64, pod: &Pod, severity: Severity, body: String) -> LogRecord {
    LogRecord {
        ts,
        resource: pod.resource.clone(),
        severity,
        body,
        attributes: Default::default(),
    }
}
