//! Pods under the active faults: the effects each fault has this tick, node reboots, crash
//! loops, memory leaks to OOM and volumes filling, with the restarts, log lines and Kubernetes
//! events they cause. Rollouts and evictions are planned up front (`cluster.rs`).

use super::{CrashLoop, FaultEffects, READY_DELAY_MS, Simulation};
use crate::cluster::{ClusterService, NODE_GRACE_MS, Pod};
use crate::logs;
use crate::scenario::{FaultKind, ServiceKind};
use nightshift_core::{Event, EventType, Severity};

use super::records::log;

impl Simulation {
    pub(super) fn compute_effects(&mut self, ts: i64) {
        self.fx.fill(FaultEffects::NONE);
        for (fi, f) in self.cluster.faults.iter().enumerate() {
            if !f.active(ts) {
                continue;
            }
            let el = (ts - f.start_ms) as f64;
            let sev = f.severity;
            if f.kind == FaultKind::NodeDown {
                continue;
            }
            let fx = &mut self.fx[f.target];
            match f.kind {
                FaultKind::MemoryLeak => fx.leak = Some(fi),
                FaultKind::CpuThrottle => {
                    fx.throttle_mult = 3.0 + 3.0 * sev;
                    fx.throttle_ratio = 0.45 + 0.35 * sev;
                }
                FaultKind::DbSaturation => {
                    // Connections pile up over a minute or two rather than in one scrape.
                    fx.db_sat = (el / 90_000.0).min(1.0);
                    fx.db_factor = 10.0 + 20.0 * sev;
                    fx.db_reject = 0.04 + 0.08 * sev;
                    fx.db_rollback = 0.04 + 0.08 * sev;
                }
                FaultKind::BadDeploy => fx.bad = Some(fi),
                FaultKind::NetworkLatency => {
                    fx.net_delay = (0.2 + 0.6 * sev) * (el / 20_000.0).min(1.0)
                }
                FaultKind::PodCrashloop => fx.crashloop = Some(fi),
                FaultKind::DiskFull => fx.disk = Some(fi),
                // Cached resolutions expire within a TTL or so.
                FaultKind::DnsFailure => {
                    fx.dns_fail = (0.8 + 0.15 * sev) * (el / 30_000.0).min(1.0)
                }
                // Pooled connections made before expiry keep working until they are recycled.
                FaultKind::CertExpiry => fx.tls_fail = 0.6 + 0.37 * (el / 180_000.0).min(1.0),
                FaultKind::NodeDown => {}
            }
        }
    }

