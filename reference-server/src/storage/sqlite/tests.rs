use super::*;
use std::sync::mpsc;
use std::time::Duration;

/// A read runs beside a write transaction that is still open, and sees the state from
/// before it; after the commit, a new read sees the write.
#[test]
fn reads_run_beside_an_open_write_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let storage = std::sync::Arc::new(SqliteStorage::open(dir.path()).unwrap());
    let op = StoredOp {
        body_digest: "abc".into(),
        text_digest: None,
        outcome: "{}".into(),
    };
    let (started_tx, started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let writer = {
        let storage = storage.clone();
        let op = op.clone();
        std::thread::spawn(move || {
            storage
                .write("demo", |tx| {
                    tx.put_op("op-1", &op, 0)?;
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok(())
                })
                .unwrap()
        })
    };
    started.recv().unwrap();
    let (done_tx, done) = mpsc::channel();
    {
        let storage = storage.clone();
        std::thread::spawn(move || {
            let seen = storage.read("demo", |tx| tx.ops(&["op-1"])).unwrap();
            done_tx.send(seen.len()).unwrap();
        });
    }
    // A deadline, not a timing claim: with one shared connection this read never returns
    // while the writer holds it.
    let seen = done.recv_timeout(Duration::from_secs(60));
    release.send(()).unwrap();
    writer.join().unwrap();
    assert_eq!(
        seen,
        Ok(0),
        "the read must finish during the write and not see it"
    );
    let after = storage.read("demo", |tx| tx.ops(&["op-1"])).unwrap();
    assert_eq!(after.get("op-1"), Some(&op));
}

/// A data folder from before `ops.text_digest` opens, keeps its Outcomes, and takes new ones.
#[test]
fn a_database_without_text_digests_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE ops (space TEXT NOT NULL, op_id TEXT NOT NULL,
                 body_digest TEXT NOT NULL, outcome TEXT NOT NULL, hlc_ms INTEGER NOT NULL,
                 PRIMARY KEY (space, op_id)) WITHOUT ROWID;
             INSERT INTO ops VALUES ('demo', 'op-old-1', 'abc', '{}', 0);",
        )
        .unwrap();
    }
    let storage = SqliteStorage::open(dir.path()).unwrap();
    let old = storage
        .read("demo", |tx| tx.ops(&["op-old-1"]))
        .unwrap()
        .remove("op-old-1");
    assert_eq!(
        old,
        Some(StoredOp {
            body_digest: "abc".into(),
            text_digest: None,
            outcome: "{}".into(),
        })
    );
    let new = StoredOp {
        body_digest: "def".into(),
        text_digest: Some("123".into()),
        outcome: "{}".into(),
    };
    storage
        .write("demo", |tx| tx.put_op("op-new-1", &new, 0))
        .unwrap();
    drop(storage);
    // Opening again finds the column in place.
    let storage = SqliteStorage::open(dir.path()).unwrap();
    let got = storage
        .read("demo", |tx| tx.ops(&["op-new-1", "op-none"]))
        .unwrap();
    assert_eq!(got.len(), 1);
    let got = got.get("op-new-1").cloned();
    assert_eq!(got, Some(new));
}

fn stored(id: &str, change_seq: u64, n: i64) -> StoredRecord {
    let value = serde_json::json!({"n": n, "title": "a \"quoted\" title"});
    StoredRecord {
        collection: "things".into(),
        id: id.into(),
        change_seq,
        state: RecordState::default(),
        view: RecordView {
            exists: true,
            value: value.as_object().cloned(),
            conflicts: None,
            digest: Some([7; 32]),
            bucket: 3,
            schema_version: Some(2),
        },
    }
}

fn wire_page(storage: &SqliteStorage, after: u64, limit: usize) -> Vec<(u64, String)> {
    storage
        .read("demo", |tx| {
            let mut out = Vec::new();
            tx.wire_records_changed_after(after, limit, &mut |seq, text| {
                out.push((seq, text.to_owned()));
                Ok(())
            })?;
            Ok(out)
        })
        .unwrap()
}

