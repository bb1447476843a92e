//! Log lines as the simulated workloads would write them: routine noise, warnings, and error
//! wording that depends on what is actually wrong and on the runtime the service is written in.

use crate::cluster::{ClusterService, Lang, Pod};
use crate::scenario::ServiceKind;
use nightshift_core::Severity;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::fmt::Write;

/// Why a request failed, as the pod that logs it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The baseline trickle of unexplained failures.
    Generic,
    /// An exception in new code.
    BadDeploy,
    /// Load shedding when the pod is over capacity.
    Overloaded,
    /// Memory pressure close to the container limit.
    GcPressure,
    /// Calls the pod could not resolve.
    Dns,
    /// TLS handshakes that failed because the peer's certificate expired.
    Tls,
    /// The peer had no ready endpoints.
    Refused,
    /// The peer pod died while the call was in flight.
    Reset,
    /// The peer pod is on a dead node but still listed as an endpoint.
    IoTimeout,
    /// The call took longer than the client timeout.
    Timeout,
    /// The peer answered with an error.
    Upstream,
    /// The database refused the connection (max_connections reached).
    TooManyClients,
    /// The peer's volume is full.
    PeerDiskFull,
}

/// The client timeout every simulated caller uses, in the wording of its logs.
pub const CLIENT_TIMEOUT_MS: u64 = 2000;

fn hex(rng: &mut ChaCha8Rng, n: usize) -> String {
    const H: &[u8] = b"0123456789abcdef";
    (0..n).map(|_| H[rng.random_range(0..16)] as char).collect()
}

fn resource_noun(svc: &str) -> &str {
    svc.strip_suffix("-service")
        .or_else(|| svc.strip_suffix("-api"))
        .or_else(|| svc.strip_suffix("-svc"))
        .unwrap_or(svc)
}

fn route(rng: &mut ChaCha8Rng, svc: &ClusterService) -> (String, &'static str) {
    // Entry points serve the public API, named after what they front; the rest serve their own resource.
    let noun = if svc.callers.is_empty() && !svc.call_names.is_empty() {
        resource_noun(&svc.call_names[rng.random_range(0..svc.call_names.len())])
    } else {
        resource_noun(&svc.name)
    };
    match rng.random_range(0..4) {
        0 => (
            format!("/api/v1/{noun}/{}", rng.random_range(1000..99999)),
            "GET",
        ),
        1 => (format!("/api/v1/{noun}"), "POST"),
        2 => (
            format!("/api/v1/{noun}?page={}", rng.random_range(1..20)),
            "GET",
        ),
        _ => (
            format!("/api/v1/{noun}/{}/status", rng.random_range(1000..99999)),
            "GET",
        ),
    }
}

/// A stable source line for a service's code, so one bug always points at the same place.
fn code_line(svc: &ClusterService, salt: &str) -> u64 {
    20 + nightshift_core::fnv1a(format!("{}/{salt}", svc.name).as_bytes()) % 380
}

fn table(svc: &ClusterService) -> &'static str {
    const T: [&str; 6] = [
        "orders",
        "line_items",
        "customers",
        "products",
        "inventory",
        "sessions",
    ];
    T[(nightshift_core::fnv1a(svc.name.as_bytes()) % T.len() as u64) as usize]
}

