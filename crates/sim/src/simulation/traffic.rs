//! Traffic down the call graph and latency and errors back up: request rates per service and
//! edge, client timeouts, and each service's latency and error ratio from its callees'.

use super::{
    C_DNS, C_IO_TIMEOUT, C_REFUSED, C_RESET, C_SERVER, C_TIMEOUT, C_TLS, C_TOO_MANY,
    CLIENT_TIMEOUT_S, EdgeTick, Simulation,
};
use crate::scenario::ServiceKind;
use crate::stats::{Moments, jitter};
use rand::Rng;

impl Simulation {
    pub(super) fn traffic(&mut self, ts: i64) {
        let season = Self::season(ts);
        let step_s = self.step_s();
        for s in 0..self.svc.len() {
            self.svc[s].inbound = 0.0;
        }
        let topo = self.cluster.topo.clone();
        for &s in &topo {
            let svc = &self.cluster.services[s];
            let fx = self.fx[s];
            let mut attempted = self.svc[s].inbound;
            if svc.entry_rps > 0.0 {
                let t = &mut self.svc[s];
                if t.burst_left > 0 {
                    t.burst_left -= 1;
                } else if self.rng.random_bool((0.002 * step_s / 15.0).min(0.5)) {
                    // A short harmless burst (a marketing push, a retrying client) of at most ~30 s.
                    t.burst_left = if step_s <= 15.0 {
                        self.rng.random_range(0..2)
                    } else {
                        0
                    };
                    t.burst =
                        1.0 + (0.2 + 0.2 * self.rng.random::<f64>()) * (15.0 / step_s).min(1.0);
                } else {
                    t.burst = 1.0;
                }
                attempted += svc.entry_rps * season * jitter(&mut self.rng, 0.03) * t.burst;
            }
            let t = &mut self.svc[s];
            t.attempted = attempted;
            t.ready.clear();
            let mut blackholed = 0usize;
            let mut loss = 0.0;
            let mut crashed = 0usize;
            for &p in &self.cluster.pods_of[s] {
                let st = &self.pods[p];
                if st.ready {
                    t.ready.push(p);
                } else if st.blackhole {
                    blackholed += 1;
                }
                if st.crash_loss > 0.0 {
                    loss += st.crash_loss;
                    crashed += 1;
                }
            }
            let endpoints = t.ready.len() + blackholed + crashed;
            t.unavailable = if t.ready.is_empty() && blackholed == 0 {
                1.0
            } else {
                0.0
            };
            t.blackhole = if endpoints > 0 {
                blackholed as f64 / endpoints as f64
            } else {
                0.0
            };
            t.reset = if endpoints > 0 {
                loss / endpoints as f64
            } else {
                0.0
            };
            t.tls = fx.tls_fail;
            t.reject = if svc.kind == ServiceKind::Database {
                fx.db_reject * fx.db_sat
            } else {
                0.0
            };
            let served = attempted
                * (1.0 - t.tls)
                * (1.0 - t.unavailable)
                * (1.0 - t.blackhole)
                * (1.0 - t.reject)
                * (1.0 - t.reset);
            t.served = served;
            let n_ready = t.ready.len().max(1) as f64;
            let mut passed = 0.0;
            for &p in &t.ready {
                let st = &mut self.pods[p];
                st.rps = served / n_ready * jitter(&mut self.rng, 0.02);
                st.util = st.rps / svc.capacity_per_pod;
                st.shed = if st.util > 1.0 {
                    1.0 - 1.0 / st.util
                } else {
                    0.0
                };
                passed += st.rps * (1.0 - st.shed);
            }
            for &e in &self.out_edges[s] {
                let k = self.edges[e].server;
                let calls = passed * self.edges[e].per_request * jitter(&mut self.rng, 0.01);
                self.edge_ticks[e].calls = calls;
                self.svc[k].inbound += calls * (1.0 - fx.dns_fail);
            }
        }
        for p in 0..self.pods.len() {
            if !self.pods[p].ready {
                self.pods[p].rps = 0.0;
                self.pods[p].util = 0.0;
                self.pods[p].shed = 0.0;
            }
        }
    }

