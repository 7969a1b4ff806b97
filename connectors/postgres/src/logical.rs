//! Logical-decoding capture on PostgreSQL: a publication names the captured tables, a
//! logical replication slot keeps their changes, and each poll peeks the slot over an
//! ordinary connection (`pg_logical_slot_peek_binary_changes`, pgoutput protocol 1)
//! instead of holding a replication connection open — the same polling shape as every
//! other mode (CRATES.md §1). The messages are decoded by pg_walstream's parser.
//!
//! The log says which rows changed, and mostly what they became: an insert's or an
//! update's new tuple gives the row as the select list reads it (`crate::tuple`), a
//! delete (or the old tuple of an update that moved a row to another key) that the row
//! is gone. Rows a tuple cannot give exactly (a mapping's expression, a `timestamptz`, an
//! unchanged TOASTed value, …) are read by key, whole and current, as changelog capture
//! reads them (`ebis_capture::changelog::read_latest`): a key whose row is gone is a
//! delete. Columns are found by name from each Relation message, so a column added
//! mid-stream never shifts which value is the key or a column.
//!
//! Positions are the end of a commit (an LSN), so a resume never starts inside a
//! transaction; one larger than a batch is read in parts, the position staying at its
//! start with the count of row changes already read (`skip`). The slot is advanced only
//! to a position the pipeline has acknowledged as stored in the warehouse with the
//! changes before it (at least once: a crash replays, never skips); a peek starts at
//! the slot's confirmed position and passes over transactions before the one asked from,
//! so the pipeline may read ahead of its apply. A slot that is gone,
//! invalidated (its WAL removed, `max_slot_wal_keep_size`), or confirmed past the stored
//! position (advanced or recreated by someone else) expires the position: the pipeline
//! snapshots the source again, and `head` makes a new slot where the account may.

use crate::PostgresSource;
use crate::error::classify;
use crate::table::Table;
use crate::tuple::TupleRead;
use crate::values::from_text;
use chrono::{DateTime, Utc};
use ebis_capture::changelog::{Latest, Logged, VISIBLE_TIMEOUT, VisibleWait, read_latest};
use ebis_source::{Batch, Position, SourceError, Value, key_text};
use futures_util::StreamExt;
use pg_walstream::{LogicalReplicationMessage as Message, LogicalReplicationParser, TupleData};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// How long `head` waits for transactions in the middle of committing before it looks
/// only at those the commit log already shows committed.
const SETTLE: Duration = Duration::from_secs(5);

/// The slot as the server reports it.
struct SlotState {
    confirmed: Option<u64>,
    /// `wal_status` (PostgreSQL 13+): `lost` once its WAL is gone.
    lost: bool,
    /// A session holds it now (reading it), and which.
    active: bool,
    holder: Option<i32>,
}

async fn slot_state(client: &Client, slot: &str) -> Result<Option<SlotState>, SourceError> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text, to_jsonb(s) ->> 'wal_status', active, active_pid
             FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| classify(e, None))?;
    Ok(row.map(|r| SlotState {
        confirmed: r
            .get::<_, Option<String>>(0)
            .and_then(|t| Position::parse_lsn(&t)),
        lost: r.get::<_, Option<String>>(1).as_deref() == Some("lost"),
        active: r.get(2),
        holder: r.get(3),
    }))
}

/// Moves the slot's confirmed position up to `lsn` (never back): the server may then
/// free the WAL before it.
pub(crate) async fn advance(client: &Client, slot: &str, lsn: u64) -> Result<(), SourceError> {
    let Some(state) = slot_state(client, slot).await? else {
        return Ok(());
    };
    if state.confirmed.is_some_and(|c| c >= lsn) {
        return Ok(());
    }
    client
        .query(
            "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
            &[&slot, &Position::lsn_text(lsn)],
        )
        .await
        .map_err(|e| classify(e, None))?;
    Ok(())
}

/// The WAL the slot keeps the server from removing, in bytes (`None`: no slot).
pub(crate) async fn retained(client: &Client, slot: &str) -> Result<Option<u64>, SourceError> {
    let row = client
        .query_opt(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| classify(e, None))?;
    Ok(row
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .map(|b| u64::try_from(b).unwrap_or(0)))
}

