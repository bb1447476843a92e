//! What the exporters would scrape this tick: pod, container and node metrics, and the call
//! graph's span edges.

use super::Simulation;
use crate::alerts::{NodeObservation, PodObservation};
use crate::cluster::NODE_GRACE_MS;
use crate::stats::{BUCKETS, Moments, binomial, count, gauss, jitter};
use nightshift_core::SpanEdge;
use rand::Rng;

use super::lifecycle::volume_base_used;

impl Simulation {
    pub(super) fn emit_pods(&mut self, ts: i64, samples: &mut Vec<(u32, f64)>) {
        let step_s = self.step_s();
        let since_first = ts - self.first_ms;
        for p in 0..self.pods.len() {
            let pod = &self.cluster.pods[p];
            let svc = &self.cluster.services[pod.service];
            let fx = self.fx[pod.service];
            let st = &mut self.pods[p];
            let obs = &mut self.pod_obs[p];
            *obs = PodObservation::ABSENT;
            st.last_requests = 0;
            st.last_errors = 0;
            if !st.exists {
                continue;
            }
            let node_up = !self.cluster.node_is_down(pod.node, ts);
            let se = &pod.series;
            samples.push((se.up, if st.running { 1.0 } else { 0.0 }));
            samples.push((se.info, 1.0));
            samples.push((se.restarts, st.restarts));
            samples.push((se.limit_cpu, svc.cpu_limit));
            samples.push((se.limit_mem, svc.mem_limit));
            obs.exists = true;
            obs.restarts = st.restarts;
            if node_up && let Some([avail, cap]) = se.pvc {
                let used = volume_base_used(svc, since_first) + st.disk_extra;
                let free = ((1.0 - used) * svc.pvc_capacity).max(0.0);
                let free = if free < 1.0 {
                    0.0
                } else {
                    (free / 4096.0).floor() * 4096.0
                };
                samples.push((avail, free));
                samples.push((cap, svc.pvc_capacity));
                obs.volume_available_ratio = Some(free / svc.pvc_capacity);
            }
            if !st.running {
                continue;
            }
            obs.scraped = true;
            let rng = &mut self.rng;

            // CPU: follows load loosely; pinned at the limit when throttled.
            let gc_excess = ((svc.mem_base_frac + st.leak_extra - 0.8) / 0.2)
                .max(0.0)
                .powi(2);
            let mut cpu = svc.cpu_limit * (0.04 + 0.7 * st.util.min(1.3)) * jitter(rng, 0.05)
                + svc.cpu_limit * 0.25 * gc_excess;
            if fx.db_sat > 0.0 {
                cpu += (svc.cpu_limit * 0.9 - cpu).max(0.0) * fx.db_sat;
            }
            let throttle_ratio = if fx.throttle_mult > 1.0 {
                cpu = svc.cpu_limit * (0.96 + 0.035 * rng.random::<f64>());
                (fx.throttle_ratio * jitter(rng, 0.08)).min(0.98)
            } else {
                (0.003 + 0.5 * (cpu / svc.cpu_limit - 0.6).max(0.0).powi(2)) * jitter(rng, 0.2)
            };
            cpu = cpu.min(svc.cpu_limit);
            st.cpu = cpu;
            st.cpu_total += cpu * step_s;
            let periods = (step_s * 10.0 * (0.6 + 0.4 * (cpu / svc.cpu_limit).min(1.0))).round();
            st.periods += periods;
            st.throttled += (periods * throttle_ratio).round();
            samples.push((se.cpu, st.cpu_total));
            samples.push((se.periods, st.periods));
            samples.push((se.throttled, st.throttled));
            obs.cfs_periods = st.periods;
            obs.cfs_throttled = st.throttled;

            // Memory: a baseline, a little load, a GC sawtooth, and whatever leaks.
            let period_ms = 90_000 + (nightshift_core::fnv1a(pod.name.as_bytes()) % 60_000) as i64;
            let saw = 0.03 * ((ts.rem_euclid(period_ms)) as f64 / period_ms as f64);
            let load = 0.04 * (st.util / 0.45 - 1.0).clamp(-1.0, 1.0);
            let mem_frac = (svc.mem_base_frac + load + saw + st.leak_extra + 0.004 * gauss(rng))
                .clamp(0.05, 0.998);
            st.mem_frac = mem_frac;
            samples.push((se.mem, (mem_frac * svc.mem_limit / 4096.0).round() * 4096.0));
            obs.memory_ratio = Some(mem_frac);

            if let Some(h) = &se.http {
                let n = count(rng, st.rps * step_s);
                let n5 = binomial(rng, n, st.err);
                let shed_part = st.shed;
                let own_part = (1.0 - st.shed) * st.own_err;
                let down_part = (1.0 - st.shed) * (1.0 - st.own_err) * st.down_err;
                let total = shed_part + own_part + down_part;
                let p503 = if total > 0.0 {
                    (shed_part + 0.7 * down_part + 0.1 * own_part) / total
                } else {
                    0.5
                };
                let n503 = binomial(rng, n5, p503);
                let n500 = n5 - n503;
                let n404 = binomial(rng, n - n5, 0.004);
                let n200 = n - n5 - n404;
                for (i, c) in [n200, n404, n500, n503].into_iter().enumerate() {
                    st.codes[i] += c as f64;
                    samples.push((h.codes[i], st.codes[i]));
                }
                let nf = n as f64;
                for (i, le) in BUCKETS.iter().enumerate() {
                    st.buckets[i] += (nf * st.moments.cdf(*le)).round();
                }
                st.buckets[11] += nf;
                for i in 0..12 {
                    samples.push((h.buckets[i], st.buckets[i]));
                }
                st.h_sum += nf * st.moments.mean * jitter(rng, 0.02);
                st.h_count += nf;
                samples.push((h.sum, st.h_sum));
                samples.push((h.count, st.h_count));
                st.last_requests = n;
                st.last_errors = n5;
                obs.requests = st.h_count;
                obs.errors = st.codes[2] + st.codes[3];
                obs.buckets = st.buckets;
            }

            if let Some(pg) = &se.pg {
                let queries = count(rng, st.rps * step_s);
                let disk = self.svc[pod.service].disk_err;
                let rollback_ratio = (0.003 + fx.db_rollback * fx.db_sat + 0.9 * disk).min(1.0);
                let rollbacks = binomial(rng, queries, rollback_ratio);
                st.pg_commit += (queries - rollbacks) as f64;
                st.pg_rollback += rollbacks as f64;
                let own = Moments::with_cv(st.own_mean.max(1e-5), 0.8 + 0.7 * fx.db_sat);
                let qf = queries as f64;
                for (i, le) in BUCKETS.iter().enumerate() {
                    st.pg_buckets[i] += (qf * own.cdf(*le)).round();
                }
                st.pg_buckets[11] += qf;
                st.pg_sum += qf * own.mean * jitter(rng, 0.02);
                st.pg_count += qf;
                let max = svc.max_connections;
                let busy = (st.rps * st.own_mean * 3.0 + 2.0 + gauss(rng)).clamp(1.0, max);
                let active = (busy
                    + (max * (0.95 + 0.03 * rng.random::<f64>()) - busy) * fx.db_sat)
                    .round()
                    .min(max);
                let idle_base = (max * 0.28 + 2.0 * gauss(rng)).round().max(0.0);
                let idle = (idle_base * (1.0 - fx.db_sat)
                    + (max - active - 1.0).max(0.0) * fx.db_sat)
                    .round()
                    .min(max - active)
                    .max(0.0);
                samples.push((pg.active, active));
                samples.push((pg.idle, idle));
                samples.push((pg.max, max));
                samples.push((pg.commit, st.pg_commit));
                samples.push((pg.rollback, st.pg_rollback));
                for i in 0..12 {
                    samples.push((pg.buckets[i], st.pg_buckets[i]));
                }
                samples.push((pg.sum, st.pg_sum));
                samples.push((pg.count, st.pg_count));
                obs.pg_sum = st.pg_sum;
                obs.pg_count = st.pg_count;
                obs.pg_connections_ratio = Some((active + idle) / max);
                st.last_requests = queries;
                st.last_errors = rollbacks;
            }
        }
    }

