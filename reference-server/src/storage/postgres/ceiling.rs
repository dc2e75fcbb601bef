//! The raw-PostgreSQL ceiling `driftless bench push --database` compares the backend with.

use std::time::Duration;

use postgres::{Client, NoTls};

use super::super::StorageError;
use super::{backend, migrate};

/// The raw-PostgreSQL ceiling for the push benchmark: the rows one applied `put` writes (Space
/// bookkeeping under its row lock, Record, Outcome, history entry, clock) inserted directly into
/// the database at `url` for Space `space`, one transaction per batch of `batch`, with the same
/// tables, indexes and `synchronous_commit`. Returns the elapsed time for `mutations` rows of
/// each kind.
pub fn raw_insert_ceiling(
    url: &str,
    space: &str,
    mutations: usize,
    batch: usize,
) -> Result<Duration, StorageError> {
    let config: postgres::Config = url
        .parse()
        .map_err(|e| StorageError::Backend(format!("database URL: {e}")))?;
    let mut client = config.connect(NoTls).map_err(backend)?;
    migrate(&mut client)?;
    client
        .batch_execute("SET synchronous_commit = on")
        .map_err(backend)?;
    let state = r#"{"last_write":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"puts":{"client-a":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"}},"fields":{"n":{"assigns":{"client-a":{"stamp":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"value":1}}},"title":{"assigns":{"client-a":{"stamp":{"hlc":"019b76daa87b-0000-client-a","op_id":"op-00000001"},"value":"benchmark record"}}}}}"#;
    let value = r#"{"n":1,"title":"benchmark record"}"#;
    let outcome = r#"{"status":"applied","op_id":"op-00000001","change_seq":1}"#;
    let entry = r#"{"position":0,"op_id":"op-00000001","client_id":"client-a","user":"bench","kind":"put","fields":["n","title"],"hlc":"019b76daa87b-0000-client-a","received_at":"2026-01-01T00:00:00.000Z","status":"applied","change_seq":1}"#;
    let digest = vec![7u8; 32];
    // Every statement prepared once, as the backend's per-connection statement cache does: the
    // ceiling is the database's own cost of these rows, not the cost of parsing SQL text.
    let prepare = |client: &mut Client, sql: &str| client.prepare(sql).map_err(backend);
    let ensure_space = prepare(
        &mut client,
        "INSERT INTO spaces (space) VALUES ($1) ON CONFLICT (space) DO NOTHING",
    )?;
    let lock_space = prepare(
        &mut client,
        "SELECT latest_seq FROM spaces WHERE space = $1 FOR UPDATE",
    )?;
    let save_seq = prepare(
        &mut client,
        "UPDATE spaces SET latest_seq = $2 WHERE space = $1",
    )?;
    let put_record = prepare(
        &mut client,
        "INSERT INTO records (space, collection, id, change_seq, deleted, deleted_hlc, state, value, conflicts, digest, bucket, schema_version)
         VALUES ($1, 'things', $2, $3, false, NULL, $4, $5, NULL, $6, $7, NULL)",
    )?;
    let put_op = prepare(
        &mut client,
        "INSERT INTO ops (space, op_id, body_digest, text_digest, outcome, hlc_ms) VALUES ($1, $2, $3, $3, $4, 0)",
    )?;
    let put_history = prepare(
        &mut client,
        "INSERT INTO history (space, collection, id, hlc_ms, entry) VALUES ($1, 'things', $2, 0, $3)",
    )?;
    let save_clock = prepare(
        &mut client,
        "INSERT INTO clocks (node, space, value) VALUES ('bench', $1, '019b76daa87b-0000-server')
         ON CONFLICT (node, space) DO UPDATE SET value = GREATEST(clocks.value, EXCLUDED.value)",
    )?;
    let zeros = "0".repeat(64);
    let start = std::time::Instant::now();
    let mut n = 0usize;
    while n < mutations {
        let mut tx = client.transaction().map_err(backend)?;
        tx.execute(&ensure_space, &[&space]).map_err(backend)?;
        let mut seq: i64 = tx
            .query_one(&lock_space, &[&space])
            .map_err(backend)?
            .get(0);
        for _ in 0..batch.min(mutations - n) {
            n += 1;
            let id = format!("r{n}");
            seq += 1;
            let bucket = (n % 64) as i32;
            tx.execute(
                &put_record,
                &[&space, &id, &seq, &state, &value, &digest, &bucket],
            )
            .map_err(backend)?;
            tx.execute(&put_op, &[&space, &format!("op-{n:08}"), &zeros, &outcome])
                .map_err(backend)?;
            tx.execute(&put_history, &[&space, &id, &entry])
                .map_err(backend)?;
        }
        tx.execute(&save_seq, &[&space, &seq]).map_err(backend)?;
        tx.execute(&save_clock, &[&space]).map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(start.elapsed())
}