/// What one peek collected.
struct Collected {
    /// The newest change per (table, key), in order.
    latest: Vec<Latest>,
    /// Where the next read starts.
    position: Position,
    /// The peek ended because the slot had nothing more.
    drained: bool,
    /// The stream has ended (polled again, it would fail): the next read opens another.
    ended: bool,
    /// The stream's start (see [`Cursor::started_at`]).
    started_at: DateTime<Utc>,
    /// The transactions whose keys `latest` holds: read by key only once new snapshots
    /// see them ([`wait_visible`]).
    xids: Vec<u32>,
}

/// A relation that is a captured table: which, where its key columns are in its tuples,
/// and how its tuples read as rows (`None`: its rows are read by key).
struct Placed {
    table: usize,
    keys: Vec<usize>,
    rows: Option<TupleRead>,
}

/// A relation's place: `None` for one not captured.
type Place = Option<Placed>;

/// The place of a relation, by its oid (a table renamed keeps it, and keeps being
/// published), from its Relation message's columns (names and type oids); a captured
/// table whose key column the log does not name any more (renamed or dropped) is an
/// error naming it, never a table silently passed over.
fn place(tables: &[Table], oid: u32, columns: &[(&str, u32)]) -> Result<Place, SourceError> {
    let Some(index) = tables.iter().position(|t| t.located.oid == oid) else {
        return Ok(None);
    };
    let t = &tables[index];
    let mut keys = Vec::with_capacity(t.key_names.len());
    for k in &t.key_names {
        match columns.iter().position(|(c, _)| c == k) {
            Some(p) => keys.push(p),
            None => {
                return Err(SourceError::MissingColumn {
                    table: t.plan.table.clone(),
                    column: k.clone(),
                });
            }
        }
    }
    let rows = t
        .column_readings()
        .and_then(|select| TupleRead::new(&select, columns));
    Ok(Some(Placed {
        table: index,
        keys,
        rows,
    }))
}

/// The key values of a tuple, read as the table's select list reads its key columns;
/// `None` when the tuple does not hold them (an old tuple of a replica identity without
/// the key).
fn key_of(t: &Table, positions: &[usize], tuple: &TupleData) -> Option<Vec<Value>> {
    positions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let c = tuple.get_column(*p)?;
            if c.is_null() || c.is_unchanged() {
                return None;
            }
            Some(from_text(t.key_reading(i), &c.as_str()?))
        })
        .collect()
}

/// Collects keys in a batch, the newest entry per key winning.
#[derive(Default)]
struct Keys {
    latest: Vec<Latest>,
    at: HashMap<(usize, String), usize>,
    order: i64,
    /// The transactions the keys come from, each once.
    xids: Vec<u32>,
}

impl Keys {
    /// The newest change of `key`, with the row's state as the log gave it, if it did.
    fn push(
        &mut self,
        table: usize,
        key: Vec<Value>,
        when: Option<DateTime<Utc>>,
        xid: u32,
        logged: Option<Logged>,
    ) {
        if self.xids.last() != Some(&xid) {
            self.xids.push(xid);
        }
        self.order += 1;
        let entry = Latest::new(table, key, self.order, when).logged(logged);
        match self.at.get(&(table, entry.key_text.clone())) {
            Some(i) => self.latest[*i] = entry,
            None => {
                self.at
                    .insert((table, key_text(&entry.key)), self.latest.len());
                self.latest.push(entry);
            }
        }
    }
}

/// A peek of the slot, kept open between polls.
pub(crate) struct Cursor {
    /// The connection the stream runs on (closing it ends the server's decoding).
    peek: Client,
    rows: std::pin::Pin<Box<tokio_postgres::RowStream>>,
    parser: LogicalReplicationParser,
    /// Relations the stream has described, by oid.
    places: HashMap<u32, Place>,
    /// Where the transaction being read starts (the end of the last commit read).
    start: u64,
    /// No transaction begun yet in this stream (the first one may be partly read).
    first: bool,
    /// The position the stream was asked from: transactions whose commit starts before
    /// it are passed over (the slot is confirmed only up to a stored position).
    floor: u64,
    /// The transaction being passed over is one of those.
    behind: bool,
    /// Row changes of the first transaction already returned before this stream.
    skip: u64,
    /// The transaction's commit time.
    when: Option<DateTime<Utc>>,
    /// The transaction's id.
    xid: u32,
    /// Row changes of the transaction read so far.
    in_txn: u64,
    /// Row changes of the transaction to pass over (read by an earlier stream).
    pass: u64,
    /// The end of the last commit read (or the stream's start).
    position: Position,
    /// Rows the stream has returned, and how many it was asked for.
    read: u64,
    asked: u64,
    /// The position the last batch read from this stream returned.
    pub(crate) returned: Position,
    /// The source's clock before the stream began: every change committed before it is
    /// in the stream (or was read before).
    started_at: DateTime<Utc>,
}