    fn edge(&self, e: usize) -> EdgeTick {
        let info = &self.edges[e];
        let client_fx = self.fx[info.client];
        let server_fx = self.fx[info.server];
        let server = &self.svc[info.server];
        let calls = self.edge_ticks[e].calls;
        let mut causes = [0.0; 8];
        let mut rest = 1.0;
        for (c, share) in [
            (C_DNS, client_fx.dns_fail),
            (C_TLS, server.tls),
            (C_REFUSED, server.unavailable),
            (C_IO_TIMEOUT, server.blackhole),
            (C_TOO_MANY, server.reject),
            (C_RESET, server.reset),
        ] {
            causes[c] = rest * share;
            rest -= causes[c];
        }
        let reach = rest.max(0.0);
        let mut seen = server
            .moments
            .unwrap_or(Moments::with_cv(0.001, 0.5))
            .shifted(0.0005);
        if server_fx.net_delay > 0.0 {
            // Jitter and retransmits make the added delay anything but constant.
            seen = seen.then(Moments::with_cv(server_fx.net_delay, 0.6));
        }
        if server_fx.db_sat > 0.0 {
            // Waiting for a pooled connection comes on top of the query itself.
            seen = seen.then(Moments::with_cv(seen.mean * 0.5 * server_fx.db_sat, 1.0));
        }
        let (p_to, truncated) = seen.truncated(CLIENT_TIMEOUT_S);
        causes[C_TIMEOUT] = reach * p_to;
        causes[C_SERVER] = reach * (1.0 - p_to) * server.err;
        let err: f64 = causes.iter().sum::<f64>().min(1.0);
        let fast = |mean: f64| Moments::with_cv(mean, 0.5);
        let parts = [
            (causes[C_DNS], fast(0.002)),
            (causes[C_TLS], fast(0.006)),
            (causes[C_REFUSED], fast(0.001)),
            (
                causes[C_IO_TIMEOUT],
                Moments {
                    mean: CLIENT_TIMEOUT_S,
                    m2: CLIENT_TIMEOUT_S * CLIENT_TIMEOUT_S,
                },
            ),
            (causes[C_TOO_MANY], fast(0.004)),
            (causes[C_RESET], fast(0.02)),
            (reach, truncated),
        ];
        let mut moments = Moments::ZERO;
        for (w, m) in parts {
            moments.mean += w * m.mean;
            moments.m2 += w * m.m2;
        }
        EdgeTick {
            calls,
            err,
            moments,
            causes,
        }
    }

