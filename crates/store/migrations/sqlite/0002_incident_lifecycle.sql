-- Incident lifecycle: acknowledgement, reopening after a relapse, and flapping.
ALTER TABLE incidents ADD COLUMN acknowledged_at BIGINT;
ALTER TABLE incidents ADD COLUMN acknowledged_by TEXT;
ALTER TABLE incidents ADD COLUMN reopened BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN flapping BOOLEAN NOT NULL DEFAULT FALSE;