impl Cursor {
    /// Reads on, collecting about `limit` changed keys.
    async fn read(
        &mut self,
        tables: &[Table],
        limit: usize,
        slot: &str,
        publication: &str,
    ) -> Result<Collected, SourceError> {
        let mut keys = Keys::default();
        let mut returned: u64 = 0;
        let limit = limit as u64;
        while let Some(row) = self.rows.next().await {
            let row = row.map_err(|e| peek_error(e, slot, publication))?;
            self.read += 1;
            let data: &[u8] = row.get(0);
            let message = self
                .parser
                .parse_wal_message(data)
                .map_err(|e| SourceError::Query(format!("undecodable pgoutput message: {e}")))?
                .message;
            // A row change: the old tuple (a delete's; an update's when its key changed,
            // or for every update of a table with REPLICA IDENTITY FULL) says the row at
            // its key is gone, the new one what the row became.
            let mut changed =
                |relation_id: u32, old: Option<&TupleData>, new: Option<&TupleData>| {
                    if self.behind {
                        return Ok(());
                    }
                    self.in_txn += 1;
                    if self.in_txn <= self.pass {
                        return Ok(());
                    }
                    if let Some(Some(placed)) = self.places.get(&relation_id) {
                        let table = &tables[placed.table];
                        // An update's old tuple may lack the key; a delete's must hold it.
                        match (old.and_then(|tp| key_of(table, &placed.keys, tp)), new) {
                            (Some(key), _) => {
                                let gone = Some(Logged::Deleted);
                                keys.push(placed.table, key, self.when, self.xid, gone);
                            }
                            (None, None) => return Err(no_key(table)),
                            (None, Some(_)) => {}
                        }
                        if let Some(tuple) = new {
                            let key =
                                key_of(table, &placed.keys, tuple).ok_or_else(|| no_key(table))?;
                            let row = placed.rows.as_ref().and_then(|r| r.row(tuple));
                            let logged = row.map(Logged::Row);
                            keys.push(placed.table, key, self.when, self.xid, logged);
                        }
                        returned += 1;
                    }
                    Ok(())
                };
            match message {
                Message::Begin {
                    final_lsn,
                    timestamp,
                    xid,
                } => {
                    // The slot starts at its confirmed position, which may lie before the
                    // one asked from: a transaction whose commit starts before that
                    // position was read already.
                    self.behind = final_lsn < self.floor;
                    if self.behind {
                        continue;
                    }
                    self.when = DateTime::from_timestamp_micros(timestamp + PG_EPOCH_MICROS);
                    self.xid = xid;
                    self.in_txn = 0;
                    self.pass = if self.first { self.skip } else { 0 };
                    self.first = false;
                }
                Message::Relation {
                    relation_id,
                    columns,
                    ..
                } => {
                    let named: Vec<(&str, u32)> = columns
                        .iter()
                        .map(|c| (c.name.as_ref(), c.type_id))
                        .collect();
                    self.places
                        .insert(relation_id, place(tables, relation_id, &named)?);
                }
                Message::Insert { relation_id, tuple } => changed(relation_id, None, Some(&tuple))?,
                Message::Update {
                    relation_id,
                    old_tuple,
                    new_tuple,
                    ..
                } => changed(relation_id, old_tuple.as_ref(), Some(&new_tuple))?,
                Message::Delete {
                    relation_id,
                    old_tuple,
                    ..
                } => changed(relation_id, Some(&old_tuple), None)?,
                // A TRUNCATE the warehouse has been snapshotted past is no news.
                Message::Truncate { relation_ids, .. } if !self.behind => {
                    if let Some(t) = relation_ids
                        .iter()
                        .find_map(|r| self.places.get(r).and_then(|p| p.as_ref()))
                    {
                        return Err(SourceError::PositionExpired(format!(
                            "captured table {} was truncated at the source (the log holds no rows for it)",
                            tables[t.table].plan.table
                        )));
                    }
                }
                Message::Commit { .. } if self.behind => {
                    self.behind = false;
                    continue;
                }
                Message::Commit { end_lsn, .. } => {
                    self.start = end_lsn;
                    self.position = Position::Logical {
                        lsn: end_lsn,
                        skip: 0,
                    };
                    if returned >= limit {
                        return Ok(Collected {
                            latest: keys.latest,
                            position: self.position.clone(),
                            drained: false,
                            ended: false,
                            started_at: self.started_at,
                            xids: keys.xids,
                        });
                    }
                    continue;
                }
                _ => {}
            }
            if returned >= limit && self.in_txn > self.pass {
                // A transaction larger than the batch: stop inside it, at its start.
                return Ok(Collected {
                    latest: keys.latest,
                    position: Position::Logical {
                        lsn: self.start,
                        skip: self.in_txn,
                    },
                    drained: false,
                    ended: false,
                    started_at: self.started_at,
                    xids: keys.xids,
                });
            }
        }
        // The server stops after the transaction in which it had produced as many rows
        // as asked: fewer means the slot has nothing more now.
        Ok(Collected {
            latest: keys.latest,
            position: self.position.clone(),
            drained: self.read < self.asked,
            ended: true,
            started_at: self.started_at,
            xids: keys.xids,
        })
    }
}

