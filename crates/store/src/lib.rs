//! Persistence for incidents, hypotheses, evidence, alerts, anomalies and changes (SQLite).