/// Routine lines a healthy pod writes.
pub fn info_line(rng: &mut ChaCha8Rng, svc: &ClusterService, latency_s: f64) -> String {
    let ms = (latency_s * 1000.0 * (0.6 + rng.random::<f64>() * 0.8)).max(0.1);
    match svc.lang {
        Lang::Postgres => match rng.random_range(0..4) {
            0 => "LOG:  checkpoint starting: time".to_string(),
            1 => format!(
                "LOG:  checkpoint complete: wrote {} buffers ({:.1}%); 0 WAL file(s) added, 0 removed, {} recycled; write={:.3} s, sync={:.3} s, total={:.3} s",
                rng.random_range(200..4000),
                rng.random::<f64>() * 3.0,
                rng.random_range(0..3),
                rng.random::<f64>() * 30.0,
                rng.random::<f64>() * 0.05,
                rng.random::<f64>() * 30.0 + 0.1
            ),
            2 => format!(
                "LOG:  automatic vacuum of table \"app.public.{}\": index scans: 1, pages: 0 removed, {} remain, tuples: {} removed, {} remain",
                ["orders", "customers", "line_items", "sessions"][rng.random_range(0..4)],
                rng.random_range(1000..90000),
                rng.random_range(10..5000),
                rng.random_range(10000..900000)
            ),
            _ => format!(
                "LOG:  connection authorized: user=app database=app application_name={}",
                ["pgx", "psycopg", "PostgreSQL JDBC Driver", "node-postgres"]
                    [rng.random_range(0..4)]
            ),
        },
        Lang::Redis => match rng.random_range(0..3) {
            0 => format!(
                "1:M {} changes in 60 seconds. Saving...",
                rng.random_range(1000..20000)
            ),
            1 => format!(
                "1:M Background saving started by pid {}",
                rng.random_range(100..9000)
            ),
            _ => "1:M Background saving terminated with success".to_string(),
        },
        Lang::Kafka => match rng.random_range(0..3) {
            0 => format!(
                "[LocalLog partition={}-{}, dir=/bitnami/kafka/data] Rolled new log segment at offset {} in {} ms. (kafka.log.LocalLog)",
                ["orders", "events", "notifications"][rng.random_range(0..3)],
                rng.random_range(0..12),
                rng.random_range(100_000..90_000_000u64),
                rng.random_range(1..9)
            ),
            1 => format!(
                "[GroupCoordinator 0]: Stabilized group {}-consumers generation {} (__consumer_offsets-{}) with 3 members (kafka.coordinator.group.GroupCoordinator)",
                ["orders", "notify"][rng.random_range(0..2)],
                rng.random_range(10..400),
                rng.random_range(0..50)
            ),
            _ => format!(
                "[ProducerStateManager partition=orders-{}] Wrote producer snapshot at offset {} with 0 producer ids in 1 ms. (kafka.log.ProducerStateManager)",
                rng.random_range(0..12),
                rng.random_range(100_000..90_000_000u64)
            ),
        },
        _ => {
            let (path, method) = route(rng, svc);
            let trace = hex(rng, 32);
            match (svc.lang, rng.random_range(0..5)) {
                (_, 0) => format!(
                    "cache hit key={}:{}",
                    resource_noun(&svc.name),
                    rng.random_range(1000..99999)
                ),
                (_, 1) => format!(
                    "job done: refreshed {} {} entries in {:.0}ms",
                    rng.random_range(20..500),
                    resource_noun(&svc.name),
                    ms * 10.0
                ),
                (Lang::Java, _) => format!(
                    "INFO  [http-nio-8080-exec-{}] c.e.{}.Api : {method} {path} completed 200 in {ms:.0}ms traceId={trace}",
                    rng.random_range(1..200),
                    resource_noun(&svc.name)
                ),
                (Lang::Go, _) => format!(
                    "level=info msg=\"request served\" method={method} path={path} status=200 duration={ms:.1}ms trace_id={trace}"
                ),
                (Lang::Node, _) => format!(
                    "{{\"level\":30,\"msg\":\"request completed\",\"req\":{{\"method\":\"{method}\",\"url\":\"{path}\"}},\"res\":{{\"statusCode\":200}},\"responseTime\":{ms:.0},\"traceId\":\"{trace}\"}}"
                ),
                _ => format!(
                    "INFO:     10.244.{}.{}:{} - \"{method} {path} HTTP/1.1\" 200 OK ({ms:.0}ms)",
                    rng.random_range(1..5),
                    rng.random_range(2..250),
                    rng.random_range(30000..60000)
                ),
            }
        }
    }
}