impl PostgresSource {
    /// The position from which nothing committed later can be missed by a snapshot
    /// started now: the position up to which WAL is flushed, once every transaction that
    /// may have written its commit record before it is visible to new snapshots. (A
    /// transaction is visible only after its commit record is written and, with
    /// synchronous replication, its standby has confirmed; a snapshot taken in between
    /// would miss it while the position says it was already read.) Makes the slot first
    /// if it is missing or invalidated.
    pub(crate) async fn logical_head(&mut self, slot: &str) -> Result<Position, SourceError> {
        let client = self.client()?;
        match slot_state(client, slot).await? {
            Some(s) if !s.lost => {}
            found if self.reading_only => {
                return Err(SourceError::CaptureNotInstalled(format!(
                    "replication slot {slot} {}: `ebis run` makes it anew and snapshots the source again (or run `ebis setup-source` for this source)",
                    if found.is_some() {
                        "was invalidated (its WAL is gone)"
                    } else {
                        "does not exist"
                    }
                )));
            }
            found => {
                if found.is_some() {
                    tracing::warn!(source = %self.name, slot, "the replication slot was invalidated (its WAL is gone): making it again");
                    client
                        .query("SELECT pg_drop_replication_slot($1)", &[&slot])
                        .await
                        .map_err(|e| classify(e, None))?;
                }
                tracing::info!(source = %self.name, slot, "making the replication slot");
                client
                    .query(
                        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                        &[&slot],
                    )
                    .await
                    .map_err(|e| match classify(e, None) {
                        SourceError::Query(m) => SourceError::CaptureNotInstalled(format!(
                            "replication slot {slot} does not exist and ebis could not make it ({m}): run `ebis setup-source` for this source, or give the account the REPLICATION attribute"
                        )),
                        other => other,
                    })?;
            }
        }
        let lsn = flushed(client).await?;
        let in_flight = running(client).await?;
        let started = Instant::now();
        loop {
            let still = running(client).await?;
            let mut waiting: Vec<i64> = in_flight
                .iter()
                .filter(|x| still.contains(x))
                .copied()
                .collect();
            if started.elapsed() >= SETTLE && !waiting.is_empty() {
                // Still running after a while: only those the commit log shows committed
                // (waiting for a standby, say) can have a commit record before `lsn`.
                let rows = client
                    .query(
                        "SELECT x FROM unnest($1::int8[]) AS x WHERE txid_status(x) = 'committed'",
                        &[&waiting],
                    )
                    .await
                    .map_err(|e| classify(e, None))?;
                waiting = rows.iter().map(|r| r.get(0)).collect();
            }
            if waiting.is_empty() {
                return Ok(Position::Logical { lsn, skip: 0 });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Changes committed after `lsn`, passing over the first `skip` row changes of the
    /// transaction there: about `limit` keys, their rows read by key. Asked for the
    /// position the last read returned, it reads on from the slot's stream that read left
    /// open (a transaction of a million rows is decoded once, not once per batch).
    pub(crate) async fn logical_changes(
        &mut self,
        lsn: u64,
        skip: u64,
        limit: usize,
        slot: &str,
        publication: &str,
    ) -> Result<Batch, SourceError> {
        self.tables().await?;
        let after = Position::Logical { lsn, skip };
        let reading_on = self.cursor.as_ref().is_some_and(|c| c.returned == after);
        let mut wal = 0;
        if !reading_on {
            // Every change committed before this instant is in a peek that starts after it.
            let now = Self::clock_on(self.client()?).await?.utc;
            // The WAL flushed now: when a peek from this same position found nothing and
            // no WAL has been written since, nothing can have committed — no need to ask
            // (each peek writes lines to the server's log).
            wal = flushed(self.client()?).await?;
            if self.quiet.as_ref() == Some(&(after.clone(), wal)) {
                return Ok(Batch {
                    changes: Vec::new(),
                    position: after,
                    gap_events: Vec::new(),
                    read_at: Some(now),
                });
            }
            self.quiet = None;
            // A stream left at another position (a retry, a restart) is closed with its
            // connection: the server stops decoding for it and lets go of the slot.
            self.cursor = None;
            self.open_cursor(lsn, skip, limit, slot, publication, now)
                .await?;
        }
        let tables = self.tables.as_deref().unwrap_or(&[]);
        let Some(cursor) = self.cursor.as_mut() else {
            return Err(SourceError::Unreachable(
                "the slot's stream closed".to_owned(),
            ));
        };
        let collected = match cursor.read(tables, limit, slot, publication).await {
            Ok(c) => c,
            Err(e) => {
                self.cursor = None;
                return Err(e);
            }
        };
        if collected.ended {
            // A stream that ended leaves its connection idle: the next one reuses it.
            self.peek_client = self.cursor.take().map(|c| c.peek);
            // A fresh peek (the WAL flushed before it is known) that found nothing.
            if !reading_on
                && collected.drained
                && collected.latest.is_empty()
                && collected.position == after
            {
                self.quiet = Some((after.clone(), wal));
            }
        } else if let Some(c) = self.cursor.as_mut() {
            c.returned = collected.position.clone();
        }
        let version = match &collected.position {
            Position::Logical { lsn, .. } => i64::try_from(*lsn).unwrap_or(i64::MAX),
            _ => 0,
        };
        let changes = if collected.latest.is_empty() {
            Vec::new()
        } else {
            let by_key = collected
                .latest
                .iter()
                .filter(|l| l.logged.is_none())
                .count();
            tracing::debug!(
                source = %self.name,
                from_tuples = collected.latest.len() - by_key,
                read_by_key = by_key,
                "logical batch"
            );
            // Rows the log gave are as their transactions wrote them; only a read by key
            // must wait until a new snapshot sees those transactions.
            if by_key > 0 {
                wait_visible(self.client()?, &collected.xids, &self.name).await?;
            }
            read_latest(
                &mut crate::changelog::Reader::new(self)?,
                collected.latest,
                version,
            )
            .await?
        };
        Ok(Batch {
            changes,
            position: collected.position,
            gap_events: Vec::new(),
            read_at: collected.drained.then_some(collected.started_at),
        })
    }

    /// Checks the slot still holds what comes after the stored position `lsn`, lets it
    /// go of everything before, and opens a stream of its changes on a connection of its
    /// own.
    async fn open_cursor(
        &mut self,
        lsn: u64,
        skip: u64,
        limit: usize,
        slot: &str,
        publication: &str,
        started_at: DateTime<Utc>,
    ) -> Result<(), SourceError> {
        let client = self.client()?;
        let stored = Position::Logical { lsn, skip }.summary();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match slot_state(client, slot).await? {
                None => {
                    return Err(SourceError::PositionExpired(format!(
                        "replication slot {slot} does not exist any more (dropped while ebis was not reading it)"
                    )));
                }
                Some(s) if s.lost => {
                    return Err(SourceError::PositionExpired(format!(
                        "replication slot {slot} was invalidated: the server removed WAL it still needed (max_slot_wal_keep_size)"
                    )));
                }
                Some(SlotState {
                    confirmed: Some(c), ..
                }) if c > lsn => {
                    return Err(SourceError::PositionExpired(format!(
                        "replication slot {slot} is confirmed up to {}, past the stored position {stored}: the changes in between are gone (the slot was advanced or made anew by someone else)",
                        Position::lsn_text(c)
                    )));
                }
                // Our own stream just closed: its session lets go of the slot soon.
                Some(s) if s.active && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(s) if s.active => {
                    return Err(SourceError::Transient(format!(
                        "replication slot {slot} is held by another session (pid {}): is a second ebis reading this source?",
                        s.holder.unwrap_or_default()
                    )));
                }
                Some(_) => break,
            }
        }
        // The slot may let go of everything before the newest position the pipeline has
        // said is stored (it may ask from a newer one, read ahead of its apply).
        if let Some(stored) = self.stored.filter(|s| *s <= lsn) {
            advance(client, slot, stored).await?;
        }
        // The connection of the last stream, when that stream ended cleanly.
        let peek = match self.peek_client.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => crate::connect(&self.url, self.password.as_deref(), &self.tls).await?,
        };
        // The server stops after the transaction in which this many rows were produced;
        // the stream stays open across batches, so ask for several.
        let asked = i32::try_from((limit as u64).saturating_mul(8) + skip).unwrap_or(i32::MAX);
        let params: [&(dyn ToSql + Sync); 3] = [&slot, &asked, &publication];
        let rows = peek
            .query_raw(
                "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2,
                     'proto_version', '1', 'publication_names', $3)",
                params,
            )
            .await
            .map_err(|e| peek_error(e, slot, publication))?;
        self.cursor = Some(Box::new(Cursor {
            peek,
            rows: Box::pin(rows),
            parser: LogicalReplicationParser::with_protocol_version(1),
            places: HashMap::new(),
            start: lsn,
            first: true,
            floor: lsn,
            behind: false,
            skip,
            when: None,
            in_txn: 0,
            xid: 0,
            pass: 0,
            position: Position::Logical { lsn, skip },
            read: 0,
            asked: u64::try_from(asked).unwrap_or(0),
            returned: Position::Logical { lsn, skip },
            started_at,
        }));
        Ok(())
    }