    pub(super) fn emit_nodes(
        &mut self,
        ts: i64,
        samples: &mut Vec<(u32, f64)>,
    ) -> Vec<NodeObservation> {
        let step_s = self.step_s();
        let since_first = (ts - self.first_ms) as f64;
        let mut out = Vec::with_capacity(self.nodes.len());
        for n in 0..self.nodes.len() {
            let info = &self.cluster.nodes[n];
            let se = &info.series;
            if let Some(since) = self.cluster.node_down_since(n, ts) {
                self.nodes[n].was_down = true;
                let ready = ts - since < NODE_GRACE_MS;
                samples.push((se.up, 0.0));
                samples.push((se.ready, if ready { 1.0 } else { 0.0 }));
                out.push(NodeObservation {
                    up: false,
                    ready,
                    filesystem_available_ratio: None,
                });
                continue;
            }
            if self.nodes[n].was_down {
                // Counters since boot start again after the reboot.
                self.nodes[n].was_down = false;
                self.nodes[n].cpu = [0.0; 4];
            }
            let (mut busy, mut ws, mut iowait) = (0.3, 0.0, info.cores * 0.01);
            for (p, pod) in self.cluster.pods.iter().enumerate() {
                let st = &self.pods[p];
                if pod.node != n || !st.running {
                    continue;
                }
                let svc = &self.cluster.services[pod.service];
                busy += st.cpu;
                ws += st.mem_frac * svc.mem_limit;
                if svc.statefulset {
                    iowait += 0.6 * self.fx[pod.service].db_sat
                        + if st.disk_extra > 0.0 { 0.8 } else { 0.0 };
                }
            }
            let busy = (busy * jitter(&mut self.rng, 0.03)).min(info.cores * 0.98);
            let iowait = (iowait * jitter(&mut self.rng, 0.1))
                .min(info.cores - busy)
                .max(0.0);
            let idle = (info.cores - busy - iowait).max(0.0);
            let shares = [idle, busy * 0.72, busy * 0.28, iowait];
            for ((total, share), series) in self.nodes[n].cpu.iter_mut().zip(shares).zip(se.cpu) {
                *total += share * step_s;
                samples.push((series, *total));
            }
            let page_cache = info.mem_total * (0.12 + 0.01 * gauss(&mut self.rng));
            let mem_avail = (info.mem_total - 2.5 * 1_073_741_824.0 - ws - page_cache * 0.3)
                .max(info.mem_total * 0.02);
            let fs_used = info.fs_used_frac + 0.004 * since_first / 3_600_000.0;
            let fs_avail = ((1.0 - fs_used) * info.fs_size / 4096.0).round() * 4096.0;
            samples.push((se.up, 1.0));
            samples.push((se.mem_available, mem_avail.round()));
            samples.push((se.mem_total, info.mem_total));
            samples.push((se.fs_avail, fs_avail));
            samples.push((se.fs_size, info.fs_size));
            samples.push((se.ready, 1.0));
            out.push(NodeObservation {
                up: true,
                ready: true,
                filesystem_available_ratio: Some(fs_avail / info.fs_size),
            });
        }
        out
    }

    pub(super) fn emit_spans(&mut self, ts: i64) -> Vec<SpanEdge> {
        let step_s = self.step_s();
        let mut spans = Vec::with_capacity(self.edges.len());
        for (e, info) in self.edges.iter().enumerate() {
            let et = &self.edge_ticks[e];
            let requests = count(&mut self.rng, et.calls * step_s);
            if requests == 0 {
                continue;
            }
            let errors = binomial(&mut self.rng, requests, et.err);
            spans.push(SpanEdge {
                ts,
                client: self.cluster.services[info.client].name.clone(),
                server: self.cluster.services[info.server].name.clone(),
                connection_type: info.connection_type.map(str::to_string),
                requests,
                errors,
                duration_seconds_sum: requests as f64
                    * et.moments.mean
                    * jitter(&mut self.rng, 0.02),
            });
        }
        spans
    }
}