/// An occasional harmless warning.
pub fn routine_warning(rng: &mut ChaCha8Rng, svc: &ClusterService) -> String {
    match svc.lang {
        Lang::Postgres => {
            "LOG:  checkpoints are occurring too frequently (24 seconds apart)".to_string()
        }
        Lang::Redis => "1:M WARNING: 32 bit instance detected but no memory limit set".to_string(),
        Lang::Kafka => format!(
            "[ReplicaFetcher replicaId=0, leaderId={}, fetcherId=0] Error sending fetch request (sessionId={}, epoch={}) to node {}: java.io.IOException: Connection to {} was disconnected before the response was read",
            rng.random_range(1..3),
            rng.random_range(1000000..9999999),
            rng.random_range(100..900),
            rng.random_range(1..3),
            rng.random_range(1..3)
        ),
        _ => match rng.random_range(0..3) {
            0 => match svc.call_names.first() {
                Some(peer) => {
                    format!("retrying request to {peer} after transient error (attempt 2/3)")
                }
                None => "retrying request after transient error (attempt 2/3)".to_string(),
            },
            1 => format!(
                "deprecated API version used by client user-agent=okhttp/4.{}.0",
                rng.random_range(1..12)
            ),
            _ => format!("slow cache refresh took {}ms", rng.random_range(300..900)),
        },
    }
}

/// A warning about slowness the pod notices itself.
pub fn slow_warning(
    rng: &mut ChaCha8Rng,
    svc: &ClusterService,
    latency_s: f64,
    peer: Option<&ClusterService>,
) -> String {
    let ms = (latency_s * 1000.0 * (0.8 + rng.random::<f64>() * 0.8)) as u64;
    match (svc.lang, peer) {
        (Lang::Postgres, _) => format!(
            "LOG:  duration: {}.{:03} ms  statement: SELECT * FROM {} WHERE id = ${} FOR UPDATE",
            ms,
            rng.random_range(0..1000),
            table(svc),
            rng.random_range(1..4)
        ),
        (_, Some(p)) => format!(
            "slow upstream response from {}: {ms}ms (threshold 250ms)",
            p.name
        ),
        (Lang::Java, None) => format!(
            "WARN  [http-nio-8080-exec-{}] c.e.RequestTimer : slow request took {ms}ms",
            rng.random_range(1..200)
        ),
        (_, None) => {
            let (path, method) = route(rng, svc);
            format!("slow request: {method} {path} took {ms}ms")
        }
    }
}

/// GC-pressure warning near the memory limit.
pub fn memory_warning(rng: &mut ChaCha8Rng, svc: &ClusterService, used_frac: f64) -> String {
    let limit_mib = svc.mem_limit / (1024.0 * 1024.0);
    let used = (used_frac * limit_mib) as u64;
    match svc.lang {
        Lang::Java => format!(
            "[gc] GC(1{}) Pause Full (G1 Compaction Pause) {}M->{}M({}M) {}.{:03}ms",
            rng.random_range(100..999),
            used,
            used.saturating_sub(rng.random_range(2..12)),
            limit_mib as u64,
            rng.random_range(200..1400),
            rng.random_range(0..1000)
        ),
        Lang::Node => format!(
            "<--- Last few GCs ---> [1:0x{}] Mark-Compact {used}.4 ({}.1) -> {}.9 MB, {} / 0.0 ms (average mu = 0.1{}) allocation failure",
            hex(rng, 8),
            limit_mib as u64,
            used.saturating_sub(3),
            rng.random_range(300..1500),
            rng.random_range(10..99)
        ),
        _ => format!(
            "high memory usage: heap {used}MiB of {}MiB limit, GC running every {}ms",
            limit_mib as u64,
            rng.random_range(50..400)
        ),
    }
}

/// The line a process writes when it runs out of memory, if its runtime writes one.
pub fn oom_line(svc: &ClusterService) -> Option<String> {
    match svc.lang {
        Lang::Java => Some("Exception in thread \"http-nio-8080-exec-17\" java.lang.OutOfMemoryError: Java heap space".to_string()),
        Lang::Node => Some("FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory".to_string()),
        Lang::Go => Some("fatal error: runtime: out of memory".to_string()),
        Lang::Python => Some("MemoryError".to_string()),
        Lang::Redis => Some("1:M Out Of Memory allocating 1048576 bytes!".to_string()),
        _ => None,
    }
}

