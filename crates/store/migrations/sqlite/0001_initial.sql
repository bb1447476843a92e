-- Nightshift's initial schema (SQLite).
-- Timestamps are milliseconds since the Unix epoch; enums are stored as their JSON API names;
-- nested values that are only ever read whole are stored as JSON text.
-- Column types are spelled so the same DDL reads the same in PostgreSQL where it can.

CREATE TABLE incidents (
    id            TEXT PRIMARY KEY NOT NULL,
    title         TEXT NOT NULL,
    status        TEXT NOT NULL,
    opened_at     BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    resolved_at   BIGINT,
    blast_radius  TEXT NOT NULL,
    alerts        TEXT NOT NULL,
    anomaly_count BIGINT NOT NULL,
    changes       TEXT NOT NULL
);
CREATE INDEX incidents_opened_at ON incidents (opened_at);
CREATE INDEX incidents_status_opened_at ON incidents (status, opened_at);
CREATE INDEX incidents_updated_at ON incidents (updated_at);

-- `seq` is the hypothesis's position in the incident; `rank` is kept as given because
-- nothing guarantees ranks are unique or contiguous.
CREATE TABLE hypotheses (
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    rank        BIGINT NOT NULL,
    entity_kind TEXT NOT NULL,
    entity_name TEXT NOT NULL,
    cause       TEXT NOT NULL,
    score       DOUBLE PRECISION,
    summary     TEXT NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
CREATE INDEX hypotheses_entity_name ON hypotheses (entity_name);

-- The same evidence id may support several hypotheses, so it is not a key.
CREATE TABLE evidence (
    incident_id    TEXT NOT NULL,
    hypothesis_seq BIGINT NOT NULL,
    seq            BIGINT NOT NULL,
    evidence_id    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    ts             BIGINT NOT NULL,
    entity_kind    TEXT NOT NULL,
    entity_name    TEXT NOT NULL,
    summary        TEXT NOT NULL,
    series         TEXT,
    observed       DOUBLE PRECISION,
    expected       DOUBLE PRECISION,
    query          TEXT,
    weight         DOUBLE PRECISION,
    PRIMARY KEY (incident_id, hypothesis_seq, seq),
    FOREIGN KEY (incident_id, hypothesis_seq)
        REFERENCES hypotheses (incident_id, seq) ON DELETE CASCADE
);
CREATE INDEX evidence_incident_evidence_id ON evidence (incident_id, evidence_id);
CREATE INDEX evidence_entity_name ON evidence (entity_name);
CREATE INDEX evidence_ts ON evidence (ts);

CREATE TABLE timeline (
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    ts          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    entity_kind TEXT NOT NULL,
    entity_name TEXT NOT NULL,
    text        TEXT NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
CREATE INDEX timeline_entity_name ON timeline (entity_name);

-- One row per firing: a re-fire after resolution has a new starts_at and gets its own row.
CREATE TABLE alerts (
    fingerprint TEXT NOT NULL,
    starts_at   BIGINT NOT NULL,
    ends_at     BIGINT,
    status      TEXT NOT NULL,
    labels      TEXT NOT NULL,
    annotations TEXT NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);
CREATE INDEX alerts_starts_at ON alerts (starts_at);
CREATE INDEX alerts_status_starts_at ON alerts (status, starts_at);

-- `series` is the PromQL selector for querying by hand; `series_json` is the exact key.
CREATE TABLE anomalies (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts          BIGINT NOT NULL,
    entity_kind TEXT NOT NULL,
    entity_name TEXT NOT NULL,
    series      TEXT NOT NULL,
    series_json TEXT NOT NULL,
    class       TEXT NOT NULL,
    score       DOUBLE PRECISION,
    value       DOUBLE PRECISION,
    expected    DOUBLE PRECISION,
    lower       DOUBLE PRECISION,
    upper       DOUBLE PRECISION,
    direction   TEXT NOT NULL,
    detector    TEXT NOT NULL,
    promql      TEXT NOT NULL
);
CREATE INDEX anomalies_ts ON anomalies (ts);
CREATE INDEX anomalies_entity_name_ts ON anomalies (entity_name, ts);

CREATE TABLE changes (
    id          TEXT PRIMARY KEY NOT NULL,
    ts          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL,
    version     TEXT,
    description TEXT NOT NULL
);
CREATE INDEX changes_ts ON changes (ts);
CREATE INDEX changes_target_ts ON changes (target, ts);
