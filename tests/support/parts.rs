//! Reading one large source transaction through the `Source` API batch after batch, as
//! the log-reading modes return it: in parts, each position inside it at its start with
//! the row changes already read; and rows a log gave checked against reads by key.

use ebis::pipeline::AnySource;
use ebis_source::{Change, Op, Position, Source, Value};
use std::collections::BTreeSet;

/// Asserts that every change of `changes` to `table`, but those to keys whose first
/// value is in `changed_since`, carries the row a read by key gives now (a row taken
/// from a log reads as a read by key reads it).
pub async fn assert_rows_read_alike(
    source: &mut AnySource,
    table: &str,
    changes: &[Change],
    changed_since: &[Value],
) {
    for c in changes {
        if changed_since.contains(&c.key[0]) {
            continue;
        }
        let read = source
            .rows_by_keys(table, std::slice::from_ref(&c.key), c.version)
            .await
            .expect("read by key");
        assert_eq!(read.len(), 1, "key {:?} read", c.key);
        assert_eq!(read[0].row, c.row, "key {:?}", c.key);
    }
}

/// What the reads returned.
pub struct Parts {
    /// Batches that held changes.
    pub parts: usize,
    /// Positions inside the transaction: (its start, row changes read).
    pub inside: Vec<(u64, u64)>,
    /// Keys whose last change returned was an upsert, and those whose last was a delete
    /// (what the warehouse holds after the reads: a row inserted and deleted inside the
    /// transaction may come first as its insert's image, then as a delete).
    pub upserted: BTreeSet<String>,
    pub deleted: BTreeSet<String>,
    /// Where the reads ended.
    pub end: Position,
}

/// Reads from `head` in batches of `batch` until a batch is empty. `inside` says where a
/// position lies inside a transaction; `reopen`, asked after each part, may hand a new
/// reader to go on with (a restart from the position reached).
pub async fn read_in_parts(
    mut source: AnySource,
    head: Position,
    batch: usize,
    inside: impl Fn(&Position) -> Option<(u64, u64)>,
    mut reopen: impl FnMut(usize) -> Option<AnySource>,
) -> Parts {
    let mut found = Parts {
        parts: 0,
        inside: Vec::new(),
        upserted: BTreeSet::new(),
        deleted: BTreeSet::new(),
        end: head,
    };
    loop {
        let read = source.changes(&found.end, batch).await.expect("a poll");
        if read.changes.is_empty() {
            break;
        }
        found.parts += 1;
        assert!(
            read.changes.len() <= 2 * batch,
            "a part holds about a batch"
        );
        let within = inside(&read.position);
        // A part that stops inside the transaction leaves more to read: it must not
        // say the source is read up to now (the runner would report the bureau complete,
        // and the comparison trust it, while the rest of the transaction is unread).
        assert!(
            within.is_none() || read.read_at.is_none(),
            "part {} stops inside the transaction yet says the source is read up to now",
            found.parts
        );
        found.inside.extend(within);
        for ch in &read.changes {
            let id = ch.key[0].to_text().expect("key");
            match ch.op {
                Op::Upsert => {
                    found.deleted.remove(&id);
                    found.upserted.insert(id)
                }
                Op::Delete => {
                    found.upserted.remove(&id);
                    found.deleted.insert(id)
                }
            };
        }
        found.end = read.position;
        if let Some(next) = reopen(found.parts) {
            std::mem::replace(&mut source, next).close().await;
        }
        assert!(found.parts < 100, "the reads make progress");
    }
    source.close().await;
    found
}

impl Parts {
    /// The checks of the tests' transaction — 6,000 inserts, 500 renames and 50
    /// deletes against batches of 500: many parts, those inside it at one start and
    /// further into it each time, every key ending as the transaction left it.
    pub fn assert_the_transaction_landed_whole(&self) {
        assert!(
            self.parts >= 12,
            "6,000 keys in parts of 500: {} part(s)",
            self.parts
        );
        assert!(
            self.inside.len() >= 10,
            "parts inside the transaction: {:?}",
            self.inside
        );
        assert!(
            self.inside
                .windows(2)
                .all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1),
            "each part inside the transaction stays at its start, further into it: {:?}",
            self.inside
        );
        assert_eq!(
            self.upserted.len(),
            5_950,
            "every inserted row that is still there"
        );
        assert_eq!(self.deleted.len(), 50, "the deleted rows, as deletes");
    }
}