/// What a container prints as it starts.
pub fn startup_lines(svc: &ClusterService, pod: &Pod) -> Vec<(Severity, String)> {
    let v = &pod.version;
    match svc.lang {
        Lang::Postgres => vec![
            (
                Severity::Info,
                "LOG:  database system was interrupted; last known up at 2026-03-01 23:14:02 UTC"
                    .to_string(),
            ),
            (
                Severity::Info,
                "LOG:  database system was not properly shut down; automatic recovery in progress"
                    .to_string(),
            ),
            (
                Severity::Info,
                "LOG:  database system is ready to accept connections".to_string(),
            ),
        ],
        Lang::Redis => vec![
            (
                Severity::Info,
                format!(
                    "1:C Redis version={v}, bits=64, commit=00000000, modified=0, pid=1, just started"
                ),
            ),
            (
                Severity::Info,
                "1:M Ready to accept connections tcp".to_string(),
            ),
        ],
        Lang::Kafka => vec![(
            Severity::Info,
            "[KafkaServer id=0] started (kafka.server.KafkaServer)".to_string(),
        )],
        Lang::Java => vec![
            (
                Severity::Info,
                format!(
                    "Starting {}Application {v} using Java 21.0.3 with PID 1",
                    svc.name
                ),
            ),
            (
                Severity::Info,
                "Tomcat started on port 8080 (http) with context path '/'".to_string(),
            ),
        ],
        Lang::Go => vec![
            (
                Severity::Info,
                format!("level=info msg=\"starting {}\" version={v}", svc.name),
            ),
            (
                Severity::Info,
                "level=info msg=\"listening\" addr=:8080".to_string(),
            ),
        ],
        Lang::Node => vec![(
            Severity::Info,
            format!(
                "{{\"level\":30,\"msg\":\"{} {v} listening on port 8080\"}}",
                svc.name
            ),
        )],
        Lang::Python => vec![
            (
                Severity::Info,
                "INFO:     Started server process [1]".to_string(),
            ),
            (
                Severity::Info,
                "INFO:     Uvicorn running on http://0.0.0.0:8080 (Press CTRL+C to quit)"
                    .to_string(),
            ),
        ],
    }
}

/// The fatal line of a container that crashes during start-up.
pub fn crash_line(svc: &ClusterService, ns: &str) -> String {
    let upper = svc.name.to_uppercase().replace('-', "_");
    match svc.lang {
        Lang::Java => format!(
            "Application run failed: org.springframework.beans.factory.BeanCreationException: Error creating bean with name 'dataSource': Failed to bind properties under 'spring.datasource.password' (env {upper}_DB_PASSWORD not set)"
        ),
        Lang::Go => format!("panic: failed to load config: open /etc/{}/config.yaml: no such file or directory", svc.name),
        Lang::Node => format!("Error: Cannot find module '/app/dist/config/{}.js' imported from /app/dist/server.js", ns),
        Lang::Python => format!("KeyError: '{upper}_API_KEY' (raised while importing app.settings)"),
        Lang::Postgres => "FATAL:  could not load private key file \"/etc/postgres/tls/tls.key\": Permission denied".to_string(),
        Lang::Redis => "1:M Fatal error loading the DB, check server logs. Exiting.".to_string(),
        Lang::Kafka => "[KafkaServer id=0] Fatal error during KafkaServer startup. Prepare to shutdown (kafka.server.KafkaServer) java.lang.IllegalArgumentException: requirement failed: advertised.listeners cannot use the nonroutable meta-address 0.0.0.0".to_string(),
    }
}

