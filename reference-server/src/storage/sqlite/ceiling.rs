//! The raw-SQLite ceiling of the push benchmark.

use super::*;

/// The raw-SQLite ceiling for the push benchmark: the rows one applied `put` writes (Space
/// bookkeeping, Record, Outcome, history entry, clock) inserted directly into a fresh database in
/// `dir` with the same pragmas and indexes, one transaction per batch of `batch`. Returns the
/// elapsed time for `mutations` rows of each kind.
pub fn raw_insert_ceiling(
    dir: &Path,
    mutations: usize,
    batch: usize,
) -> Result<std::time::Duration, StorageError> {
    let conn = Connection::open(dir.join(DB_FILE)).map_err(backend)?;
    conn.execute_batch(PRAGMAS).map_err(backend)?;
    conn.execute_batch(SCHEMA).map_err(backend)?;
    let mut conn = conn;
    let state = r#"{"last_write":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"puts":{"client-a":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"}},"fields":{"n":{"assigns":{"client-a":{"stamp":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"value":1}}},"title":{"assigns":{"client-a":{"stamp":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"value":"benchmark record"}}}}}"#;
    let value = r#"{"n":1,"title":"benchmark record"}"#;
    let outcome = r#"{"status":"applied","op_id":"op-00000001","change_seq":1}"#;
    let wire = r#"{"collection":"things","id":"r1","change_seq":1,"deleted":false,"value":{"n":1,"title":"benchmark record"},"digest":"0707070707070707070707070707070707070707070707070707070707070707"}"#;
    let entry = r#"{"position":0,"op_id":"op-00000001","client_id":"client-a","user":"bench","kind":"put","fields":["n","title"],"hlc":"019b76daa87b-0000-client-a","received_at":"2026-01-01T00:00:00.000Z","status":"applied","change_seq":1}"#;
    let start = std::time::Instant::now();
    let mut n = 0usize;
    while n < mutations {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        for _ in 0..batch.min(mutations - n) {
            n += 1;
            let id = format!("r{n}");
            let seq: i64 = tx
                .query_row(
                    "INSERT INTO spaces (space, latest_seq) VALUES ('bench', 1)
                     ON CONFLICT (space) DO UPDATE SET latest_seq = latest_seq + 1 RETURNING latest_seq",
                    [],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO records
                 (space, collection, id, change_seq, deleted, deleted_hlc, state, value, conflicts, digest, bucket, schema_version, wire)
                 VALUES ('bench', 'things', ?1, ?2, 0, NULL, ?3, ?4, NULL, ?5, ?6, NULL, ?7)",
            )
            .map_err(backend)?
            .execute(params![id, seq, state, value, vec![7u8; 32], (n % 64) as i64, wire])
            .map_err(backend)?;
            tx.prepare_cached("INSERT INTO ops (space, op_id, body_digest, text_digest, outcome, hlc_ms) VALUES ('bench', ?1, ?2, ?2, ?3, 0)")
                .map_err(backend)?
                .execute(params![format!("op-{n:08}"), "0".repeat(64), outcome])
                .map_err(backend)?;
            tx.prepare_cached("INSERT INTO history (space, collection, id, hlc_ms, entry) VALUES ('bench', 'things', ?1, 0, ?2)")
                .map_err(backend)?
                .execute(params![id, entry])
                .map_err(backend)?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('clock', '019b76daa87b-0000-server')
             ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            [],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(start.elapsed())
}
