//! The SQLite backend: the embedded default, one file (or memory) per process.

use crate::codec::{
    enum_name, from_i64, from_json, nan_to_null, null_to_nan, parse_enum, seq, to_i64, to_json,
};
use crate::{
    AlertFilter, AnomalyFilter, ChangeFilter, Cursor, IncidentFilter, Page, Store, StoreError,
    StoredAction,
};
use async_trait::async_trait;
use nightshift_core::{
    Alert, AlertStatus, Anomaly, Change, Entity, Evidence, Hypothesis, Incident, Millis,
    TimelineEntry,
};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another writer's lock before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite has one writer at a time; a few connections let readers (API, UI) run beside it in WAL mode.
const FILE_POOL_SIZE: u32 = 4;

/// Bound parameters per `IN (...)` list, well under SQLite's and PostgreSQL's limits.
const IN_CHUNK: usize = 500;

const INCIDENT_COLUMNS: &str = "id, title, status, opened_at, updated_at, resolved_at, blast_radius, alerts, anomaly_count, changes, acknowledged_at, acknowledged_by, reopened, flapping, priority, slo, inhibited, similar, resolution";

/// A [`Store`] in SQLite.
///
/// Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at a file path, a `sqlite://` URL, or
    /// `sqlite::memory:`, and applies any pending schema migrations.
    ///
    /// Files are opened in WAL mode with foreign keys on and a busy timeout.
    pub async fn open(url_or_path: &str) -> Result<Self, StoreError> {
        let location = url_or_path.trim();
        if location.is_empty() {
            return Err(StoreError::invalid("store location", "empty path"));
        }
        let open_err = |source| StoreError::Open {
            location: location.to_string(),
            source,
        };
        let in_memory = is_in_memory(location);
        let options = if location.starts_with("sqlite:") || location == ":memory:" {
            SqliteConnectOptions::from_str(location).map_err(open_err)?
        } else {
            SqliteConnectOptions::new().filename(location)
        };
        let options = options.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
        let pool = if in_memory {
            // An in-memory database lives only as long as a connection to it, so keep exactly one
            // open for the life of the pool.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .map_err(open_err)?
        } else {
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL is durable against process crashes in WAL mode and avoids an fsync per commit.
                .synchronous(SqliteSynchronous::Normal);
            SqlitePoolOptions::new()
                .max_connections(FILE_POOL_SIZE)
                .connect_with(options)
                .await
                .map_err(open_err)?
        };
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// A fresh private in-memory database.
    pub async fn in_memory() -> Result<Self, StoreError> {
        Self::open("sqlite::memory:").await
    }

    /// Waits for in-flight queries and closes all connections; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn is_in_memory(location: &str) -> bool {
    if location == ":memory:" {
        return true;
    }
    let Some(rest) = location.strip_prefix("sqlite:") else {
        return false;
    };
    let rest = rest.trim_start_matches("//");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        let id = incident.id.as_str();
        let what = |field: &str| format!("incident {id} {field}");
        let mut tx = self.pool.begin().await?;

        sqlx::query(
            "INSERT INTO incidents (id, title, status, opened_at, updated_at, resolved_at, blast_radius, alerts, \
             anomaly_count, changes, acknowledged_at, acknowledged_by, reopened, flapping, priority, slo, \
             inhibited, similar, resolution) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET title = excluded.title, status = excluded.status, \
             opened_at = excluded.opened_at, updated_at = excluded.updated_at, resolved_at = excluded.resolved_at, \
             blast_radius = excluded.blast_radius, alerts = excluded.alerts, \
             anomaly_count = excluded.anomaly_count, changes = excluded.changes, \
             acknowledged_at = excluded.acknowledged_at, acknowledged_by = excluded.acknowledged_by, \
             reopened = excluded.reopened, flapping = excluded.flapping, \
             priority = excluded.priority, slo = excluded.slo, \
             inhibited = excluded.inhibited, similar = excluded.similar, \
             resolution = excluded.resolution",
        )
        .bind(id)
        .bind(incident.title.as_str())
        .bind(enum_name(&what("status"), &incident.status)?)
        .bind(incident.opened_at)
        .bind(incident.updated_at)
        .bind(incident.resolved_at)
        .bind(to_json(&what("blast radius"), &incident.blast_radius)?)
        .bind(to_json(&what("alerts"), &incident.alerts)?)
        .bind(to_i64(&what("anomaly count"), incident.anomaly_count)?)
        .bind(to_json(&what("changes"), &incident.changes)?)
        .bind(incident.acknowledged_at)
        .bind(incident.acknowledged_by.as_deref())
        .bind(i64::from(incident.reopened))
        .bind(incident.flapping)
        .bind(enum_name(&what("priority"), &incident.priority)?)
        .bind(to_json(&what("slo burns"), &incident.slo)?)
        .bind(to_json(&what("inhibited alerts"), &incident.inhibited)?)
        .bind(to_json(&what("similar incidents"), &incident.similar)?)
        .bind(incident.resolution.as_deref())
        .execute(&mut *tx)
        .await?;

        // Replace rather than diff: an incident's diagnosis is recomputed as a whole.
        sqlx::query("DELETE FROM evidence WHERE incident_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM hypotheses WHERE incident_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM timeline WHERE incident_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;

        for (h_index, h) in incident.hypotheses.iter().enumerate() {
            let h_what = |field: &str| format!("incident {id} hypothesis {h_index} {field}");
            let h_seq = seq(&h_what("position"), h_index)?;
            sqlx::query(
                "INSERT INTO hypotheses (incident_id, seq, rank, entity_kind, entity_name, cause, score, summary) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(h_seq)
            .bind(i64::from(h.rank))
            .bind(enum_name(&h_what("entity kind"), &h.entity.kind)?)
            .bind(h.entity.name.as_str())
            .bind(h.cause.as_str())
            .bind(nan_to_null(h.score))
            .bind(h.summary.as_str())
            .execute(&mut *tx)
            .await?;

            for (e_index, e) in h.evidence.iter().enumerate() {
                let e_what = |field: &str| format!("incident {id} evidence {} {field}", e.id);
                sqlx::query(
                    "INSERT INTO evidence (incident_id, hypothesis_seq, seq, evidence_id, kind, ts, entity_kind, \
                     entity_name, summary, series, observed, expected, query, weight) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(id)
                .bind(h_seq)
                .bind(seq(&e_what("position"), e_index)?)
                .bind(e.id.as_str())
                .bind(enum_name(&e_what("kind"), &e.kind)?)
                .bind(e.ts)
                .bind(enum_name(&e_what("entity kind"), &e.entity.kind)?)
                .bind(e.entity.name.as_str())
                .bind(e.summary.as_str())
                .bind(e.series.as_deref())
                .bind(e.observed.and_then(nan_to_null))
                .bind(e.expected.and_then(nan_to_null))
                .bind(e.query.as_deref())
                .bind(nan_to_null(e.weight))
                .execute(&mut *tx)
                .await?;
            }
        }

        for (t_index, t) in incident.timeline.iter().enumerate() {
            let t_what = |field: &str| format!("incident {id} timeline entry {t_index} {field}");
            sqlx::query(
                "INSERT INTO timeline (incident_id, seq, ts, kind, entity_kind, entity_name, text) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(seq(&t_what("position"), t_index)?)
            .bind(t.ts)
            .bind(enum_name(&t_what("kind"), &t.kind)?)
            .bind(enum_name(&t_what("entity kind"), &t.entity.kind)?)
            .bind(t.entity.name.as_str())
            .bind(t.text.as_str())
            .execute(&mut *tx)
            .await?;
        }

        tx.commit().await?;
        Ok(())
    }

    async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        // One transaction so the incident and its children come from the same snapshot.
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = "
        ));
        qb.push_bind(id);
        let mut tx = self.pool.begin().await?;
        let row = qb.build().fetch_optional(&mut *tx).await?;
        let incidents = match row {
            Some(row) => load_children(&mut tx, vec![incident_from_row(&row)?]).await?,
            None => Vec::new(),
        };
        tx.commit().await?;
        Ok(incidents.into_iter().next())
    }

    async fn incidents(&self, filter: &IncidentFilter) -> Result<Page<Incident>, StoreError> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE 1 = 1"
        ));
        if let Some(status) = filter.status {
            qb.push(" AND status = ")
                .push_bind(enum_name("incident status filter", &status)?);
        }
        if let Some(since) = filter.since {
            qb.push(" AND opened_at >= ").push_bind(since);
        }
        if let Some(c) = &filter.after {
            push_after(&mut qb, ("opened_at", "id", "<"), c.ts, c.key.clone());
        }
        qb.push(" ORDER BY opened_at DESC, id DESC");
        push_limit(&mut qb, filter.limit);
        let mut tx = self.pool.begin().await?;
        let rows = qb.build().fetch_all(&mut *tx).await?;
        let incidents = rows
            .iter()
            .map(incident_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let page = Page::of(incidents, filter.limit, |i| {
            Cursor::new("incidents", i.opened_at, i.id.clone())
        });
        let items = load_children(&mut tx, page.items).await?;
        tx.commit().await?;
        Ok(Page { items, ..page })
    }

    async fn record_alert(&self, alert: &Alert) -> Result<(), StoreError> {
        let what = |field: &str| format!("alert {} {field}", alert.fingerprint);
        let resolved = enum_name("alert status", &AlertStatus::Resolved)?;
        // A resolved firing stays resolved: webhooks can arrive out of order, and a real re-fire
        // carries a new starts_at.
        sqlx::query(
            "INSERT INTO alerts (fingerprint, starts_at, ends_at, status, labels, annotations, source) \
             VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (fingerprint, starts_at) DO UPDATE SET \
             status = CASE WHEN alerts.status = ? THEN alerts.status ELSE excluded.status END, \
             ends_at = CASE WHEN alerts.status = ? THEN alerts.ends_at ELSE excluded.ends_at END, \
             labels = excluded.labels, annotations = excluded.annotations, source = excluded.source",
        )
        .bind(alert.fingerprint.as_str())
        .bind(alert.starts_at)
        .bind(alert.ends_at)
        .bind(enum_name(&what("status"), &alert.status)?)
        .bind(to_json(&what("labels"), &alert.labels)?)
        .bind(to_json(&what("annotations"), &alert.annotations)?)
        .bind(alert.source.as_deref())
        .bind(resolved.as_str())
        .bind(resolved.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn alerts(&self, filter: &AlertFilter) -> Result<Page<Alert>, StoreError> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT fingerprint, starts_at, ends_at, status, labels, annotations, source FROM alerts WHERE 1 = 1",
        );
        if let Some(status) = filter.status {
            qb.push(" AND status = ")
                .push_bind(enum_name("alert status filter", &status)?);
        }
        if let Some(since) = filter.since {
            qb.push(" AND starts_at >= ").push_bind(since);
        }
        if let Some(fp) = &filter.fingerprint {
            qb.push(" AND fingerprint = ").push_bind(fp.clone());
        }
        if let Some(c) = &filter.after {
            push_after(
                &mut qb,
                ("starts_at", "fingerprint", ">"),
                c.ts,
                c.key.clone(),
            );
        }
        qb.push(" ORDER BY starts_at DESC, fingerprint ASC");
        push_limit(&mut qb, filter.limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let alerts = rows
            .iter()
            .map(alert_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of(alerts, filter.limit, |a| {
            Cursor::new("alerts", a.starts_at, a.fingerprint.as_str())
        }))
    }

    async fn record_anomalies(&self, anomalies: &[Anomaly]) -> Result<(), StoreError> {
        if anomalies.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for a in anomalies {
            let what = |field: &str| format!("anomaly on {} at {} {field}", a.series, a.ts);
            sqlx::query(
                "INSERT INTO anomalies (ts, entity_kind, entity_name, series, series_json, class, score, value, \
                 expected, lower, upper, direction, detector, promql) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(a.ts)
            .bind(enum_name(&what("entity kind"), &a.entity.kind)?)
            .bind(a.entity.name.as_str())
            .bind(a.series.selector())
            .bind(to_json(&what("series"), &a.series)?)
            .bind(enum_name(&what("class"), &a.class)?)
            .bind(nan_to_null(a.score))
            .bind(nan_to_null(a.value))
            .bind(nan_to_null(a.expected))
            .bind(nan_to_null(a.lower))
            .bind(nan_to_null(a.upper))
            .bind(enum_name(&what("direction"), &a.direction)?)
            .bind(a.detector.as_str())
            .bind(a.promql.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn anomalies(&self, filter: &AnomalyFilter) -> Result<Page<Anomaly>, StoreError> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT id, ts, entity_kind, entity_name, series_json, class, score, value, expected, lower, upper, \
             direction, detector, promql FROM anomalies WHERE 1 = 1",
        );
        if let Some(entity) = &filter.entity {
            qb.push(" AND entity_name = ").push_bind(entity.clone());
        }
        if let Some(since) = filter.since {
            qb.push(" AND ts >= ").push_bind(since);
        }
        if let Some(c) = &filter.after {
            let id: i64 = c
                .key
                .parse()
                .map_err(|_| StoreError::invalid("an anomalies cursor", "its key is not a row"))?;
            push_after(&mut qb, ("ts", "id", "<"), c.ts, id);
        }
        qb.push(" ORDER BY ts DESC, id DESC");
        push_limit(&mut qb, filter.limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let anomalies = rows
            .iter()
            .map(|row| Ok((row.try_get::<i64, _>("id")?, anomaly_from_row(row)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let page = Page::of(anomalies, filter.limit, |(id, a)| {
            Cursor::new("anomalies", a.ts, id.to_string())
        });
        Ok(Page {
            items: page.items.into_iter().map(|(_, a)| a).collect(),
            next: page.next,
        })
    }

    async fn record_change(&self, change: &Change) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO changes (id, ts, kind, target, version, description) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET ts = excluded.ts, kind = excluded.kind, target = excluded.target, \
             version = excluded.version, description = excluded.description",
        )
        .bind(change.id.as_str())
        .bind(change.ts)
        .bind(enum_name(&format!("change {} kind", change.id), &change.kind)?)
        .bind(change.target.as_str())
        .bind(change.version.as_deref())
        .bind(change.description.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn changes(&self, filter: &ChangeFilter) -> Result<Page<Change>, StoreError> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT id, ts, kind, target, version, description FROM changes WHERE 1 = 1",
        );
        if let Some(since) = filter.since {
            qb.push(" AND ts >= ").push_bind(since);
        }
        if let Some(c) = &filter.after {
            push_after(&mut qb, ("ts", "id", ">"), c.ts, c.key.clone());
        }
        qb.push(" ORDER BY ts DESC, id ASC");
        push_limit(&mut qb, filter.limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let changes = rows
            .iter()
            .map(change_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of(changes, filter.limit, |c| {
            Cursor::new("changes", c.ts, c.id.as_str())
        }))
    }

    async fn upsert_action(&self, action: &StoredAction) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO actions (id, incident, state, updated_at, document) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET incident = excluded.incident, state = excluded.state, \
             updated_at = excluded.updated_at, document = excluded.document",
        )
        .bind(action.id.as_str())
        .bind(action.incident.as_str())
        .bind(action.state.as_str())
        .bind(action.updated_at)
        .bind(to_json(&format!("action {}", action.id), &action.document)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn llm_tokens(&self, day: i64) -> Result<u64, StoreError> {
        let tokens: Option<i64> = sqlx::query_scalar("SELECT tokens FROM llm_spend WHERE day = ?")
            .bind(day)
            .fetch_optional(&self.pool)
            .await?;
        Ok(tokens.unwrap_or(0).max(0) as u64)
    }

    async fn record_llm_tokens(&self, day: i64, tokens: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO llm_spend (day, tokens) VALUES (?, ?) \
             ON CONFLICT (day) DO UPDATE SET tokens = max(tokens, excluded.tokens)",
        )
        .bind(day)
        .bind(tokens.min(i64::MAX as u64) as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn actions(&self, incident: Option<&str>) -> Result<Vec<StoredAction>, StoreError> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT id, incident, state, updated_at, document FROM actions WHERE 1 = 1",
        );
        if let Some(incident) = incident {
            qb.push(" AND incident = ").push_bind(incident);
        }
        // Ids are act-NNNN: their length, then their text, is their order.
        qb.push(" ORDER BY length(id), id");
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                Ok(StoredAction {
                    document: from_json(
                        &format!("action {id}"),
                        &row.try_get::<String, _>("document")?,
                    )?,
                    incident: row.try_get("incident")?,
                    state: row.try_get("state")?,
                    updated_at: row.try_get("updated_at")?,
                    id,
                })
            })
            .collect()
    }
}

/// Keeps the rows after a cursor in a list ordered by `ts` descending, then by `key` (`cmp` is
/// `<` when the key descends, `>` when it ascends).
fn push_after<'t, K>(
    qb: &mut QueryBuilder<Sqlite>,
    (ts_col, key_col, cmp): (&str, &str, &str),
    ts: Millis,
    key: K,
) where
    K: sqlx::Encode<'t, Sqlite> + sqlx::Type<Sqlite>,
{
    qb.push(format!(" AND ({ts_col} < "))
        .push_bind(ts)
        .push(format!(" OR ({ts_col} = "))
        .push_bind(ts)
        .push(format!(" AND {key_col} {cmp} "))
        .push_bind(key)
        .push("))");
}

/// One row more than the page holds: whether it comes says whether a next page exists.
fn push_limit(qb: &mut QueryBuilder<Sqlite>, limit: Option<u32>) {
    if let Some(limit) = limit {
        qb.push(" LIMIT ").push_bind(i64::from(limit) + 1);
    }
}

/// An incident row without its hypotheses and timeline.
fn incident_from_row(row: &SqliteRow) -> Result<Incident, StoreError> {
    let id: String = row.try_get("id")?;
    let what = |field: &str| format!("incident {id} {field}");
    Ok(Incident {
        title: row.try_get("title")?,
        status: parse_enum(&what("status"), row.try_get("status")?)?,
        opened_at: row.try_get("opened_at")?,
        updated_at: row.try_get("updated_at")?,
        resolved_at: row.try_get("resolved_at")?,
        acknowledged_at: row.try_get("acknowledged_at")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
        reopened: from_i64(&what("reopened count"), row.try_get("reopened")?)?,
        flapping: row.try_get("flapping")?,
        priority: parse_enum(&what("priority"), row.try_get("priority")?)?,
        slo: from_json(&what("slo burns"), row.try_get("slo")?)?,
        inhibited: from_json(&what("inhibited alerts"), row.try_get("inhibited")?)?,
        similar: from_json(&what("similar incidents"), row.try_get("similar")?)?,
        resolution: row.try_get("resolution")?,
        blast_radius: from_json(&what("blast radius"), row.try_get("blast_radius")?)?,
        alerts: from_json(&what("alerts"), row.try_get("alerts")?)?,
        anomaly_count: from_i64(&what("anomaly count"), row.try_get("anomaly_count")?)?,
        changes: from_json(&what("changes"), row.try_get("changes")?)?,
        hypotheses: Vec::new(),
        timeline: Vec::new(),
        id: id.clone(),
    })
}

/// Fills in hypotheses, evidence and timeline for incidents read without them, keeping their order.
async fn load_children(
    conn: &mut SqliteConnection,
    mut incidents: Vec<Incident>,
) -> Result<Vec<Incident>, StoreError> {
    let index: HashMap<String, usize> = incidents
        .iter()
        .enumerate()
        .map(|(i, inc)| (inc.id.clone(), i))
        .collect();
    // Hypothesis seq per incident, parallel to `Incident::hypotheses`, to attach evidence by seq.
    let mut seqs: Vec<Vec<i64>> = vec![Vec::new(); incidents.len()];
    let ids: Vec<String> = incidents.iter().map(|inc| inc.id.clone()).collect();

    for chunk in ids.chunks(IN_CHUNK) {
        let rows = select_in(
            conn,
            "SELECT incident_id, seq, rank, entity_kind, entity_name, cause, score, summary FROM hypotheses",
            chunk,
            "incident_id, seq",
        )
        .await?;
        for row in &rows {
            let incident_id: String = row.try_get("incident_id")?;
            let h_seq: i64 = row.try_get("seq")?;
            let what = |field: &str| format!("incident {incident_id} hypothesis {h_seq} {field}");
            let Some(&i) = index.get(&incident_id) else {
                continue;
            };
            incidents[i].hypotheses.push(Hypothesis {
                rank: from_i64(&what("rank"), row.try_get("rank")?)?,
                entity: entity_from_row(row, &what("entity kind"))?,
                cause: row.try_get("cause")?,
                score: null_to_nan(row.try_get("score")?),
                summary: row.try_get("summary")?,
                evidence: Vec::new(),
            });
            seqs[i].push(h_seq);
        }

        let rows = select_in(
            conn,
            "SELECT incident_id, hypothesis_seq, evidence_id, kind, ts, entity_kind, entity_name, summary, series, \
             observed, expected, query, weight FROM evidence",
            chunk,
            "incident_id, hypothesis_seq, seq",
        )
        .await?;
        for row in &rows {
            let incident_id: String = row.try_get("incident_id")?;
            let h_seq: i64 = row.try_get("hypothesis_seq")?;
            let evidence_id: String = row.try_get("evidence_id")?;
            let what =
                |field: &str| format!("incident {incident_id} evidence {evidence_id} {field}");
            let Some(&i) = index.get(&incident_id) else {
                continue;
            };
            let h = seqs[i].binary_search(&h_seq).map_err(|_| {
                StoreError::corrupt(
                    what("hypothesis"),
                    format!("no hypothesis at position {h_seq}"),
                )
            })?;
            let evidence = Evidence {
                kind: parse_enum(&what("kind"), row.try_get("kind")?)?,
                ts: row.try_get("ts")?,
                entity: entity_from_row(row, &what("entity kind"))?,
                summary: row.try_get("summary")?,
                series: row.try_get("series")?,
                observed: row.try_get("observed")?,
                expected: row.try_get("expected")?,
                query: row.try_get("query")?,
                weight: null_to_nan(row.try_get("weight")?),
                id: evidence_id.clone(),
            };
            incidents[i].hypotheses[h].evidence.push(evidence);
        }

        let rows = select_in(
            conn,
            "SELECT incident_id, seq, ts, kind, entity_kind, entity_name, text FROM timeline",
            chunk,
            "incident_id, seq",
        )
        .await?;
        for row in &rows {
            let incident_id: String = row.try_get("incident_id")?;
            let t_seq: i64 = row.try_get("seq")?;
            let what =
                |field: &str| format!("incident {incident_id} timeline entry {t_seq} {field}");
            let Some(&i) = index.get(&incident_id) else {
                continue;
            };
            incidents[i].timeline.push(TimelineEntry {
                ts: row.try_get("ts")?,
                kind: parse_enum(&what("kind"), row.try_get("kind")?)?,
                entity: entity_from_row(row, &what("entity kind"))?,
                text: row.try_get("text")?,
            });
        }
    }
    Ok(incidents)
}

/// `select WHERE incident_id IN (ids) ORDER BY order_by`.
async fn select_in(
    conn: &mut SqliteConnection,
    select: &str,
    ids: &[String],
    order_by: &str,
) -> Result<Vec<SqliteRow>, StoreError> {
    let mut qb = QueryBuilder::<Sqlite>::new(select);
    qb.push(" WHERE incident_id IN (");
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(id.clone());
    }
    list.push_unseparated(") ORDER BY ");
    qb.push(order_by);
    Ok(qb.build().fetch_all(&mut *conn).await?)
}