    /// Checks logical capture can run: `wal_level = logical`, an account that may use
    /// replication slots, the publication holding every captured table, and a replica
    /// identity that logs each table's key for deletes.
    pub(crate) async fn check_logical(
        &mut self,
        slot: &str,
        publication: &str,
    ) -> Result<(), SourceError> {
        let client = self.client()?;
        let row = client
            .query_one(
                "SELECT current_setting('wal_level'),
                        (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user),
                        EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
                        coalesce((SELECT (to_jsonb(p) ->> 'pubviaroot')::bool FROM pg_publication p
                                  WHERE pubname = $1), false)",
                &[&publication],
            )
            .await
            .map_err(|e| classify(e, None))?;
        let wal_level: String = row.get(0);
        let may_replicate: bool = row.get::<_, Option<bool>>(1).unwrap_or(false);
        let published: bool = row.get(2);
        let via_root: bool = row.get(3);
        let mut missing = Vec::new();
        if wal_level != "logical" {
            missing.push(format!(
                "wal_level is {wal_level}: set wal_level = logical in postgresql.conf and restart the server"
            ));
        }
        if !may_replicate {
            missing.push(
                "the account may not use replication slots: ALTER ROLE <reader> REPLICATION"
                    .to_owned(),
            );
        }
        if !published {
            missing.push(format!(
                "publication {publication} does not exist: run `ebis setup-source` for this source"
            ));
        } else {
            let listed: Vec<(String, String)> = client
                .query(
                    "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
                    &[&publication],
                )
                .await
                .map_err(|e| classify(e, None))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            for t in self.tables.iter().flatten() {
                if !listed
                    .iter()
                    .any(|(s, n)| *s == t.located.schema && *n == t.located.name)
                {
                    missing.push(format!(
                        "publication {publication} does not hold table {}: run `ebis setup-source` for this source",
                        t.plan.table
                    ));
                }
            }
        }
        for t in self.tables.iter().flatten() {
            // A partitioned table's changes are published under its partitions unless
            // the publication says otherwise: they would match no captured table.
            if published && t.located.partitioned && !via_root {
                missing.push(format!(
                    "table {} is partitioned and publication {publication} publishes its partitions' changes under their own names: ALTER PUBLICATION {publication} SET (publish_via_partition_root = true) (PostgreSQL 13+; `ebis setup-source` sets it)",
                    t.plan.table
                ));
            }
            if let Some(k) = t.key_names.iter().find(|k| !t.identity.contains(k)) {
                missing.push(format!(
                    "table {}'s replica identity does not log key column {k} for deletes: ALTER TABLE {} REPLICA IDENTITY FULL (or USING INDEX an index on the key)",
                    t.plan.table, t.quoted
                ));
            }
        }
        if let Some(s) = slot_state(client, slot).await?
            && s.lost
        {
            tracing::warn!(source = %self.name, slot, "the replication slot was invalidated: the next snapshot makes it again");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SourceError::CaptureNotInstalled(missing.join("; ")))
        }
    }
}