    pub(super) fn update_pods(&mut self, ts: i64) {
        let step = self.step_ms;
        for p in 0..self.pods.len() {
            let pod = &self.cluster.pods[p];
            let svc = &self.cluster.services[pod.service];
            let fx = self.fx[pod.service];
            let st = &mut self.pods[p];
            st.crash_loss = 0.0;
            st.blackhole = false;
            st.exists = pod.from_ms <= ts && ts < pod.to_ms;
            if !st.exists {
                st.running = false;
                st.ready = false;
                continue;
            }
            if !st.started {
                st.started = true;
                let initial = pod.from_ms <= self.first_ms;
                st.running_since = if initial {
                    pod.from_ms - 86_400_000
                } else {
                    pod.from_ms + 3_000
                };
                st.down_until = st.running_since;
                st.startup_log_pending = !initial;
            }
            if let Some(since) = self.cluster.node_down_since(pod.node, ts) {
                if !st.node_was_down {
                    st.node_was_down = true;
                    st.ready_when_node_died = st.ready;
                }
                st.running = false;
                st.ready = false;
                st.blackhole = st.ready_when_node_died && ts - since < NODE_GRACE_MS;
                continue;
            }
            if st.node_was_down {
                // The node rebooted; its containers start again.
                st.node_was_down = false;
                st.restart(ts - step / 2, 20_000);
                self.events.push(pod_event(
                    ts - step / 2 + 1_000,
                    EventType::Normal,
                    "SandboxChanged",
                    pod,
                    "Pod sandbox changed, it will be killed and re-created.".to_string(),
                ));
            }

            let crashing = fx
                .crashloop
                .filter(|_| pod.slot < crashing_replicas(svc.replicas));
            if let Some(fi) = crashing {
                let fault_start = self.cluster.faults[fi].start_ms;
                let offset = (nightshift_core::fnv1a(pod.name.as_bytes()) % 45_000) as i64;
                if st.crash.is_none() && ts >= fault_start + offset {
                    st.crash = Some(CrashLoop {
                        waiting: false,
                        next_ms: fault_start + offset,
                        crashes: 0,
                    });
                }
                if let Some(mut cr) = st.crash {
                    let was_ready = st.ready;
                    while cr.next_ms <= ts {
                        let t = cr.next_ms;
                        if cr.waiting {
                            cr.waiting = false;
                            let run_ms = 3_000
                                + ((nightshift_core::fnv1a(pod.name.as_bytes()) >> 8) % 5_000)
                                    as i64;
                            cr.next_ms = t + run_ms;
                            for (sev, body) in logs::startup_lines(svc, pod) {
                                self.logs.push(log(t, pod, sev, body));
                            }
                            container_start_events(&mut self.events, t, pod, svc);
                        } else {
                            if cr.crashes == 0 && was_ready {
                                st.crash_loss = (3_000.0 / step as f64).min(1.0);
                            }
                            st.restart(t, 0);
                            st.startup_log_pending = false;
                            self.logs.push(log(
                                t,
                                pod,
                                Severity::Fatal,
                                logs::crash_line(svc, &self.cluster.namespace),
                            ));
                            let backoff = (10_000i64 << cr.crashes.min(5)).min(300_000);
                            cr.crashes += 1;
                            cr.waiting = true;
                            cr.next_ms = t + backoff;
                            if cr.crashes >= 2 {
                                let msg = format!(
                                    "Back-off restarting failed container {} in pod {}_{}",
                                    svc.name, pod.name, self.cluster.namespace
                                );
                                self.events.push(pod_event(
                                    t + 1_000,
                                    EventType::Warning,
                                    "BackOff",
                                    pod,
                                    msg,
                                ));
                            }
                        }
                    }
                    st.crash = Some(cr);
                    st.running = false;
                    st.ready = false;
                    continue;
                }
            } else if let Some(cr) = st.crash.take() {
                // The cause is gone: the next start succeeds.
                let start = if cr.waiting { cr.next_ms } else { ts };
                st.down_until = start;
                st.running_since = start;
                st.startup_log_pending = true;
            }

            let running = ts >= st.down_until;
            if running && st.startup_log_pending {
                st.startup_log_pending = false;
                let t = st.down_until.max(ts - step + 1);
                for (sev, body) in logs::startup_lines(svc, pod) {
                    self.logs.push(log(t, pod, sev, body));
                }
            }

            if let Some(fi) = fx.leak {
                if running {
                    if st.leak_ttl <= 0.0 {
                        let sev = self.cluster.faults[fi].severity;
                        let h = nightshift_core::fnv1a(
                            format!("{}/{}", pod.name, st.restarts).as_bytes(),
                        );
                        let u = (h % 1000) as f64 / 1000.0;
                        // 15-30 minutes from a fresh start to the limit.
                        st.leak_ttl = (15.0 + 15.0 * (0.6 * u + 0.4 * (1.0 - sev))) * 60_000.0;
                    }
                    st.leak_elapsed += step as f64;
                    let x = st.leak_elapsed / st.leak_ttl;
                    if x >= 1.0 {
                        let oom_at =
                            ts - ((st.leak_elapsed - st.leak_ttl) as i64).clamp(0, step - 1);
                        if let Some(line) = logs::oom_line(svc) {
                            self.logs
                                .push(log(oom_at - 200, pod, Severity::Fatal, line));
                        }
                        let limit_mib = (svc.mem_limit / 1_048_576.0) as u64;
                        self.events.push(pod_event(
                            oom_at,
                            EventType::Warning,
                            "OOMKilled",
                            pod,
                            format!("Container {} in pod {} was OOMKilled (exit code 137): memory limit {limit_mib}Mi exceeded", svc.name, pod.name),
                        ));
                        if st.ready {
                            st.crash_loss = (3_000.0 / step as f64).min(1.0);
                        }
                        let down = if svc.lang == crate::cluster::Lang::Java {
                            35_000
                        } else {
                            20_000
                        };
                        st.restart(oom_at, down);
                        container_start_events(&mut self.events, oom_at + 1_000, pod, svc);
                    } else {
                        st.leak_extra = leak_curve(x, svc.mem_base_frac) - svc.mem_base_frac;
                    }
                }
            } else if st.leak_extra > 0.0 {
                // The leaking code path is off again; the heap shrinks back over a couple of minutes.
                st.leak_extra *= (-(step as f64) / 60_000.0).exp();
                st.leak_elapsed = 0.0;
                st.leak_ttl = 0.0;
                if st.leak_extra < 0.002 {
                    st.leak_extra = 0.0;
                }
            }

            if svc.statefulset {
                match fx.disk {
                    Some(fi) => {
                        let f = &self.cluster.faults[fi];
                        let h =
                            (nightshift_core::fnv1a(pod.name.as_bytes()) % 1000) as f64 / 1000.0;
                        let fill_ms = (5.0 + 4.0 * f.severity) * 60_000.0 * (0.9 + 0.2 * h);
                        let prog = ((ts - f.start_ms) as f64 / fill_ms).clamp(0.0, 1.0);
                        let base = volume_base_used(svc, ts - self.first_ms);
                        st.disk_extra = (1.0 - base) * prog.powf(1.3);
                    }
                    None => {
                        st.disk_extra *= (-(step as f64) / 45_000.0).exp();
                    }
                }
            }

            st.running = ts >= st.down_until;
            st.ready = st.running && ts >= st.running_since + READY_DELAY_MS;
        }
    }
}