fn entity_from_row(row: &SqliteRow, what: &str) -> Result<Entity, StoreError> {
    Ok(Entity {
        kind: parse_enum(what, row.try_get("entity_kind")?)?,
        name: row.try_get("entity_name")?,
    })
}

fn alert_from_row(row: &SqliteRow) -> Result<Alert, StoreError> {
    let fingerprint: String = row.try_get("fingerprint")?;
    let what = |field: &str| format!("alert {fingerprint} {field}");
    Ok(Alert {
        labels: from_json(&what("labels"), row.try_get("labels")?)?,
        annotations: from_json(&what("annotations"), row.try_get("annotations")?)?,
        status: parse_enum(&what("status"), row.try_get("status")?)?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        source: row.try_get("source")?,
        fingerprint: fingerprint.clone(),
    })
}

fn anomaly_from_row(row: &SqliteRow) -> Result<Anomaly, StoreError> {
    let ts: Millis = row.try_get("ts")?;
    let what = |field: &str| format!("anomaly at {ts} {field}");
    Ok(Anomaly {
        series: from_json(&what("series"), row.try_get("series_json")?)?,
        entity: entity_from_row(row, &what("entity kind"))?,
        class: parse_enum(&what("class"), row.try_get("class")?)?,
        ts,
        score: null_to_nan(row.try_get("score")?),
        value: null_to_nan(row.try_get("value")?),
        expected: null_to_nan(row.try_get("expected")?),
        lower: null_to_nan(row.try_get("lower")?),
        upper: null_to_nan(row.try_get("upper")?),
        direction: parse_enum(&what("direction"), row.try_get("direction")?)?,
        detector: row.try_get("detector")?,
        promql: row.try_get("promql")?,
    })
}

fn change_from_row(row: &SqliteRow) -> Result<Change, StoreError> {
    let id: String = row.try_get("id")?;
    Ok(Change {
        ts: row.try_get("ts")?,
        kind: parse_enum(&format!("change {id} kind"), row.try_get("kind")?)?,
        target: row.try_get("target")?,
        version: row.try_get("version")?,
        description: row.try_get("description")?,
        id,
    })
}

#[cfg(test)]
mod tests;