/// The position up to which the server has flushed WAL.
async fn flushed(client: &Client) -> Result<u64, SourceError> {
    let lsn: String = client
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .await
        .map_err(|e| classify(e, None))?
        .get(0);
    Position::parse_lsn(&lsn)
        .ok_or_else(|| SourceError::Query(format!("unreadable WAL position {lsn}")))
}

/// Whether a snapshot taken now sees every transaction of `$1` (32-bit ids, as pgoutput
/// gives them, widened with the epoch of the snapshot's xmax: the nearest such id).
const VISIBLE: &str = "SELECT coalesce(bool_and(txid_visible_in_snapshot(
        CASE WHEN f > xm + 2147483648 THEN f - 4294967296
             WHEN f < xm - 2147483648 THEN f + 4294967296 ELSE f END, s)), true)
    FROM (SELECT txid_current_snapshot() AS s) snap,
         LATERAL (SELECT txid_snapshot_xmax(s) AS xm) m,
         LATERAL (SELECT ((xm >> 32) << 32) | x AS f FROM unnest($1::bigint[]) AS x) u";

/// Waits until snapshots taken from now on see every transaction of `xids`.
///
/// A transaction is decoded once its commit record is flushed, a moment before it is
/// visible to other sessions (its end in the process array comes after; with
/// synchronous replication, after the standby confirmed). A row read by key at once
/// could be missing (taken for a delete: a lost insert) or old.
async fn wait_visible(client: &Client, xids: &[u32], source: &str) -> Result<(), SourceError> {
    if xids.is_empty() {
        return Ok(());
    }
    let wide: Vec<i64> = xids.iter().map(|x| i64::from(*x)).collect();
    let mut wait = VisibleWait::default();
    loop {
        let visible: bool = client
            .query_one(VISIBLE, &[&wide])
            .await
            .map_err(|e| classify(e, None))?
            .get(0);
        if visible {
            break;
        }
        if !wait.again().await {
            return Err(SourceError::Unreachable(format!(
                "transactions the replication slot decoded are not visible after {} s (commits waiting for a synchronous standby?); reading again",
                VISIBLE_TIMEOUT.as_secs()
            )));
        }
    }
    if wait.waited_ms() > 0 {
        tracing::debug!(
            source,
            waited_ms = wait.waited_ms(),
            "waited for decoded transactions to become visible"
        );
    }
    Ok(())
}