/// Pull copies out the wire form stored at write time: the same text the Record's wire
/// message serializes to, in `change_seq` order, bounded by `limit`.
#[test]
fn wire_records_are_the_serialized_wire_form_in_change_order() {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(dir.path()).unwrap();
    let records = [stored("b", 1, 1), stored("a", 2, 2), stored("c", 3, 3)];
    storage
        .write("demo", |tx| {
            for r in &records {
                tx.put_record(r)?;
            }
            Ok(())
        })
        .unwrap();
    let page = wire_page(&storage, 1, 10);
    let expected: Vec<(u64, String)> = records[1..]
        .iter()
        .map(|r| {
            (
                r.change_seq,
                serde_json::to_string(&super::super::wire_record(r)).unwrap(),
            )
        })
        .collect();
    assert_eq!(page, expected);
    assert_eq!(wire_page(&storage, 0, 2).len(), 2);
}

/// A data folder from before `records.wire` opens, and pulls its old Records in the same
/// wire form as if they had been written now (derived from the stored state).
#[test]
fn a_database_without_wire_forms_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(dir.path()).unwrap();
    storage
        .write("demo", |tx| tx.put_record(&stored("a", 1, 1)))
        .unwrap();
    let before = wire_page(&storage, 0, 10);
    drop(storage);
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch("ALTER TABLE records DROP COLUMN wire")
            .unwrap();
    }
    let storage = SqliteStorage::open(dir.path()).unwrap();
    assert_eq!(wire_page(&storage, 0, 10), before);
    storage
        .write("demo", |tx| tx.put_record(&stored("b", 2, 2)))
        .unwrap();
    let page = wire_page(&storage, 0, 10);
    assert_eq!(page.len(), 2);
    assert_eq!(page[0], before[0]);
}