/// The stateful service's own complaint when its volume is full.
pub fn disk_full_line(rng: &mut ChaCha8Rng, svc: &ClusterService) -> String {
    match svc.lang {
        Lang::Postgres => match rng.random_range(0..3) {
            0 => format!(
                "ERROR:  could not extend file \"base/16384/{}\": No space left on device",
                rng.random_range(16000..40000)
            ),
            1 => format!(
                "PANIC:  could not write to file \"pg_wal/xlogtemp.{}\": No space left on device",
                rng.random_range(100..9999)
            ),
            _ => format!(
                "write /var/lib/postgresql/data/base/16384/{}.{}: no space left on device",
                rng.random_range(16000..40000),
                rng.random_range(1..9)
            ),
        },
        Lang::Kafka => format!(
            "Error while appending records to {}-{} in dir /bitnami/kafka/data (kafka.server.LogDirFailureChannel) java.io.IOException: No space left on device",
            ["orders", "events", "notifications"][rng.random_range(0..3)],
            rng.random_range(0..12)
        ),
        Lang::Redis => "1:M Write error saving DB on disk: No space left on device".to_string(),
        _ => format!(
            "write /var/lib/{}/data/{}.tmp: no space left on device",
            svc.name,
            hex(rng, 8)
        ),
    }
}

/// The database's own line when it turns a connection away.
pub fn too_many_clients_server_line() -> String {
    "FATAL:  sorry, too many clients already".to_string()
}

/// An error line for a request that failed for `cause`; `peer` is the callee for call failures.
pub fn error_line(
    rng: &mut ChaCha8Rng,
    svc: &ClusterService,
    peer: Option<&ClusterService>,
    cause: Cause,
    ns: &str,
    now_rfc3339: &str,
    expiry_rfc3339: &str,
) -> (Severity, String) {
    let peer_name = peer.map_or("upstream", |p| p.name.as_str());
    let peer_host = peer.map_or_else(|| "upstream".to_string(), |p| p.dns_name(ns));
    let peer_port = peer.map_or(8080, |p| match p.kind {
        ServiceKind::Database => 5432,
        ServiceKind::Cache => 6379,
        ServiceKind::Queue => 9092,
        ServiceKind::Service => 8080,
    });
    let (path, method) = route(rng, svc);
    let trace = hex(rng, 32);
    let body = match cause {
        Cause::Generic => match svc.lang {
            Lang::Java => format!(
                "ERROR [http-nio-8080-exec-{}] o.a.c.c.C.[dispatcherServlet] : Servlet.service() for {method} {path} threw exception: org.apache.catalina.connector.ClientAbortException: java.io.IOException: Broken pipe traceId={trace}",
                rng.random_range(1..200)
            ),
            Lang::Go => format!("level=error msg=\"request failed\" method={method} path={path} status=500 err=\"context canceled\" trace_id={trace}"),
            _ => format!("unhandled error while handling {method} {path}: internal error (trace_id={trace})"),
        },
        Cause::BadDeploy => return (Severity::Error, bad_deploy_line(rng, svc, &path, method)),
        Cause::Overloaded => format!("rejecting request {method} {path}: too many in-flight requests ({}/{})", rng.random_range(256..300), 256),
        Cause::GcPressure => format!("request {method} {path} aborted after GC pause of {}ms", rng.random_range(800..3000)),
        Cause::Dns => format!("dial tcp: lookup {peer_host} on 10.96.0.10:53: no such host"),
        Cause::Tls => match peer.map(|p| p.kind) {
            Some(ServiceKind::Service) | None => format!(
                "Post \"https://{peer_host}:8443/api/v1/{}\": tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time {now_rfc3339} is after {expiry_rfc3339}",
                resource_noun(peer_name)
            ),
            Some(_) => format!(
                "failed to connect to `host={peer_host} port={peer_port}`: tls error (tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time {now_rfc3339} is after {expiry_rfc3339})"
            ),
        },
        Cause::Refused => match rng.random_range(0..2) {
            0 => format!("dial tcp {}:{peer_port}: connect: connection refused", peer.map_or("10.96.0.1", |p| p.cluster_ip.as_str())),
            _ => format!("upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: delayed connect error: 111 (calling {peer_name})"),
        },
        Cause::Reset => format!("read tcp 10.244.{}.{}:{}->{}:{peer_port}: read: connection reset by peer", rng.random_range(1..5), rng.random_range(2..250), rng.random_range(30000..60000), peer.map_or("10.96.0.1", |p| p.cluster_ip.as_str())),
        Cause::IoTimeout => format!("dial tcp 10.244.{}.{}:{peer_port}: i/o timeout (calling {peer_name})", rng.random_range(1..5), rng.random_range(2..250)),
        Cause::Timeout => match (svc.lang, peer.map(|p| p.kind)) {
            (_, Some(ServiceKind::Database)) => "pq: canceling statement due to statement timeout".to_string(),
            (Lang::Go, _) => format!("Post \"http://{peer_host}:{peer_port}/api/v1/{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)", resource_noun(peer_name)),
            _ => format!("upstream request to {peer_name} timed out after {CLIENT_TIMEOUT_MS}ms"),
        },
        Cause::Upstream => match peer.map(|p| p.kind) {
            Some(ServiceKind::Database) => "pq: could not serialize access due to concurrent update".to_string(),
            Some(ServiceKind::Cache) => format!("redis: connection pool timeout (calling {peer_name})"),
            Some(ServiceKind::Queue) => format!("kafka: failed to produce message to topic {}: Broker: Request timed out", resource_noun(&svc.name)),
            _ => {
                if rng.random_bool(0.6) {
                    format!("call to {peer_name} failed: 503 Service Unavailable ({method} {path})")
                } else {
                    format!("{peer_name} returned 500 Internal Server Error for POST http://{peer_host}:{peer_port}/api/v1/{}", resource_noun(peer_name))
                }
            }
        },
        Cause::TooManyClients => match svc.lang {
            Lang::Java => "org.postgresql.util.PSQLException: FATAL: sorry, too many clients already".to_string(),
            Lang::Python => "psycopg2.OperationalError: connection to server at \"".to_string() + &peer_host + "\" (10.96.0.20), port 5432 failed: FATAL:  sorry, too many clients already",
            _ => "pq: sorry, too many clients already".to_string(),
        },
        Cause::PeerDiskFull => match peer.map(|p| p.lang) {
            Some(Lang::Kafka) => format!("kafka: error while producing to topic {}: KAFKA_STORAGE_ERROR: Disk error when trying to access log file on the disk", resource_noun(&svc.name)),
            Some(Lang::Redis) => "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled".to_string(),
            _ => format!("pq: could not extend file \"base/16384/{}\": No space left on device", rng.random_range(16000..40000)),
        },
    };
    (Severity::Error, body)
}

