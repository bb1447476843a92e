-- Tokens the LLM investigator spent per UTC day (one row a day), so that the daily budget
-- holds across restarts.
CREATE TABLE llm_spend (
    day INTEGER PRIMARY KEY,
    tokens INTEGER NOT NULL
);
