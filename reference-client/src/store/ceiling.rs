//! The raw-SQLite ceilings of the client benchmarks.

use super::mirror::{row_of, row_texts, RowTexts};
use super::*;

/// The raw-SQLite ceiling for offline writes: the rows one `Client::write` commits (the Outbox
/// entry, `seq`, `hlc`, its receipt and the `writes` counter) inserted directly into a fresh
/// store in `dir`, one durable transaction per write, as `write` does. `bodies` are the
/// Mutations' JSON texts.
pub fn raw_outbox_ceiling(
    dir: &Path,
    bodies: &[String],
) -> Result<std::time::Duration, ClientError> {
    let mut store = Store::open(dir)?;
    let start = std::time::Instant::now();
    for (i, body) in bodies.iter().enumerate() {
        let (seq, op_id, id) = (i as i64 + 1, format!("op-{i:08}"), format!("r{i}"));
        store.tx(|tx| {
            tx.execute(
                "INSERT INTO outbox (seq, space, op_id, collection, record_id, body, priority) VALUES (?1, 'bench', ?2, 'things', ?3, ?4, 0)",
                params![seq, op_id, id, body],
            )
            .map_err(sql_error)?;
            Store::set_meta(tx, "hlc", "019b76daa87b-0000-client-a")?;
            Store::set_meta(tx, "seq", &seq.to_string())?;
            receipt(tx, &op_id, "pending", None)?;
            Store::count(tx, "writes", 1)
        })?;
    }
    Ok(start.elapsed())
}

/// The raw-SQLite ceiling for the initial-sync benchmark: the same Mirror rows (as pulled
/// Records) inserted directly into a fresh store in `dir`, one transaction per page of `page`,
/// with the store's own pragmas. Returns the elapsed time.
pub fn raw_mirror_ceiling(
    dir: &Path,
    records: &[Value],
    page: usize,
) -> Result<std::time::Duration, ClientError> {
    let mut store = Store::open(dir)?;
    // The rows are made ready before the clock starts: this is the cost of the inserts alone.
    let texts: Vec<RowTexts> = records.iter().map(row_texts).collect();
    let rows: Vec<MirrorRow<'_>> = records
        .iter()
        .zip(&texts)
        .map(|(rec, t)| row_of(rec, t))
        .collect();
    let start = std::time::Instant::now();
    for chunk in rows.chunks(page.max(1)) {
        store.tx(|tx| {
            for rec in chunk {
                put_mirror_row(tx, "bench", rec)?;
            }
            Store::set_meta(tx, "cursor:bench", "c1.0.0")
        })?;
    }
    Ok(start.elapsed())
}
