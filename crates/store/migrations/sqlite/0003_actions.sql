-- Remediation actions: what was proposed for an incident, decided and done. The document is
-- the action as the act crate describes it (JSON); id, incident, state and updated_at are
-- copied out for queries.
CREATE TABLE actions (
    id TEXT PRIMARY KEY NOT NULL,
    incident TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX actions_incident ON actions (incident);
