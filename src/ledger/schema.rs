//! The ledger's schema: each migration once, in order; `PRAGMA user_version` is the number
//! applied.

pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE versions (
    label       TEXT PRIMARY KEY,
    commit_id   TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    bundle      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    bad_at      INTEGER,
    bad_reason  TEXT
);
CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY,
    env         TEXT NOT NULL,
    label       TEXT NOT NULL REFERENCES versions(label),
    action      TEXT NOT NULL,
    previous    TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT NOT NULL CHECK (outcome IN ('in_progress','healthy','failed','abandoned')),
    detail      TEXT,
    actor       TEXT,
    reason      TEXT
);
CREATE INDEX deployments_env ON deployments(env, started_at);
CREATE TABLE verifications (
    id      INTEGER PRIMARY KEY,
    env     TEXT NOT NULL,
    label   TEXT NOT NULL REFERENCES versions(label),
    at      INTEGER NOT NULL,
    passed  INTEGER NOT NULL,
    detail  TEXT
);
CREATE INDEX verifications_env ON verifications(env, at);
CREATE TABLE incidents (
    id             INTEGER PRIMARY KEY,
    env            TEXT NOT NULL,
    bad_label      TEXT,
    restored_label TEXT,
    detected_at    INTEGER NOT NULL,
    restored_at    INTEGER,
    downtime_ms    INTEGER,
    reason         TEXT
);
"#,
    r#"
CREATE TABLE gate_waivers (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    commit_id  TEXT NOT NULL,
    base       TEXT NOT NULL,
    checks     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT
);
"#,
    r#"
CREATE TABLE stops (
    id      INTEGER PRIMARY KEY,
    env     TEXT NOT NULL,
    label   TEXT,
    at      INTEGER NOT NULL,
    actor   TEXT,
    reason  TEXT
);
"#,
    // The exposure clock: when a version took traffic (its switch), and on an incident when the
    // bad version took traffic, when the rollback started, and where the budget's charge starts.
    r#"
ALTER TABLE deployments ADD COLUMN switched_at INTEGER;
ALTER TABLE incidents ADD COLUMN took_traffic_at INTEGER;
ALTER TABLE incidents ADD COLUMN rollback_started_at INTEGER;
ALTER TABLE incidents ADD COLUMN charged_from INTEGER;
"#,
    // A canary's incident: the share of the users (percent) that met the bad version; the
    // downtime charged is the span times that share.
    r#"
ALTER TABLE incidents ADD COLUMN share_percent INTEGER;
"#,
    // The report's facts: when a version's commit was made (lead time for changes), and every
    // gate verdict (bad changes stopped by the gate).
    r#"
ALTER TABLE versions ADD COLUMN committed_at INTEGER;
CREATE TABLE gate_runs (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    commit_id  TEXT NOT NULL,
    passed     INTEGER NOT NULL,
    checks     TEXT NOT NULL,
    actor      TEXT
);
CREATE INDEX gate_runs_at ON gate_runs(at);
"#,
    // What caused an incident, as a word the report counts by (see [`Cause`]); the reason stays
    // the people's text (a `--reason` replaces it, so it cannot say which layer acted).
    r#"
ALTER TABLE incidents ADD COLUMN cause TEXT;
ALTER TABLE incidents ADD COLUMN alert_id TEXT;
"#,
    // The release phase: each run of a version's release command (migrations) in an
    // environment, and on each deployment the release that ran before it.
    r#"
CREATE TABLE releases (
    id          INTEGER PRIMARY KEY,
    env         TEXT NOT NULL,
    label       TEXT NOT NULL,
    command     TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER NOT NULL,
    exit        TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    tail        TEXT
);
CREATE INDEX releases_env ON releases(env, label);
ALTER TABLE deployments ADD COLUMN release_id INTEGER;
"#,
    // Rollback rehearsals: a version whose release passed in a staging environment, and the
    // production's last known good (`target`) started on a copy of that environment's migrated
    // data: whether a rollback from the one to the other would serve.
    r#"
CREATE TABLE rehearsals (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    env     TEXT NOT NULL,
    label   TEXT NOT NULL,
    target  TEXT NOT NULL,
    ok      INTEGER NOT NULL,
    detail  TEXT
);
CREATE INDEX rehearsals_label ON rehearsals(label);
"#,
    // A metric in shadow mode: what it would have said of a version, never acted on.
    r#"
CREATE TABLE shadow_verdicts (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    env     TEXT NOT NULL,
    label   TEXT NOT NULL,
    metric  TEXT NOT NULL,
    failed  INTEGER NOT NULL,
    detail  TEXT
);
CREATE INDEX shadow_verdicts_metric ON shadow_verdicts(metric);
"#,
    // Not enough evidence to judge a version (exit 4): neither a pass nor a verdict.
    r#"
CREATE TABLE inconclusive (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    env     TEXT NOT NULL,
    label   TEXT NOT NULL,
    source  TEXT NOT NULL,
    detail  TEXT
);
CREATE INDEX inconclusive_label ON inconclusive(env, label);
"#,
];
