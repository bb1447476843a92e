-- Incident lifecycle (acknowledgement, reopening after a relapse, flapping) and priority.
ALTER TABLE incidents ADD COLUMN acknowledged_at BIGINT;
ALTER TABLE incidents ADD COLUMN acknowledged_by TEXT;
ALTER TABLE incidents ADD COLUMN reopened BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN flapping BOOLEAN NOT NULL DEFAULT FALSE;
-- Priority from error-budget burn rates, and the burns themselves (JSON).
ALTER TABLE incidents ADD COLUMN priority TEXT NOT NULL DEFAULT 'P4';
ALTER TABLE incidents ADD COLUMN slo TEXT NOT NULL DEFAULT '[]';
-- Symptom alerts shown under the diagnosed cause, and similar earlier incidents (JSON).
ALTER TABLE incidents ADD COLUMN inhibited TEXT NOT NULL DEFAULT '[]';
ALTER TABLE incidents ADD COLUMN similar TEXT NOT NULL DEFAULT '[]';
-- What resolved an incident.
ALTER TABLE incidents ADD COLUMN resolution TEXT;