/// A data folder whose `records` is the old `WITHOUT ROWID` table opens with every Record
/// kept, pulls the same page, and keeps working; its table is a rowid table afterwards.
#[test]
fn a_records_table_without_rowid_is_rebuilt_with_every_record() {
    // Records written by this version, in a database of its own.
    let now = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(now.path()).unwrap();
    storage
        .write("demo", |tx| {
            tx.put_record(&stored("a", 1, 1))?;
            tx.put_record(&stored("b", 2, 2))
        })
        .unwrap();
    let before = wire_page(&storage, 0, 10);
    assert_eq!(before.len(), 2);
    drop(storage);
    // The same rows in a database whose `records` is the old WITHOUT ROWID table.
    let old = tempfile::tempdir().unwrap();
    let without_rowid = SCHEMA.replacen(
        "    PRIMARY KEY (space, collection, id)\n);",
        "    PRIMARY KEY (space, collection, id)\n) WITHOUT ROWID;",
        1,
    );
    assert_ne!(without_rowid, SCHEMA, "the old table's definition was made");
    {
        let conn = Connection::open(old.path().join(DB_FILE)).unwrap();
        conn.execute_batch(PRAGMAS).unwrap();
        conn.execute_batch(&without_rowid).unwrap();
        conn.execute(
            "ATTACH DATABASE ?1 AS now",
            [now.path().join(DB_FILE).to_str().unwrap()],
        )
        .unwrap();
        conn.execute_batch(
            "INSERT INTO records SELECT * FROM now.records;
             INSERT INTO spaces SELECT * FROM now.spaces;",
        )
        .unwrap();
    }
    let table_sql = |storage: &SqliteStorage| -> String {
        storage
            .reader()
            .unwrap()
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'records'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let storage = SqliteStorage::open(old.path()).unwrap();
    assert!(!table_sql(&storage).contains("WITHOUT ROWID"));
    assert_eq!(wire_page(&storage, 0, 10), before);
    storage
        .write("demo", |tx| tx.put_record(&stored("c", 3, 3)))
        .unwrap();
    assert_eq!(wire_page(&storage, 0, 10).len(), 3);
    drop(storage);
    // Opening again changes nothing.
    let storage = SqliteStorage::open(old.path()).unwrap();
    assert_eq!(wire_page(&storage, 0, 10).len(), 3);
}

/// Waits until `n` writers are queued for the writer: a condition, not a duration.
fn until_queued(storage: &SqliteStorage, n: usize) {
    while storage.queued.load(Ordering::SeqCst) < n {
        std::thread::yield_now();
    }
}

/// Starts a write of Op `op` on another thread that holds the writer until `release` says
/// so; returns once it runs.
fn held_write(
    storage: &std::sync::Arc<SqliteStorage>,
    op: &'static str,
) -> (
    mpsc::Sender<()>,
    std::thread::JoinHandle<Result<(), StorageError>>,
) {
    let (started_tx, started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let storage = storage.clone();
    let handle = std::thread::spawn(move || {
        storage.write("demo", |tx| {
            tx.put_op(op, &op_of(), 0)?;
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            Ok(())
        })
    });
    started.recv().unwrap();
    (release, handle)
}

fn op_of() -> StoredOp {
    StoredOp {
        body_digest: "abc".into(),
        text_digest: None,
        outcome: "{}".into(),
    }
}

fn known_ops(storage: &SqliteStorage, ids: &[&str]) -> usize {
    storage.read("demo", |tx| tx.ops(ids)).unwrap().len()
}

/// Writes that queue behind a running one share its commit; one that fails is rolled back
/// alone; every one that succeeded is durable when it returns.
#[test]
fn writes_arriving_together_share_one_commit_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let storage = std::sync::Arc::new(SqliteStorage::open(dir.path()).unwrap());
    let (release, first) = held_write(&storage, "op-1");
    let queued: Vec<_> = ["op-2", "op-bad", "op-3"]
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            let mine = storage.clone();
            let handle = std::thread::spawn(move || {
                mine.write("demo", |tx| {
                    tx.put_op(op, &op_of(), 0)?;
                    if op == "op-bad" {
                        return Err(StorageError::Corrupt("refused".into()));
                    }
                    Ok(())
                })
            });
            until_queued(&storage, i + 1);
            handle
        })
        .collect();
    release.send(()).unwrap();
    assert!(first.join().unwrap().is_ok());
    let results: Vec<bool> = queued
        .into_iter()
        .map(|h| h.join().unwrap().is_ok())
        .collect();
    assert_eq!(results, [true, false, true]);
    assert_eq!(
        storage.commits(),
        1,
        "four writes that arrived together, one commit"
    );
    assert_eq!(known_ops(&storage, &["op-1", "op-2", "op-3"]), 3);
    assert_eq!(known_ops(&storage, &["op-bad"]), 0);
    // Alone, a write commits by itself.
    storage
        .write("demo", |tx| tx.put_op("op-4", &op_of(), 0))
        .unwrap();
    assert_eq!(storage.commits(), 2);
    drop(storage);
    let storage = SqliteStorage::open(dir.path()).unwrap();
    assert_eq!(known_ops(&storage, &["op-1", "op-2", "op-3", "op-4"]), 4);
}

/// A write that panics in a shared transaction fails every write of it (none is reported
/// durable, none waits forever), and the writer is usable afterwards.
#[test]
fn a_panicking_write_fails_its_whole_group_and_nothing_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let storage = std::sync::Arc::new(SqliteStorage::open(dir.path()).unwrap());
    let (release, first) = held_write(&storage, "op-1");
    let panicking = {
        let storage = storage.clone();
        std::thread::spawn(move || {
            storage.write("demo", |tx| -> Result<(), StorageError> {
                tx.put_op("op-2", &op_of(), 0)?;
                panic!("a bug in a handler")
            })
        })
    };
    until_queued(&storage, 1);
    release.send(()).unwrap();
    assert!(first.join().unwrap().is_err(), "its commit never happened");
    assert!(panicking.join().is_err());
    assert_eq!(known_ops(&storage, &["op-1", "op-2"]), 0);
    storage
        .write("demo", |tx| tx.put_op("op-3", &op_of(), 0))
        .unwrap();
    assert_eq!(known_ops(&storage, &["op-3"]), 1);
}

