use super::*;
use nightshift_core::{
    AlertStatus, BlastRadius, ChangeKind, Direction, EvidenceKind, IncidentStatus, SeriesKey,
    SignalClass,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let unique = format!(
            "nightshift-store-{name}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn evidence(id: &str, kind: EvidenceKind, ts: Millis, entity: Entity) -> Evidence {
    Evidence {
        id: id.to_string(),
        kind,
        ts,
        entity,
        summary: format!("{id} summary"),
        series: Some(format!(r#"pg_stat_activity_count{{service="{id}"}}"#)),
        observed: Some(0.92),
        expected: Some(0.35),
        query: Some("rate(pg_stat_activity_count[5m])".to_string()),
        weight: 0.4,
    }
}

fn change(id: &str, ts: Millis) -> Change {
    Change {
        id: id.to_string(),
        ts,
        kind: ChangeKind::Deploy,
        target: "checkout".to_string(),
        version: Some("v2.4.1".to_string()),
        description: "deploy checkout v2.4.1".to_string(),
    }
}

fn incident(id: &str, opened_at: Millis) -> Incident {
    let db = Entity::service("postgres");
    let node = Entity::node("db-03");
    let hypotheses = vec![
        Hypothesis {
            rank: 1,
            entity: db.clone(),
            cause: "saturation".to_string(),
            score: 0.71,
            summary: "postgres connections saturated".to_string(),
            evidence: vec![
                evidence("ev-1", EvidenceKind::Anomaly, opened_at, db.clone()),
                Evidence {
                    series: None,
                    observed: None,
                    expected: None,
                    query: None,
                    ..evidence(
                        "ev-2",
                        EvidenceKind::LogPattern,
                        opened_at + 1_000,
                        db.clone(),
                    )
                },
                evidence(
                    "ev-3",
                    EvidenceKind::Change,
                    opened_at - 300_000,
                    Entity::service("checkout"),
                ),
            ],
        },
        Hypothesis {
            rank: 2,
            entity: node.clone(),
            cause: "disk full".to_string(),
            score: 0.29,
            summary: "db-03 disk nearly full".to_string(),
            evidence: vec![
                evidence(
                    "ev-4",
                    EvidenceKind::KubeEvent,
                    opened_at + 2_000,
                    node.clone(),
                ),
                evidence(
                    "ev-5",
                    EvidenceKind::Topology,
                    opened_at + 3_000,
                    node.clone(),
                ),
                // The same fact may support more than one hypothesis.
                evidence("ev-1", EvidenceKind::Anomaly, opened_at, db.clone()),
            ],
        },
    ];
    Incident {
        id: id.to_string(),
        title: "checkout latency: postgres saturation".to_string(),
        status: IncidentStatus::Open,
        opened_at,
        updated_at: opened_at + 60_000,
        resolved_at: None,
        acknowledged_at: None,
        acknowledged_by: None,
        reopened: 0,
        flapping: false,
        priority: nightshift_core::Priority::P2,
        slo: Vec::new(),
        inhibited: vec![nightshift_core::InhibitedAlert {
            alertname: "HighLatency".into(),
            entity: Entity::service("frontend"),
            cause: Entity::service("checkout"),
        }],
        similar: Vec::new(),
        resolution: Some("recovered on its own after 12m".into()),
        blast_radius: BlastRadius {
            entities: vec![Entity::service("checkout"), Entity::service("frontend")],
            entry_points: vec!["frontend".to_string()],
            endpoints: vec!["frontend → checkout".to_string()],
            at_risk: Vec::new(),
        },
        alerts: vec![
            "0123456789abcdef".to_string(),
            "fedcba9876543210".to_string(),
        ],
        anomaly_count: 17,
        changes: vec![change("chg-1", opened_at - 300_000)],
        hypotheses,
        timeline: vec![
            TimelineEntry {
                ts: opened_at - 300_000,
                kind: EvidenceKind::Change,
                entity: Entity::service("checkout"),
                text: "deploy v2.4.1".to_string(),
            },
            TimelineEntry {
                ts: opened_at,
                kind: EvidenceKind::Anomaly,
                entity: db.clone(),
                text: "connections up".to_string(),
            },
            TimelineEntry {
                ts: opened_at + 5_000,
                kind: EvidenceKind::Alert,
                entity: Entity::service("frontend"),
                text: "HighLatency firing".to_string(),
            },
        ],
    }
}

fn alert(name: &str, starts_at: Millis) -> Alert {
    let labels = BTreeMap::from([
        ("alertname".to_string(), name.to_string()),
        ("service".to_string(), "frontend".to_string()),
    ]);
    let annotations = BTreeMap::from([("summary".to_string(), "p99 above 2s".to_string())]);
    Alert::firing(labels, annotations, starts_at)
}

fn anomaly(service: &str, ts: Millis) -> Anomaly {
    let series = SeriesKey::new(
        "http_request_duration_seconds",
        &[("service", service), ("quantile", "0.99")],
    );
    Anomaly {
        promql: series.selector(),
        series,
        entity: Entity::service(service),
        class: SignalClass::Latency,
        ts,
        score: 0.97,
        value: 2.4,
        expected: 0.3,
        lower: 0.1,
        upper: 0.6,
        direction: Direction::Up,
        detector: "level_shift".to_string(),
    }
}

async fn count(store: &SqliteStore, sql: &'static str, id: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&store.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn incident_round_trips_and_upsert_replaces_children() {
    let store = SqliteStore::in_memory().await.unwrap();
    let original = incident("inc-1", 1_700_000_000_000);
    store.upsert_incident(&original).await.unwrap();

    assert_eq!(
        store.incident("inc-1").await.unwrap(),
        Some(original.clone())
    );
    assert_eq!(
        store
            .incidents(&IncidentFilter::default())
            .await
            .unwrap()
            .items,
        vec![original.clone()]
    );
    assert_eq!(store.incident("missing").await.unwrap(), None);

    let mut updated = original.clone();
    updated.status = IncidentStatus::Resolved;
    updated.resolved_at = Some(original.opened_at + 600_000);
    updated.hypotheses = vec![Hypothesis {
        rank: 1,
        entity: Entity::service("checkout"),
        cause: "bad deploy".to_string(),
        score: 1.0,
        summary: "checkout v2.4.1 regressed".to_string(),
        evidence: vec![evidence(
            "ev-9",
            EvidenceKind::Change,
            original.opened_at,
            Entity::service("checkout"),
        )],
    }];
    updated.timeline.truncate(1);
    store.upsert_incident(&updated).await.unwrap();

    assert_eq!(store.incident("inc-1").await.unwrap(), Some(updated));
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM hypotheses WHERE incident_id = ?",
            "inc-1"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM evidence WHERE incident_id = ?",
            "inc-1"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM timeline WHERE incident_id = ?",
            "inc-1"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM incidents WHERE id = ?",
            "inc-1"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn enums_are_stored_by_their_serde_names() {
    let store = SqliteStore::in_memory().await.unwrap();
    store
        .upsert_incident(&incident("inc-1", 1_000))
        .await
        .unwrap();
    let kind: String = sqlx::query_scalar("SELECT kind FROM evidence WHERE evidence_id = 'ev-2'")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(kind, "log_pattern");
    let status: String = sqlx::query_scalar("SELECT status FROM incidents")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(status, "open");
}

#[tokio::test]
async fn incidents_filter_by_status_since_and_limit_newest_first() {
    let store = SqliteStore::in_memory().await.unwrap();
    for (i, opened_at) in [1_000, 3_000, 2_000, 4_000].into_iter().enumerate() {
        let mut inc = incident(&format!("inc-{i}"), opened_at);
        if i == 3 {
            inc.status = IncidentStatus::Resolved;
            inc.resolved_at = Some(5_000);
        }
        store.upsert_incident(&inc).await.unwrap();
    }
    let ids = |incidents: Vec<Incident>| incidents.into_iter().map(|i| i.id).collect::<Vec<_>>();

    let all = store
        .incidents(&IncidentFilter::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        all.iter().map(|i| i.hypotheses.len()).collect::<Vec<_>>(),
        vec![2; 4]
    );
    assert_eq!(ids(all), ["inc-3", "inc-1", "inc-2", "inc-0"]);

    let open = IncidentFilter {
        status: Some(IncidentStatus::Open),
        ..Default::default()
    };
    assert_eq!(
        ids(store.incidents(&open).await.unwrap().items),
        ["inc-1", "inc-2", "inc-0"]
    );

    let recent = IncidentFilter {
        since: Some(2_000),
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(
        ids(store.incidents(&recent).await.unwrap().items),
        ["inc-3", "inc-1"]
    );

    let resolved = IncidentFilter {
        status: Some(IncidentStatus::Resolved),
        since: Some(4_000),
        limit: Some(10),
        after: None,
    };
    assert_eq!(
        ids(store.incidents(&resolved).await.unwrap().items),
        ["inc-3"]
    );
}

#[tokio::test]
async fn failed_upsert_leaves_previous_version_intact() {
    let store = SqliteStore::in_memory().await.unwrap();
    let good = incident("inc-1", 1_000);
    store.upsert_incident(&good).await.unwrap();

    let mut bad = good.clone();
    bad.hypotheses.clear();
    bad.anomaly_count = u64::MAX;
    let err = store.upsert_incident(&bad).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("anomaly count"), "{err}");

    assert_eq!(store.incident("inc-1").await.unwrap(), Some(good));
}

#[tokio::test]
async fn nan_is_stored_as_null_without_panicking() {
    let store = SqliteStore::in_memory().await.unwrap();
    let mut inc = incident("inc-1", 1_000);
    inc.hypotheses[0].score = f64::NAN;
    inc.hypotheses[0].evidence[0].observed = Some(f64::NAN);
    inc.hypotheses[0].evidence[0].weight = f64::INFINITY;
    store.upsert_incident(&inc).await.unwrap();

    let back = store.incident("inc-1").await.unwrap().unwrap();
    assert!(back.hypotheses[0].score.is_nan());
    assert_eq!(back.hypotheses[0].evidence[0].observed, None);
    assert_eq!(back.hypotheses[0].evidence[0].weight, f64::INFINITY);

    let mut a = anomaly("checkout", 1_000);
    a.score = f64::NAN;
    a.expected = f64::NEG_INFINITY;
    store.record_anomalies(&[a]).await.unwrap();
    let back = store
        .anomalies(&AnomalyFilter::default())
        .await
        .unwrap()
        .items;
    assert!(back[0].score.is_nan());
    assert_eq!(back[0].expected, f64::NEG_INFINITY);
}

#[tokio::test]
async fn corrupt_rows_are_reported_not_panicked_on() {
    let store = SqliteStore::in_memory().await.unwrap();
    store
        .upsert_incident(&incident("inc-1", 1_000))
        .await
        .unwrap();
    sqlx::query("UPDATE incidents SET status = 'on fire'")
        .execute(&store.pool)
        .await
        .unwrap();
    let err = store.incident("inc-1").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("inc-1"), "{err}");
}

#[tokio::test]
async fn alert_firings_are_kept_as_history() {
    let store = SqliteStore::in_memory().await.unwrap();
    let first = alert("HighLatency", 10_000);
    store.record_alert(&first).await.unwrap();
    // Alertmanager re-sends firing alerts; that must not add rows.
    store.record_alert(&first).await.unwrap();

    let mut resolved = first.clone();
    resolved.status = AlertStatus::Resolved;
    resolved.ends_at = Some(70_000);
    store.record_alert(&resolved).await.unwrap();
    // A late copy of the firing notification does not reopen it.
    store.record_alert(&first).await.unwrap();
    assert_eq!(
        store.alerts(&AlertFilter::default()).await.unwrap().items,
        vec![resolved.clone()]
    );

    let again = alert("HighLatency", 200_000);
    assert_eq!(again.fingerprint, first.fingerprint);
    store.record_alert(&again).await.unwrap();
    assert_eq!(
        store.alerts(&AlertFilter::default()).await.unwrap().items,
        vec![again.clone(), resolved.clone()]
    );

    let firing = AlertFilter {
        status: Some(AlertStatus::Firing),
        ..Default::default()
    };
    assert_eq!(
        store.alerts(&firing).await.unwrap().items,
        vec![again.clone()]
    );
    let recent = AlertFilter {
        since: Some(100_000),
        ..Default::default()
    };
    assert_eq!(
        store.alerts(&recent).await.unwrap().items,
        vec![again.clone()]
    );
    let one = AlertFilter {
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(store.alerts(&one).await.unwrap().items, vec![again]);
}

#[tokio::test]
async fn anomalies_filter_by_entity_and_since() {
    let store = SqliteStore::in_memory().await.unwrap();
    let batch = vec![
        anomaly("checkout", 1_000),
        anomaly("postgres", 2_000),
        anomaly("checkout", 3_000),
        anomaly("checkout", 5_000),
    ];
    store.record_anomalies(&batch).await.unwrap();
    store.record_anomalies(&[]).await.unwrap();

    let all = store
        .anomalies(&AnomalyFilter::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        all,
        vec![
            batch[3].clone(),
            batch[2].clone(),
            batch[1].clone(),
            batch[0].clone()
        ]
    );

    let checkout_recent = AnomalyFilter {
        entity: Some("checkout".to_string()),
        since: Some(2_000),
        limit: None,
        after: None,
    };
    assert_eq!(
        store.anomalies(&checkout_recent).await.unwrap().items,
        vec![batch[3].clone(), batch[2].clone()]
    );

    let newest = AnomalyFilter {
        entity: Some("checkout".to_string()),
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(
        store.anomalies(&newest).await.unwrap().items,
        vec![batch[3].clone()]
    );

    let nobody = AnomalyFilter {
        entity: Some("nobody".to_string()),
        ..Default::default()
    };
    assert!(store.anomalies(&nobody).await.unwrap().items.is_empty());

    let selector: String =
        sqlx::query_scalar("SELECT series FROM anomalies WHERE entity_name = 'postgres'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
    assert_eq!(
        selector,
        r#"http_request_duration_seconds{quantile="0.99",service="postgres"}"#
    );
}

#[tokio::test]
async fn changes_are_idempotent_by_id() {
    let store = SqliteStore::in_memory().await.unwrap();
    let first = change("chg-1", 1_000);
    store.record_change(&first).await.unwrap();
    store.record_change(&first).await.unwrap();
    let second = change("chg-2", 2_000);
    store.record_change(&second).await.unwrap();
    assert_eq!(
        store.changes(&ChangeFilter::default()).await.unwrap().items,
        vec![second.clone(), first.clone()]
    );

    let corrected = Change {
        description: "deploy checkout v2.4.1 (canary)".to_string(),
        ..first
    };
    store.record_change(&corrected).await.unwrap();
    assert_eq!(
        store.changes(&ChangeFilter::default()).await.unwrap().items,
        vec![second.clone(), corrected]
    );
    assert_eq!(
        store
            .changes(&ChangeFilter {
                since: Some(1_500),
                ..Default::default()
            })
            .await
            .unwrap()
            .items,
        vec![second.clone()]
    );
    assert_eq!(
        store
            .changes(&ChangeFilter {
                limit: Some(1),
                ..Default::default()
            })
            .await
            .unwrap()
            .items,
        vec![second]
    );
}

#[tokio::test]
async fn file_store_survives_reopen_and_migrates_once() {
    let dir = TempDir::new("reopen");
    let path = dir.path().join("nightshift.db");
    let path_str = path.to_str().unwrap();
    let inc = incident("inc-1", 1_000);
    {
        let store = SqliteStore::open(path_str).await.unwrap();
        store.upsert_incident(&inc).await.unwrap();
        store
            .record_alert(&alert("HighLatency", 10_000))
            .await
            .unwrap();
        store.close().await;
    }
    assert!(path.exists());

    let store = SqliteStore::open(path_str).await.unwrap();
    // A second handle on the same file at the same time, as a URL this time.
    let other = SqliteStore::open(&format!("sqlite://{path_str}"))
        .await
        .unwrap();
    assert_eq!(store.incident("inc-1").await.unwrap(), Some(inc.clone()));
    assert_eq!(other.incident("inc-1").await.unwrap(), Some(inc));
    assert_eq!(
        other
            .alerts(&AlertFilter::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(applied, MIGRATOR.iter().count() as i64);
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);

    store.close().await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_a_file_wait_instead_of_failing() {
    let dir = TempDir::new("concurrent");
    let path = dir.path().join("nightshift.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .upsert_incident(&incident(&format!("inc-{i}"), i))
                    .await?;
                store
                    .record_anomalies(&[anomaly("checkout", i), anomaly("postgres", i)])
                    .await?;
                store
                    .incidents(&IncidentFilter::default())
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        store
            .incidents(&IncidentFilter::default())
            .await
            .unwrap()
            .items
            .len(),
        16
    );
    assert_eq!(
        store
            .anomalies(&AnomalyFilter::default())
            .await
            .unwrap()
            .items
            .len(),
        32
    );
    store.close().await;
}

#[tokio::test]
async fn in_memory_stores_are_private_and_persist_across_calls() {
    let a = SqliteStore::in_memory().await.unwrap();
    let b = SqliteStore::open("sqlite::memory:").await.unwrap();
    a.record_change(&change("chg-1", 1_000)).await.unwrap();
    // Give an idle pool the chance to drop connections, which would lose an in-memory database.
    tokio::task::yield_now().await;
    assert_eq!(
        a.changes(&ChangeFilter::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(
        b.changes(&ChangeFilter::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn opening_an_impossible_path_is_an_error() {
    let dir = TempDir::new("missing");
    let path = dir.path().join("no-such-dir").join("nightshift.db");
    let err = SqliteStore::open(path.to_str().unwrap()).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(matches!(
        SqliteStore::open("  ").await,
        Err(StoreError::Invalid { .. })
    ));
}

#[tokio::test]
async fn store_is_usable_as_a_trait_object() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    store.record_change(&change("chg-1", 1_000)).await.unwrap();
    assert_eq!(
        store
            .changes(&ChangeFilter::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[test]
fn recognises_in_memory_locations() {
    for loc in [
        ":memory:",
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite://?mode=memory",
        "sqlite:x?mode=memory",
    ] {
        assert!(is_in_memory(loc), "{loc}");
    }
    for loc in [
        "nightshift.db",
        "/var/lib/nightshift/db.sqlite",
        "sqlite://data.db",
        "sqlite:data.db?mode=rwc",
    ] {
        assert!(!is_in_memory(loc), "{loc}");
    }
}

#[tokio::test]
async fn actions_are_kept_replaced_by_id_and_listed_in_id_order() {
    let store = SqliteStore::in_memory().await.unwrap();
    let action = |id: &str, incident: &str, state: &str| StoredAction {
        id: id.into(),
        incident: incident.into(),
        state: state.into(),
        updated_at: 1_000,
        document: serde_json::json!({"id": id, "state": state}),
    };
    for a in [
        action("act-10000", "inc-2", "pending"),
        action("act-9999", "inc-1", "pending"),
        action("act-0002", "inc-1", "approved"),
    ] {
        store.upsert_action(&a).await.unwrap();
    }
    store
        .upsert_action(&action("act-9999", "inc-1", "fixed"))
        .await
        .unwrap();
    let all = store.actions(None).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["act-0002", "act-9999", "act-10000"]);
    assert_eq!(all[1].state, "fixed");
    assert_eq!(all[1].document["state"], "fixed");
    let of_one = store.actions(Some("inc-2")).await.unwrap();
    assert_eq!(of_one, [action("act-10000", "inc-2", "pending")]);
}

#[tokio::test]
async fn llm_spend_is_kept_per_day_and_never_lowered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spend.db");
    {
        let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        assert_eq!(store.llm_tokens(20_000).await.unwrap(), 0);
        store.record_llm_tokens(20_000, 1_500).await.unwrap();
        // A write that arrived late does not lower the count.
        store.record_llm_tokens(20_000, 900).await.unwrap();
        store.record_llm_tokens(20_001, 10).await.unwrap();
    }
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.llm_tokens(20_000).await.unwrap(), 1_500);
    assert_eq!(store.llm_tokens(20_001).await.unwrap(), 10);
}

/// Pages every list in pages of 2 through items that share their times, recording a newer item
/// before each page: each item that was there at the start comes exactly once, in order.
#[tokio::test]
async fn every_list_pages_by_cursor_without_repeating_or_skipping_while_items_arrive() {
    let store = SqliteStore::in_memory().await.unwrap();
    // Five of each, two pairs sharing a time.
    let times = [1_000, 2_000, 2_000, 3_000, 3_000];
    for (i, ts) in times.iter().enumerate() {
        store
            .upsert_incident(&incident(&format!("inc-{i}"), *ts))
            .await
            .unwrap();
        store
            .record_alert(&alert(&format!("A{i}"), *ts))
            .await
            .unwrap();
        store
            .record_anomalies(&[anomaly("checkout", *ts)])
            .await
            .unwrap();
        store
            .record_change(&change(&format!("chg-{i}"), *ts))
            .await
            .unwrap();
    }
    async fn pages<T, F, Fut>(mut page: F, mut arrive: impl AsyncFnMut(usize)) -> Vec<T>
    where
        F: FnMut(Option<Cursor>) -> Fut,
        Fut: std::future::Future<Output = Page<T>>,
    {
        let (mut all, mut after, mut n) = (Vec::new(), None, 0);
        loop {
            let p = page(after.take()).await;
            assert!(p.items.len() <= 2);
            all.extend(p.items);
            match p.next {
                Some(c) => after = Some(c),
                None => return all,
            }
            n += 1;
            arrive(n).await;
        }
    }
    let s = &store;
    let before = s.incidents(&IncidentFilter::default()).await.unwrap().items;
    let paged = pages(
        |after| async move {
            let f = IncidentFilter {
                limit: Some(2),
                after,
                ..Default::default()
            };
            s.incidents(&f).await.unwrap()
        },
        async |n| {
            s.upsert_incident(&incident(&format!("new-{n}"), 9_000 + n as i64))
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(paged, before);
    assert_eq!(paged.len(), 5);

    let before = s.alerts(&AlertFilter::default()).await.unwrap().items;
    let paged = pages(
        |after| async move {
            let f = AlertFilter {
                limit: Some(2),
                after,
                ..Default::default()
            };
            s.alerts(&f).await.unwrap()
        },
        async |n| {
            s.record_alert(&alert(&format!("N{n}"), 9_000))
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(paged, before);
    assert_eq!(paged.len(), 5);

    let before = s.anomalies(&AnomalyFilter::default()).await.unwrap().items;
    let paged = pages(
        |after| async move {
            let f = AnomalyFilter {
                limit: Some(2),
                after,
                ..Default::default()
            };
            s.anomalies(&f).await.unwrap()
        },
        async |n| {
            s.record_anomalies(&[anomaly("cart", 9_000 + n as i64)])
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(paged, before);
    assert_eq!(paged.len(), 5);

    let before = s.changes(&ChangeFilter::default()).await.unwrap().items;
    let paged = pages(
        |after| async move {
            let f = ChangeFilter {
                limit: Some(2),
                after,
                ..Default::default()
            };
            s.changes(&f).await.unwrap()
        },
        async |n| {
            s.record_change(&change(&format!("new-{n}"), 9_000))
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(paged, before);
    assert_eq!(paged.len(), 5);

    // A cursor of another list, or a forged one, is refused rather than read as something else.
    let full = s
        .changes(&ChangeFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let text = full.next.expect("more than one change").encode();
    assert!(Cursor::decode("changes", &text).is_ok());
    assert!(Cursor::decode("anomalies", &text).is_err());
    let forged = Cursor::new("anomalies", 1, "not-a-row");
    let f = AnomalyFilter {
        after: Some(forged),
        ..Default::default()
    };
    assert!(matches!(
        s.anomalies(&f).await,
        Err(StoreError::Invalid { .. })
    ));
}