    pub(super) fn latency(&mut self) {
        let topo = self.cluster.topo.clone();
        let blip_p = (0.0015 * self.step_s() / 15.0).min(0.2);
        for &s in topo.iter().rev() {
            let mut down = Moments::ZERO;
            let mut survive = 1.0;
            for i in 0..self.out_edges[s].len() {
                let e = self.out_edges[s][i];
                let et = self.edge(e);
                self.edge_ticks[e] = et;
                let r = self.edges[e].per_request;
                down = down.then(et.moments.repeated(r));
                // Whole calls fail independently; a fractional call only happens on that share of requests.
                let fail = self.edges[e].alpha * et.err;
                survive *= (1.0 - fail).powi(r.floor() as i32) * (1.0 - r.fract() * fail);
            }
            let down_err = 1.0 - survive;
            let svc = &self.cluster.services[s];
            let fx = self.fx[s];
            let is_db = svc.kind == ServiceKind::Database;
            let disk_err = if svc.statefulset {
                self.disk_error(s)
            } else {
                0.0
            };
            let (mut w_sum, mut mean_sum, mut m2_sum, mut err_sum) = (0.0, 0.0, 0.0, 0.0);
            for i in 0..self.svc[s].ready.len() {
                let p = self.svc[s].ready[i];
                let pod = &self.cluster.pods[p];
                let blip = if self.rng.random_bool(blip_p) {
                    2.5 + 2.0 * self.rng.random::<f64>()
                } else {
                    1.0
                };
                let st = &mut self.pods[p];
                let mem_frac = svc.mem_base_frac + st.leak_extra;
                let gc = 1.0 + 4.0 * ((mem_frac - 0.8) / 0.2).max(0.0).powi(2);
                // A throttled container gets less CPU per request, so it queues as if busier.
                let u = (st.util * if fx.throttle_mult > 1.0 { 1.5 } else { 1.0 }).min(0.95);
                let queueing = 1.0 + 0.5 * u * u / (1.0 - u);
                let bad = fx.bad.filter(|fi| {
                    self.cluster.faults[*fi].bad_version.as_deref() == Some(pod.version.as_str())
                });
                let (bad_err, bad_lat) = match bad {
                    Some(fi) => {
                        let sev = self.cluster.faults[fi].severity;
                        (0.10 + 0.30 * sev, 1.0 + 0.5 * sev)
                    }
                    None => (0.0, 1.0),
                };
                let db = if is_db {
                    1.0 + (fx.db_factor - 1.0) * fx.db_sat
                } else {
                    1.0
                };
                let own_mean =
                    svc.latency_s * queueing * fx.throttle_mult * gc * blip * bad_lat * db;
                // CFS throttling stalls requests for the rest of a 100 ms period: a long tail.
                let cv = if is_db {
                    0.8 + 0.7 * fx.db_sat
                } else if fx.throttle_mult > 1.0 {
                    1.2
                } else {
                    0.5
                };
                let own = Moments::with_cv(own_mean, cv);
                let mut total = own.then(down);
                st.gc_err = 0.02 * (gc - 1.0) / 4.0;
                st.bad_err = bad_err;
                st.own_err =
                    (svc.error_rate * jitter(&mut self.rng, 0.3) + bad_err + st.gc_err + disk_err)
                        .min(1.0);
                st.down_err = down_err;
                let mut err = 1.0 - (1.0 - st.own_err) * (1.0 - down_err);
                if st.shed > 0.0 {
                    total = total.mix(Moments::with_cv(0.003, 0.5), st.shed);
                    err = st.shed + (1.0 - st.shed) * err;
                }
                st.own_mean = own_mean;
                st.moments = total;
                st.err = err;
                w_sum += st.rps;
                mean_sum += st.rps * total.mean;
                m2_sum += st.rps * total.m2;
                err_sum += st.rps * err;
            }
            let t = &mut self.svc[s];
            t.disk_err = disk_err;
            if w_sum > 0.0 {
                t.moments = Some(Moments {
                    mean: mean_sum / w_sum,
                    m2: m2_sum / w_sum,
                });
                t.err = err_sum / w_sum;
            } else {
                t.moments = None;
                t.err = 0.0;
            }
        }
    }

    /// Share of a stateful service's requests that fail because its volume is full.
    fn disk_error(&self, s: usize) -> f64 {
        // After the fault the volume drains back over a minute; writes keep failing until it has.
        let Some(fi) = self.fx[s].disk.or_else(|| {
            self.cluster.pods_of[s]
                .iter()
                .any(|p| self.pods[*p].disk_extra > 0.0)
                .then_some(usize::MAX)
        }) else {
            return 0.0;
        };
        let write_share = self
            .cluster
            .faults
            .get(fi)
            .map_or(0.4, |f| 0.3 + 0.3 * f.severity);
        let mut worst: f64 = 0.0;
        let svc = &self.cluster.services[s];
        for &p in &self.cluster.pods_of[s] {
            let st = &self.pods[p];
            if !st.exists {
                continue;
            }
            let avail = 1.0 - svc.pvc_base_used - st.disk_extra;
            // Writes start failing in the last half percent, all of them once it is gone.
            let f = ((0.005 - avail) / 0.004).clamp(0.0, 1.0);
            worst = worst.max(f);
        }
        worst * write_share
    }
}