/// How many replicas of a crash-looping service crash: most of them, so capacity visibly drops.
fn crashing_replicas(replicas: usize) -> usize {
    (replicas * 2).div_ceil(3).max(1)
}

/// Working set (share of the limit) after `x` of the time from a fresh start to OOM: a steady
/// climb, then a slow crawl past 90 % while the garbage collector fights for every byte.
fn leak_curve(x: f64, base: f64) -> f64 {
    if x <= 0.65 {
        base + (0.92 - base) * x / 0.65
    } else {
        0.92 + 0.08 * ((x - 0.65) / 0.35).powf(1.5)
    }
}

/// Used share of a volume without faults: its base plus slow growth.
pub(super) fn volume_base_used(svc: &ClusterService, since_first_ms: i64) -> f64 {
    svc.pvc_base_used + 0.002 * since_first_ms as f64 / 3_600_000.0
}

pub(super) fn pod_event(
    ts: i64,
    event_type: EventType,
    reason: &str,
    pod: &Pod,
    message: String,
) -> Event {
    Event {
        ts,
        event_type,
        reason: reason.to_string(),
        object: format!("Pod/{}", pod.name),
        resource: pod.resource.clone(),
        message,
    }
}

fn container_start_events(out: &mut Vec<Event>, t: i64, pod: &Pod, svc: &ClusterService) {
    let image = match svc.kind {
        ServiceKind::Service => format!("{}:{}", svc.image, pod.version),
        _ => format!("{}:{}", svc.image, pod.version.trim_start_matches('v')),
    };
    out.push(pod_event(
        t,
        EventType::Normal,
        "Pulled",
        pod,
        format!("Container image \"{image}\" already present on machine"),
    ));
    out.push(pod_event(
        t + 100,
        EventType::Normal,
        "Created",
        pod,
        format!("Created container {}", svc.name),
    ));
    out.push(pod_event(
        t + 300,
        EventType::Normal,
        "Started",
        pod,
        format!("Started container {}", svc.name),
    ));
}