/// The transactions running now (their ids, from a fresh snapshot).
async fn running(client: &Client) -> Result<Vec<i64>, SourceError> {
    Ok(client
        .query(
            "SELECT x FROM txid_snapshot_xip(txid_current_snapshot()) AS x",
            &[],
        )
        .await
        .map_err(|e| classify(e, None))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// A peek error: a slot that is gone or lost expires the position.
fn peek_error(e: tokio_postgres::Error, slot: &str, publication: &str) -> SourceError {
    let message = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    if message.contains("does not exist") && message.contains("replication slot") {
        return SourceError::PositionExpired(format!(
            "replication slot {slot} does not exist any more"
        ));
    }
    if message.contains("can no longer get changes") || message.contains("has been invalidated") {
        return SourceError::PositionExpired(format!(
            "replication slot {slot} was invalidated: the server removed WAL it still needed"
        ));
    }
    if message.contains("publication") && message.contains("does not exist") {
        return SourceError::CaptureNotInstalled(format!(
            "publication {publication} does not exist: run `ebis setup-source` for this source"
        ));
    }
    classify(e, None)
}

fn no_key(t: &Table) -> SourceError {
    SourceError::CaptureNotInstalled(format!(
        "the log holds no key for a change of table {}: its replica identity must log the key columns ({})",
        t.plan.table,
        t.key_names.join(", ")
    ))
}