fn bad_deploy_line(rng: &mut ChaCha8Rng, svc: &ClusterService, path: &str, method: &str) -> String {
    let noun = resource_noun(&svc.name);
    let class: String = {
        let mut c = String::new();
        for part in noun.split('-') {
            let mut ch = part.chars();
            if let Some(f) = ch.next() {
                c.extend(f.to_uppercase());
                c.push_str(ch.as_str());
            }
        }
        c
    };
    let mut s = String::new();
    match svc.lang {
        Lang::Java => {
            let _ = write!(
                s,
                "ERROR [http-nio-8080-exec-{}] c.e.{noun}.{class}Controller : {method} {path} failed: java.lang.NullPointerException: Cannot invoke \"com.example.{noun}.model.{class}.getItems()\" because \"{}\" is null at com.example.{noun}.service.{class}Service.price({class}Service.java:{})",
                rng.random_range(1..200),
                noun.replace('-', ""),
                code_line(svc, "java")
            );
        }
        Lang::Go => {
            let _ = write!(
                s,
                "http: panic serving 10.244.{}.{}:{}: runtime error: invalid memory address or nil pointer dereference goroutine {} [running]: main.(*{class}Handler).ServeHTTP",
                rng.random_range(1..5),
                rng.random_range(2..250),
                rng.random_range(30000..60000),
                rng.random_range(100..9000)
            );
        }
        Lang::Node => {
            let _ = write!(
                s,
                "TypeError: Cannot read properties of undefined (reading 'items') at {class}Service.total (/app/dist/services/{noun}.js:{}:17) while handling {method} {path}",
                code_line(svc, "node")
            );
        }
        _ => {
            let _ = write!(
                s,
                "Exception on {path} [{method}]: AttributeError: 'NoneType' object has no attribute 'items' (app/{}/views.py, line {})",
                noun.replace('-', "_"),
                code_line(svc, "python")
            );
        }
    }
    s
}