/// The first write of a transaction runs without a savepoint; when it fails, nothing it
/// wrote stays, and the next write starts a clean transaction of its own.
#[test]
fn a_failing_write_alone_in_its_transaction_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(dir.path()).unwrap();
    let failed = storage.write("demo", |tx| -> Result<(), StorageError> {
        tx.put_op("op-1", &op_of(), 0)?;
        tx.put_record(&stored("a", 1, 1))?;
        Err(StorageError::Corrupt("refused".into()))
    });
    assert!(matches!(failed, Err(StorageError::Corrupt(_))));
    assert_eq!(storage.commits(), 0, "nothing to commit");
    storage
        .write("demo", |tx| tx.put_op("op-2", &op_of(), 0))
        .unwrap();
    drop(storage);
    let storage = SqliteStorage::open(dir.path()).unwrap();
    assert_eq!(known_ops(&storage, &["op-1"]), 0);
    assert_eq!(known_ops(&storage, &["op-2"]), 1);
    assert!(wire_page(&storage, 0, 10).is_empty());
}

fn latest_seq(storage: &SqliteStorage) -> u64 {
    storage.read("demo", |tx| tx.meta()).unwrap().latest_seq
}

/// A write hands out consecutive change sequence numbers, `meta` sees the latest one at
/// once, and the Space stores it with the commit; a failed write's numbers are not kept.
#[test]
fn change_sequence_numbers_continue_across_writes_and_only_committed_ones_count() {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(dir.path()).unwrap();
    let handed = storage
        .write("demo", |tx| {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let seq = tx.next_change_seq()?;
                assert_eq!(tx.meta()?.latest_seq, seq);
                seen.push(seq);
            }
            Ok(seen)
        })
        .unwrap();
    assert_eq!(handed, [1, 2, 3]);
    assert_eq!(latest_seq(&storage), 3);
    let failed = storage.write("demo", |tx| -> Result<(), StorageError> {
        assert_eq!(tx.next_change_seq()?, 4);
        Err(StorageError::Corrupt("refused".into()))
    });
    assert!(failed.is_err());
    assert_eq!(latest_seq(&storage), 3);
    // The horizon's row update in the same write keeps the stored number.
    storage
        .write("demo", |tx| {
            assert_eq!(tx.next_change_seq()?, 4);
            tx.compact(&"000000000001-0000-n".parse().unwrap(), 0)
                .map(|_| ())
        })
        .unwrap();
    drop(storage);
    let storage = SqliteStorage::open(dir.path()).unwrap();
    assert_eq!(latest_seq(&storage), 4);
}

/// Once the log has grown by [`checkpoint::CHECKPOINT_FRAMES`] pages, the checkpoint thread
/// copies it into the database file (no COMMIT does), and every write is still there.
#[test]
fn the_checkpoint_thread_copies_the_log_once_it_has_grown() {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(dir.path()).unwrap();
    let big = "x".repeat(5000);
    let write = |from: usize| {
        storage
            .write("demo", |tx| {
                for i in from..from + 50 {
                    let mut r = stored(&format!("r{i:05}"), i as u64 + 1, i as i64);
                    r.view
                        .value
                        .as_mut()
                        .unwrap()
                        .insert("body".into(), big.clone().into());
                    tx.put_record(&r)?;
                }
                Ok(())
            })
            .unwrap()
    };
    write(0);
    assert_eq!(
        storage.checkpointer().done(),
        0,
        "a small log is left alone"
    );
    // Each Record's row takes two pages or more: 30 writes of 50 pass 1,000 pages.
    for n in 1..30 {
        write(n * 50);
    }
    assert!(
        storage
            .checkpointer()
            .wait_done(1, std::time::Duration::from_secs(60)),
        "no checkpoint ran"
    );
    assert_eq!(wire_page(&storage, 0, 2000).len(), 1500);
    drop(storage);
    let storage = SqliteStorage::open(dir.path()).unwrap();
    assert_eq!(wire_page(&storage, 0, 2000).len(), 1500);
}
