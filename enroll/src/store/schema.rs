//! The schema, as ordered migrations shared by both backends (the SQL here is
//! portable between SQLite and PostgreSQL; backend-specific triggers follow).

/// Ordered migrations; the index + 1 is the schema version.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    ek_sha256 TEXT NOT NULL,
    ek_certified BOOLEAN NOT NULL,
    token_hash TEXT,
    release TEXT NOT NULL,
    csr_der BYTEA NOT NULL,
    secrets_json TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    consumed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    store_id TEXT NOT NULL,
    ek_sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    release TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision TEXT,
    report TEXT
);
CREATE TABLE allowlist (
    ek_sha256 TEXT PRIMARY KEY,
    serial TEXT NOT NULL,
    store_id TEXT NOT NULL
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    store_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    node_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    ek_sha256 TEXT NOT NULL,
    decision TEXT NOT NULL,
    detail TEXT NOT NULL,
    config_sha256 TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
"#,
    // 2: node ids scoped by store; tokens optionally bound to one EK; the EK
    // certificate's names kept for the approving admin.
    r#"
CREATE TABLE nodes_v2 (
    node_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    ek_sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    release TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision TEXT,
    report TEXT,
    ek_subject TEXT,
    ek_issuer TEXT,
    ek_serial TEXT,
    PRIMARY KEY (store_id, node_id)
);
INSERT INTO nodes_v2 (node_id, store_id, ek_sha256, status, release, updated_at, revision, report)
    SELECT node_id, store_id, ek_sha256, status, release, updated_at, revision, report FROM nodes;
DROP TABLE nodes;
ALTER TABLE nodes_v2 RENAME TO nodes;
ALTER TABLE tokens ADD COLUMN ek_sha256 TEXT;
ALTER TABLE sessions ADD COLUMN ek_subject TEXT;
ALTER TABLE sessions ADD COLUMN ek_issuer TEXT;
ALTER TABLE sessions ADD COLUMN ek_serial TEXT;
"#,
    // 3: signed chain heads (crate::audit_sign): (seq, hash) signed by the audit key.
    r#"
CREATE TABLE audit_heads (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
"#,
    // 4: revocation: every node identity certificate issued, and the
    // per-node ACME EAB keys handed out from a store's pool. Keyed by
    // (store_id, node_id) columns of their own, independent of `nodes`.
    r#"
CREATE TABLE node_certs (
    serial TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    issued_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX node_certs_node ON node_certs (store_id, node_id);
CREATE TABLE eab_keys (
    store_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    assigned_at BIGINT NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (store_id, key_id)
);
CREATE UNIQUE INDEX eab_keys_active ON eab_keys (store_id, node_id) WHERE revoked_at IS NULL;
"#,
];

/// SQLite: refuse UPDATE/DELETE on the audit table (the hash chain catches
/// anyone who drops these triggers first).
pub const SQLITE_AUDIT_GUARD: &str = r#"
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_heads_no_update BEFORE UPDATE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'audit heads are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'audit heads are append-only'); END;
"#;

/// PostgreSQL: the same guard.
pub const PG_AUDIT_GUARD: &str = r#"
CREATE OR REPLACE FUNCTION keel_audit_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'audit log is append-only'; END; $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_append_only ON audit;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
FOR EACH ROW EXECUTE FUNCTION keel_audit_append_only();
DROP TRIGGER IF EXISTS audit_heads_append_only ON audit_heads;
CREATE TRIGGER audit_heads_append_only BEFORE UPDATE OR DELETE ON audit_heads
FOR EACH ROW EXECUTE FUNCTION keel_audit_append_only();
"#;

/// Fills an audit entry's decision from an admission outcome.
pub fn fill_decision(
    mut e: crate::audit::Entry,
    o: &crate::admission::Outcome,
) -> crate::audit::Entry {
    use crate::admission::Verdict;
    match &o.verdict {
        Verdict::Admit { via } => {
            e.decision = "admitted".into();
            e.detail = format!("via {via}");
        }
        Verdict::Queue(r) => {
            e.decision = "pending".into();
            e.detail = r.clone();
        }
        Verdict::Reject(code, msg) => {
            e.decision = format!("rejected:{code}");
            e.detail = msg.clone();
        }
    }
    e
}
