//! Binlog capture on MySQL/MariaDB: the server's row-based binary log read as a replica
//! reads it (`COM_BINLOG_DUMP`, non-blocking: each poll reads from the stored position to
//! the end of the log, or to the batch's size, and the server closes the stream).
//!
//! The log says which rows changed and, in its full row images, what they became: where
//! an image gives exactly what a read of the row by key would (see `image`), the row is
//! taken from it (a before image alone is a delete); otherwise the row is read by key,
//! whole and current, as changelog capture reads it
//! (`ebis_capture::changelog::read_latest`): a key whose row is gone is a delete. So
//! mappings read exactly what they read in the other modes (expressions, GBK bytes in
//! latin1 columns), and a change applied twice has no further effect. Columns are found
//! in the log by name (the table map carries the column names when
//! `binlog_row_metadata = FULL`, which `check` requires), so a column added or dropped
//! mid-stream never shifts which value is the key.
//!
//! Positions are (file, offset) at transaction boundaries: a transaction ends at its XID
//! or `COMMIT` event, a DDL statement is a transaction of its own. A transaction larger
//! than a batch is read in parts, the position staying at its start with the count of row
//! changes already read (`skip`). ALTER or RENAME of a captured table makes the connector
//! read the table's columns again (a mapped column gone stops the source, naming it);
//! TRUNCATE or DROP of a captured table, which the log holds as a statement without rows,
//! and a binlog file purged before it was read, make the position unusable: the pipeline
//! snapshots the source again and says why.

use crate::error::classify;
use crate::image::{ImageRead, int24};
use crate::rowimage::{self, Layout};
use crate::table::split_table;
use crate::values::{Reading, convert};
use crate::{MysqlSource, OP_TIMEOUT};
use chrono::{DateTime, Utc};
use ebis_capture::changelog::{Latest, Logged, VISIBLE_TIMEOUT, VisibleWait, read_latest};
use ebis_source::{Batch, Position, SourceError, Value};
use futures_util::StreamExt;
use mysql_async::binlog::EventType;
use mysql_async::binlog::events::{Event, EventData, QueryEvent, RotateEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Column, Conn};
use std::collections::HashMap;

/// MariaDB's GTID event (sent instead of a dummy `BEGIN` once the reader says it
/// understands GTIDs).
const MARIADB_GTID_EVENT: u8 = 0xa2;
/// MariaDB's compressed row and query events (`log_bin_compress = ON`): not decodable.
const MARIADB_COMPRESSED: std::ops::RangeInclusive<u8> = 0xa5..=0xab;
/// The server's error for a dump it cannot serve (a purged or unknown file, a position
/// beyond the end).
const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;

/// The server settings binlog capture needs, with what each must be.
const REQUIRED: [(&str, &str); 4] = [
    ("log_bin", "ON"),
    ("binlog_format", "ROW"),
    ("binlog_row_image", "FULL"),
    ("binlog_row_metadata", "FULL"),
];

/// What is missing for binlog capture, from the server's settings (`SHOW GLOBAL
/// VARIABLES`) and the account's grants (`SHOW GRANTS`); empty when nothing is.
pub fn missing(variables: &HashMap<String, String>, grants: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, want) in REQUIRED {
        match variables.get(name) {
            Some(v) if v.eq_ignore_ascii_case(want) => {}
            Some(v) => out.push(format!("{name} is {v}, must be {want}")),
            None if name == "binlog_row_metadata" => out.push(
                "the server has no binlog_row_metadata (MariaDB 10.5+ or MySQL 8.0+ is needed, for column names in the log)".to_owned(),
            ),
            None => out.push(format!("{name} is not set, must be {want}")),
        }
    }
    if variables
        .get("log_bin_compress")
        .is_some_and(|v| v.eq_ignore_ascii_case("ON"))
    {
        out.push(
            "log_bin_compress is ON, must be OFF (compressed events cannot be read)".to_owned(),
        );
    }
    let upper: Vec<String> = grants.iter().map(|g| g.to_ascii_uppercase()).collect();
    let has = |what: &str| {
        upper
            .iter()
            .any(|g| g.contains("ON *.*") && (g.contains("ALL PRIVILEGES") || g.contains(what)))
    };
    if !has("REPLICATION SLAVE") {
        out.push(
            "the account lacks REPLICATION SLAVE (GRANT REPLICATION SLAVE ON *.* TO …)".to_owned(),
        );
    }
    if !(has("REPLICATION CLIENT") || has("BINLOG MONITOR") || has("SUPER")) {
        out.push(
            "the account lacks REPLICATION CLIENT (MariaDB: BINLOG MONITOR), needed to read the log's position"
                .to_owned(),
        );
    }
    out
}

/// A DDL statement's effect on a captured table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ddl {
    /// Its columns may have changed (ALTER, RENAME): read them again.
    Reload,
    /// Its rows went without row events (TRUNCATE) or it went (DROP): snapshot again.
    Resnapshot,
}

/// What a logged statement does to captured table `name`, run in schema `schema`, the
/// captured table living in `table_schema` (the connection's database when the mapping
/// names none). `None`: nothing that matters (DML logged as a statement is not possible
/// with `binlog_format = ROW`; CREATE and other tables' DDL leave it alone).
pub fn ddl_effect(statement: &str, schema: &str, table_schema: &str, name: &str) -> Option<Ddl> {
    let words = identifiers(statement);
    let first = words.first()?.to_ascii_lowercase();
    let effect = match first.as_str() {
        "alter" | "rename" => Ddl::Reload,
        "truncate" | "drop" => Ddl::Resnapshot,
        _ => return None,
    };
    let names_it = words.iter().any(|w| {
        let (s, t) = match w.split_once('.') {
            Some((s, t)) => (s, t),
            None => (schema, w.as_str()),
        };
        t.eq_ignore_ascii_case(name) && s.eq_ignore_ascii_case(table_schema)
    });
    names_it.then_some(effect)
}

/// The words of a statement with identifier quotes removed (`db`.`t` → db.t); comments
/// and string literals dropped.
fn identifiers(statement: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = statement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                for q in chars.by_ref() {
                    if q == '`' {
                        break;
                    }
                    word.push(q);
                }
            }
            '\'' | '"' => {
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for q in chars.by_ref() {
                    if prev == '*' && q == '/' {
                        break;
                    }
                    prev = q;
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for q in chars.by_ref() {
                    if q == '\n' {
                        break;
                    }
                }
            }
            '#' => {
                for q in chars.by_ref() {
                    if q == '\n' {
                        break;
                    }
                }
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' || c == '.' => word.push(c),
            _ => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// A ROTATE event's file name. The first ROTATE of a stream is the server's own (the
/// file asked for), sent before the format description that says a checksum ends each
/// event: read without knowing that, its name carries the 4 checksum bytes
/// (blackbeam/mysql_async#189), cut off here.
fn rotate_name(raw: &[u8], carries_checksum: bool) -> String {
    let name = if carries_checksum && raw.len() > 4 {
        &raw[..raw.len() - 4]
    } else {
        raw
    };
    String::from_utf8_lossy(name).into_owned()
}

/// A MariaDB GTID event's transaction id: domain-server-sequence.
fn mariadb_gtid(data: &[u8], server_id: u32) -> Option<String> {
    let seq = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    Some(format!("{domain}-{server_id}-{seq}"))
}

/// Character sets whose bytes are GBK-compatible, by the name the catalog gives.
fn is_gb_charset(name: &str) -> bool {
    ["gbk", "gb2312", "gb18030"]
        .iter()
        .any(|gb| name.eq_ignore_ascii_case(gb))
}

/// A key column's value from a row image, as a read of the row by the table's select
/// list returns it (the server converts text to UTF-8 there; here the log holds the
/// column's own bytes, in the column's character set `gb` says is GBK-compatible). The
/// character set comes from the catalog, not from the log's table map: MariaDB's
/// metadata of a table whose text columns follow ENUM or SET columns gave a GBK column
/// the table's default character set, and its keys matched no row.
fn key_value(
    value: &BinlogValue<'_>,
    column: &Column,
    reading: Reading,
    gb: bool,
) -> Result<Value, String> {
    let BinlogValue::Value(v) = value else {
        return Err("a JSON key column".to_owned());
    };
    if let mysql_async::Value::Bytes(b) = v
        && reading == Reading::Plain
        && gb
    {
        let (text, _, bad) = encoding_rs::GB18030.decode(b);
        return Ok(if bad {
            Value::Bytes(b.clone())
        } else {
            Value::Text(text.into_owned())
        });
    }
    if let mysql_async::Value::Int(i) = v
        && column.column_type() == ColumnType::MYSQL_TYPE_INT24
    {
        let unsigned = column.flags().contains(ColumnFlags::UNSIGNED_FLAG);
        return Ok(Value::Int(int24(*i, unsigned)));
    }
    Ok(convert(v.clone(), column, reading))
}

/// A key from its columns' values in an image (in the order of `place.columns`).
fn key_of<'v, 'b: 'v>(
    place: &KeyPlace,
    values: impl Iterator<Item = &'v BinlogValue<'b>>,
    database: &str,
    table: &str,
) -> Result<Vec<Value>, SourceError> {
    let mut key = Vec::with_capacity(place.columns.len());
    let columns = place.described.iter().zip(&place.gb);
    for ((_, reading), (v, (column, gb))) in place.columns.iter().zip(values.zip(columns)) {
        key.push(key_value(v, column, *reading, *gb).map_err(|why| {
            SourceError::Query(format!("{database}.{table}.{}: {why}", column.name_str()))
        })?);
    }
    Ok(key)
}

/// The state an image logs: the row an after image gives (`None` where a value does not
/// convert exactly: the row is then read by key), or a delete for a before image (an
/// update's before image is superseded by its after image when the key stays).
fn logged<'v, 'b: 'v>(
    read: &ImageRead,
    after: bool,
    value: impl FnMut(usize) -> Option<&'v BinlogValue<'b>>,
) -> Option<Logged> {
    if after {
        read.row(value).map(Logged::Row)
    } else {
        Some(Logged::Deleted)
    }
}

/// Where a captured table's key columns are in the log's row images of it.
#[derive(Clone, Debug)]
struct KeyPlace {
    /// The captured table's index.
    table: usize,
    /// Per key column: its position in the image, and how its value is read.
    columns: Vec<(usize, Reading)>,
    /// Per key column: the column as the image describes it (type, flags).
    described: Vec<Column>,
    /// Per key column: whether the catalog says its character set is GBK-compatible.
    gb: Vec<bool>,
    /// How the table's rows are taken from full images, where they can be
    /// ([`Table::image_read`]); `None`: rows are read by key.
    image: Option<ImageRead>,
}

impl KeyPlace {
    /// The key columns' positions in an image.
    fn positions(&self) -> Vec<usize> {
        self.columns.iter().map(|(i, _)| *i).collect()
    }
}

/// What the log's rows of one table id need: where the key is (`None` for a table not
/// captured) and, once a full image was seen, how to walk the next ones.
#[derive(Clone, Debug)]
struct Seen {
    place: Option<KeyPlace>,
    layout: Option<Layout>,
}

/// A transaction being read.
#[derive(Debug)]
struct Txn {
    file: String,
    start: u64,
    /// Row changes seen (of every table, as a resume counts them).
    rows: u64,
    /// Row changes to pass over (read by an earlier part of this batch's position).
    skip: u64,
    keys: Vec<Latest>,
    gtid: Option<String>,
}

impl Txn {
    /// A transaction starting at `start` of `file`; `asked` is where the stream was
    /// opened (file, offset, row changes to pass over there), which applies only to the
    /// transaction starting exactly there.
    fn begin(file: &str, start: u64, asked: &(String, u64, u64), gtid: Option<String>) -> Txn {
        let (asked_file, asked_pos, skip) = asked;
        Txn {
            file: file.to_owned(),
            start,
            rows: 0,
            skip: if file == asked_file && start == *asked_pos {
                *skip
            } else {
                0
            },
            keys: Vec::new(),
            gtid,
        }
    }
}

/// Keys collected for a batch, the newest entry per (table, key).
#[derive(Default)]
struct Collected {
    latest: Vec<Latest>,
    index: HashMap<(usize, String), usize>,
}

impl Collected {
    fn add(&mut self, l: Latest) {
        match self.index.get(&(l.table, l.key_text.clone())) {
            Some(&i) => self.latest[i] = l,
            None => {
                self.index
                    .insert((l.table, l.key_text.clone()), self.latest.len());
                self.latest.push(l);
            }
        }
    }
    fn len(&self) -> usize {
        self.latest.len()
    }
}

/// An open binlog stream kept between polls, with what it has read of the transaction
/// it is in: the next poll, asked for the position this one returned, reads on instead of
/// dumping the log again from there (a transaction read in parts would otherwise be read
/// from its start again for each part). A kept stream the server has closed meanwhile
/// (a poll after its write timeout) fails, and the poll opens a new one.
pub(crate) struct Cursor {
    stream: BinlogStream,
    /// The position the poll that left it returned.
    returned: Position,
    /// The file being read.
    current: String,
    /// What it was opened at: file, offset, row changes to pass over there.
    asked: (String, u64, u64),
    /// The transaction being read.
    txn: Option<Txn>,
    /// Key column places and row layouts per table id.
    places: HashMap<u64, Seen>,
    /// Whether the server's own ROTATE is still to come.
    first_rotate: bool,
    /// Whether a checksum ends each event.
    checksums: bool,
    /// Keys read, for their order.
    order: i64,
    /// The server's clock just before the stream was asked for: every transaction
    /// committed before it is in the stream.
    opened_at: Option<DateTime<Utc>>,
    /// XA transactions prepared and not yet committed or rolled back, oldest first.
    xa: Vec<PreparedXa>,
}

/// An XA transaction the log holds prepared (its rows are logged at `XA PREPARE`,
/// visible only once a later `XA COMMIT` group commits them): its keys wait for that.
#[derive(Debug)]
struct PreparedXa {
    /// The xid as the log writes it (`X'7831',X'',1`).
    xid: String,
    /// Where its group starts: positions returned stay at or before it until it ends,
    /// so a stream opened again reads it again.
    start: Position,
    keys: Vec<Latest>,
}

/// The xid of an `XA END`, `XA COMMIT` or `XA ROLLBACK` statement as the binlog logs it
/// (`verb` = `END`, …; `ONE PHASE` dropped), if `sql` is one.
fn xa_xid(sql: &str, verb: &str) -> Option<String> {
    let mut words = sql.trim_start().splitn(3, char::is_whitespace);
    if !words.next()?.eq_ignore_ascii_case("XA") || !words.next()?.eq_ignore_ascii_case(verb) {
        return None;
    }
    let rest = words.next()?.trim();
    let upper = rest.to_ascii_uppercase();
    let xid = match upper.strip_suffix("ONE PHASE") {
        Some(head) => &rest[..head.len()],
        None => rest,
    };
    Some(xid.trim().to_owned())
}

/// What one poll read from the log.
struct Read {
    collected: Collected,
    position: Position,
    /// The captured tables to read again (ALTER/RENAME seen).
    reload: bool,
    /// The end (file, offset) of the last event whose keys were collected: their rows
    /// are read once the server shows every transaction up to there as committed.
    through: Option<(String, u64)>,
    /// When the read reached the log's end (the server ended the stream): the moment
    /// the stream was asked for, before which nothing committed is left unread. A kept
    /// stream may have reached the end long before this poll, so not the poll's time.
    complete_at: Option<DateTime<Utc>>,
}

impl MysqlSource {
    /// Checks that the server logs rows as binlog capture needs and that the account may
    /// read the log; one error listing everything missing.
    pub(crate) async fn check_binlog(&mut self, conn: &mut Conn) -> Result<(), SourceError> {
        let rows: Vec<(String, String)> = conn
            .query(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', 'log_bin_compress')",
            )
            .await
            .map_err(|e| classify(e, None))?;
        let variables: HashMap<String, String> = rows
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let grants: Vec<String> = conn
            .query("SHOW GRANTS")
            .await
            .map_err(|e| classify(e, None))?;
        let problems = missing(&variables, &grants);
        if !problems.is_empty() {
            return Err(SourceError::CaptureNotInstalled(format!(
                "binlog capture cannot read this server: {} (`ebis setup-source` prints what to set and grant)",
                problems.join("; ")
            )));
        }
        Ok(())
    }

    /// The log's end now, once every transaction up to it is visible: file, offset and
    /// the server's GTID position where it has one.
    pub(crate) async fn binlog_head(&mut self, conn: &mut Conn) -> Result<Position, SourceError> {
        let row: Option<mysql_async::Row> = conn
            .query_first("SHOW MASTER STATUS")
            .await
            .map_err(|e| classify(e, None))?;
        let Some(row) = row else {
            return Err(SourceError::CaptureNotInstalled(
                "the server keeps no binary log (log_bin is OFF): binlog capture needs it (`ebis setup-source` prints what to set)".to_owned(),
            ));
        };
        let file: Option<String> = row.get(0);
        let pos: Option<u64> = row.get(1);
        let (Some(file), Some(pos)) = (file, pos) else {
            return Err(SourceError::Query(
                "SHOW MASTER STATUS returned no file and position".to_owned(),
            ));
        };
        // A snapshot reads after this: every transaction the log holds up to here must be
        // visible to it, or one still committing would be in neither the snapshot nor
        // the stream that starts here.
        self.wait_visible(conn, &file, pos).await?;
        self.wait_prepared_xa(conn, &file, pos).await?;
        let gtid: Option<String> = conn
            .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
            .await
            .unwrap_or(None)
            .filter(|g: &String| !g.is_empty());
        Ok(Position::Binlog {
            file,
            pos,
            skip: 0,
            gtid,
        })
    }

    /// Changes logged after (`file`, `pos`), passing over the first `skip` row changes of
    /// the transaction there: about `limit` keys, their rows read by key.
    pub(crate) async fn binlog_changes(
        &mut self,
        after: &Position,
        limit: usize,
        server_id: u32,
    ) -> Result<Batch, SourceError> {
        let Position::Binlog { file, .. } = after else {
            return Err(SourceError::PositionExpired(format!(
                "the stored position `{}` is not a binlog position",
                after.summary()
            )));
        };
        self.tables().await?;
        let mut conn = self.conn().await?;
        // Reading on from the stream the last poll left open needs no look at the files:
        // the server is sending them.
        let reading_on = self
            .binlog_cursor
            .as_ref()
            .is_some_and(|c| c.returned == *after);
        if !reading_on {
            let logs: Vec<mysql_async::Row> = conn
                .query("SHOW BINARY LOGS")
                .await
                .map_err(|e| classify(e, None))?;
            let names: Vec<String> = logs.iter().filter_map(|r| r.get(0)).collect();
            if !names.iter().any(|n| n == file) {
                return Err(SourceError::PositionExpired(format!(
                    "binlog file {file} is no longer on the server (purged before ebis read it; the oldest kept is {})",
                    names.first().map(String::as_str).unwrap_or("none")
                )));
            }
        }
        let read = self.read_log(after, limit, server_id).await?;
        if read.reload {
            tracing::info!(source = %self.name, "a captured table's definition changed in the binlog: reading its columns again");
            self.tables = None;
            self.tables().await?;
            // Where the kept stream's tables' columns are, and how their images read,
            // was found after the change with the columns as they were before it.
            if let Some(cursor) = self.binlog_cursor.as_mut() {
                cursor.places.clear();
            }
        }
        let version = version_of(&read.position);
        let mut latest = read.collected.latest;
        if read.reload {
            // Images logged before the definition changed are read by key instead.
            for l in &mut latest {
                l.logged = None;
            }
        }
        let by_key = latest.iter().filter(|l| l.logged.is_none()).count();
        if !latest.is_empty() {
            tracing::debug!(source = %self.name, from_images = latest.len() - by_key, read_by_key = by_key, "binlog batch");
        }
        let changes = if latest.is_empty() {
            Vec::new()
        } else {
            if let Some((file, end)) = &read.through
                && by_key > 0
            {
                self.wait_visible(&mut conn, file, *end).await?;
            }
            read_latest(
                &mut crate::changelog::Reader::new(conn, self),
                latest,
                version,
            )
            .await?
        };
        Ok(Batch {
            changes,
            position: read.position,
            gap_events: Vec::new(),
            // Only a read that reached the log's end says the source is read up to the
            // moment it began; a full batch leaves more behind (the runner then reads
            // ahead while this one applies, and reports the newest change's time).
            read_at: read.complete_at,
        })
    }

    /// Waits until a read sees every transaction the log holds up to `end` of `file`.
    ///
    /// The server sends a transaction's events to log readers once they are written to
    /// the log, before the storage engine has made its rows visible (the log is written
    /// first, then the engine commits): a row read by key right after its insert was seen
    /// in the log can still be missing, and would be taken for a delete (an update's
    /// old values, a deleted row still there). MariaDB and Percona Server say, for a
    /// consistent snapshot, up to which log position it sees (`binlog_snapshot_position`,
    /// kept in commit order): once a snapshot sees up to `end`, so does every later read.
    /// A server without it (Oracle MySQL) is read at once; capture logs a warning once,
    /// and `check --online` gives it ([`NO_SNAPSHOT_POSITION`]).
    async fn wait_visible(
        &mut self,
        conn: &mut Conn,
        file: &str,
        end: u64,
    ) -> Result<(), SourceError> {
        if self.snapshot_positions == Some(false) {
            return Ok(());
        }
        let target = Position::binlog_version(file, end);
        let mut wait = VisibleWait::default();
        loop {
            let Some((seen_file, seen_pos)) = snapshot_position(conn).await? else {
                self.snapshot_positions = Some(false);
                tracing::warn!(source = %self.name, "{NO_SNAPSHOT_POSITION}");
                return Ok(());
            };
            self.snapshot_positions = Some(true);
            if Position::binlog_version(&seen_file, seen_pos) >= target {
                break;
            }
            if !wait.again().await {
                return Err(SourceError::Unreachable(format!(
                    "transactions in the binlog up to {file}:{end} are not visible after {} s (the server's snapshots see up to {seen_file}:{seen_pos}); reading again",
                    VISIBLE_TIMEOUT.as_secs()
                )));
            }
        }
        if wait.waited_ms() > 0 {
            tracing::debug!(source = %self.name, waited_ms = wait.waited_ms(), "waited for transactions in the binlog to become visible");
        }
        Ok(())
    }

    /// Waits until every XA transaction prepared now has committed or rolled back.
    ///
    /// An XA transaction's rows are logged at `XA PREPARE` and become visible only at
    /// its `XA COMMIT`, a later group of the log without rows. One prepared before a
    /// snapshot's head (`file`:`pos`) and committed after the snapshot read its table
    /// would be in neither: the snapshot did not see its rows, and the stream, which
    /// starts at the head, never reads them. Every transaction prepared before the head
    /// is prepared still or has ended by now; once each listed now has ended, the rows of
    /// those committed are visible to the snapshot's reads, which come after. An account
    /// that may not list them (Oracle MySQL 8 without `XA_RECOVER_ADMIN`) is warned of,
    /// once, and not waited for. After [`XA_WAIT`] the head fails as unreachable, naming
    /// how many are left, and is taken again (`ebis status` shows the error meanwhile).
    async fn wait_prepared_xa(
        &mut self,
        conn: &mut Conn,
        file: &str,
        pos: u64,
    ) -> Result<(), SourceError> {
        if self.xa_listed == Some(false) {
            return Ok(());
        }
        let Some(prepared) = prepared_xa(conn).await? else {
            self.xa_listed = Some(false);
            tracing::warn!(source = %self.name, "{XA_NOT_LISTED}");
            return Ok(());
        };
        self.xa_listed = Some(true);
        if prepared.is_empty() {
            return Ok(());
        }
        tracing::info!(source = %self.name, prepared = prepared.len(), head = %format!("{file}:{pos}"), "waiting for XA transactions prepared before the snapshot's start to commit or roll back");
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
            let now = prepared_xa(conn).await?.unwrap_or_default();
            let left = prepared.iter().filter(|x| now.contains(x)).count();
            if left == 0 {
                tracing::info!(source = %self.name, waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), "the XA transactions prepared before the snapshot's start have ended");
                return Ok(());
            }
            if started.elapsed() > XA_WAIT {
                return Err(SourceError::Unreachable(format!(
                    "{left} XA transaction(s) prepared before the snapshot's start ({file}:{pos}) are neither committed nor rolled back after {} s (`XA RECOVER` lists them): their rows are logged before the start, so the snapshot waits for them to end; taking the start again",
                    XA_WAIT.as_secs()
                )));
            }
        }
    }

    /// Which captured table a table map names, and where its key columns are.
    fn key_place(
        &self,
        database: &str,
        table: &str,
        row: &BinlogRow,
    ) -> Result<Option<KeyPlace>, SourceError> {
        let tables = self.tables.as_deref().unwrap_or(&[]);
        let default_db = self.database.as_deref().unwrap_or("");
        let Some(index) = tables.iter().position(|t| {
            let (schema, name) = split_table(&t.plan.table);
            name.eq_ignore_ascii_case(table)
                && schema.unwrap_or(default_db).eq_ignore_ascii_case(database)
        }) else {
            return Ok(None);
        };
        let t = &tables[index];
        let mut columns = Vec::new();
        let mut described = Vec::new();
        let mut gb = Vec::new();
        for (name, reading, charset) in t.key_columns() {
            let at = row
                .columns_ref()
                .iter()
                .position(|c| c.name_str().eq_ignore_ascii_case(name));
            match at {
                Some(i) => {
                    columns.push((i, reading));
                    described.push(row.columns_ref()[i].clone());
                    gb.push(charset.is_some_and(is_gb_charset));
                }
                None => {
                    return Err(SourceError::CaptureNotInstalled(format!(
                        "the binlog's rows of {} carry no column named {name} (binlog_row_metadata must be FULL when they were logged)",
                        t.plan.table
                    )));
                }
            }
        }
        let names: Vec<(String, bool)> = row
            .columns_ref()
            .iter()
            .map(|c| {
                let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
                (c.name_str().into_owned(), unsigned)
            })
            .collect();
        Ok(Some(KeyPlace {
            table: index,
            columns,
            described,
            gb,
            image: t.image_read(&names),
        }))
    }

    /// Closes the binlog stream a poll left open, if any.
    pub(crate) async fn close_binlog_cursor(&mut self) {
        if let Some(cursor) = self.binlog_cursor.take() {
            let _ = cursor.stream.close().await;
        }
    }

    /// Reads the log from `after` to its end or to about `limit` keys: on with the stream
    /// the previous poll left open when `after` is where it stopped, else on a new one
    /// (and on a new one again when the kept stream has failed meanwhile).
    async fn read_log(
        &mut self,
        after: &Position,
        limit: usize,
        server_id: u32,
    ) -> Result<Read, SourceError> {
        if let Some(cursor) = self.binlog_cursor.take() {
            if cursor.returned == *after {
                match self.read_from(*cursor, limit).await {
                    Err(e) if e.is_retryable() => {
                        tracing::debug!(source = %self.name, error = %e, "the kept binlog stream failed; reading from the position again");
                    }
                    other => return other,
                }
            } else {
                let _ = cursor.stream.close().await;
            }
        }
        let cursor = self.open_cursor(after, server_id).await?;
        self.read_from(cursor, limit).await
    }

    /// A new stream from `after` (a transaction boundary, or a transaction's start with
    /// the row changes already read).
    async fn open_cursor(
        &mut self,
        after: &Position,
        server_id: u32,
    ) -> Result<Cursor, SourceError> {
        let Position::Binlog {
            file,
            pos,
            skip,
            gtid: _,
        } = after.clone()
        else {
            unreachable!("checked by the caller");
        };
        let mut conn = self.conn().await?;
        let checksum: Option<String> = conn
            .query_first("SELECT @@GLOBAL.binlog_checksum")
            .await
            .map_err(|e| classify(e, None))?;
        let checksums = checksum.is_some_and(|c| !c.eq_ignore_ascii_case("NONE"));
        let opened_at = Self::utc_now(&mut conn).await?;
        // Real GTID events instead of dummy BEGIN statements (MariaDB; MySQL ignores it).
        conn.query_drop("SET @mariadb_slave_capability = 4")
            .await
            .map_err(|e| classify(e, None))?;
        let request = BinlogStreamRequest::new(server_id)
            .with_filename(file.as_bytes())
            .with_pos(pos)
            .with_non_blocking();
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| dump_error(e, &file))?;
        Ok(Cursor {
            stream,
            returned: after.clone(),
            current: file.clone(),
            asked: (file, pos, skip),
            txn: None,
            places: HashMap::new(),
            first_rotate: true,
            checksums,
            opened_at,
            order: 0,
            xa: Vec::new(),
        })
    }

    /// Reads on from `cursor` to the log's end or to about `limit` keys; keeps the
    /// stream for the next poll unless it ended.
    async fn read_from(&mut self, mut cursor: Cursor, limit: usize) -> Result<Read, SourceError> {
        let Cursor {
            ref mut stream,
            ref mut current,
            ref asked,
            ref mut txn,
            ref mut places,
            ref mut first_rotate,
            checksums,
            ref mut order,
            ref mut xa,
            ..
        } = cursor;
        let opened_at = cursor.opened_at;
        let mut committed = cursor.returned.clone();
        let mut ended = false;
        let mut collected = Collected::default();
        let mut reload = false;
        let mut through: Option<(String, u64)> = None;
        let mut resnapshot: Option<String> = None;
        let limit = limit.max(1);
        loop {
            let next = match tokio::time::timeout(OP_TIMEOUT, stream.next()).await {
                Ok(n) => n,
                Err(_) => {
                    return Err(SourceError::Unreachable(
                        "the binlog stream stopped answering".to_owned(),
                    ));
                }
            };
            let Some(event) = next else {
                ended = true;
                break;
            };
            let event: Event = event.map_err(|e| dump_error(e, current))?;
            let header = event.header();
            let end = u64::from(header.log_pos());
            let start = end.saturating_sub(u64::from(header.event_size()));
            let at = DateTime::<Utc>::from_timestamp(i64::from(header.timestamp()), 0);
            let raw = header.event_type_raw();
            if MARIADB_COMPRESSED.contains(&raw) {
                return Err(SourceError::CaptureNotInstalled(
                    "the binlog holds compressed events (log_bin_compress = ON): ebis cannot read them; set log_bin_compress = OFF".to_owned(),
                ));
            }
            if raw == MARIADB_GTID_EVENT {
                // A transaction starts. A standalone one (DDL) is ended by its QUERY
                // event, a BEGIN…COMMIT one by its XID or COMMIT.
                *txn = Some(Txn::begin(
                    current,
                    start,
                    asked,
                    mariadb_gtid(event.data(), header.server_id()),
                ));
                continue;
            }
            match header.event_type() {
                Ok(EventType::ROTATE_EVENT) => {
                    let rotate: RotateEvent<'_> = event
                        .read_event()
                        .map_err(|e| SourceError::Query(format!("a binlog ROTATE event: {e}")))?;
                    // The stream's first ROTATE is the server's own: it names the file
                    // asked for and moves no position.
                    let fake = *first_rotate;
                    *first_rotate = false;
                    *current =
                        rotate_name(rotate.name_raw(), checksums && event.checksum().is_none());
                    if !fake && txn.is_none() {
                        committed = Position::Binlog {
                            file: current.clone(),
                            pos: rotate.position(),
                            skip: 0,
                            gtid: position_gtid(&committed),
                        };
                    }
                }
                Ok(EventType::QUERY_EVENT) => {
                    let q: QueryEvent<'_> = event
                        .read_event()
                        .map_err(|e| SourceError::Query(format!("a binlog QUERY event: {e}")))?;
                    let sql = q.query();
                    let word = sql.split_whitespace().next().unwrap_or("");
                    // MySQL opens an XA transaction's group with an `XA START` query
                    // (MariaDB says it in the GTID event).
                    if word.eq_ignore_ascii_case("BEGIN") || xa_xid(&sql, "START").is_some() {
                        if txn.is_none() {
                            *txn = Some(Txn::begin(current, start, asked, None));
                        }
                        continue;
                    }
                    if let Some(xid) = xa_xid(&sql, "END") {
                        // An XA transaction being prepared: its rows are in the log, but
                        // visible only once its XA COMMIT (a later group) commits them.
                        if let Some(t) = txn.take() {
                            xa.push(PreparedXa {
                                xid,
                                start: Position::Binlog {
                                    file: t.file.clone(),
                                    pos: t.start,
                                    skip: 0,
                                    gtid: position_gtid(&committed),
                                },
                                keys: t.keys,
                            });
                        }
                        commit(&mut collected, None, current, end, &mut committed);
                        continue;
                    }
                    if let Some(xid) = xa_xid(&sql, "COMMIT").or_else(|| xa_xid(&sql, "ROLLBACK"))
                        && let Some(i) = xa.iter().position(|p| p.xid == xid)
                    {
                        // Its keys come with this group (a committed one's rows as
                        // its images give them; a rolled-back one's are read as they
                        // are: unchanged).
                        let prepared = xa.remove(i);
                        let rolled_back = xa_xid(&sql, "ROLLBACK").is_some();
                        txn.get_or_insert_with(|| Txn::begin(current, start, asked, None))
                            .keys
                            .extend(
                                prepared
                                    .keys
                                    .into_iter()
                                    .map(|l| if rolled_back { l.logged(None) } else { l }),
                            );
                    }
                    if !word.eq_ignore_ascii_case("COMMIT") {
                        // A statement of its own (DDL): does it touch a captured table?
                        let schema = q.schema().into_owned();
                        let default_db = self.database.clone().unwrap_or_default();
                        for t in self.tables.as_deref().unwrap_or(&[]) {
                            let (s, name) = split_table(&t.plan.table);
                            match ddl_effect(&sql, &schema, s.unwrap_or(&default_db), name) {
                                Some(Ddl::Reload) => {
                                    reload = true;
                                    places.clear();
                                }
                                Some(Ddl::Resnapshot) => {
                                    resnapshot.get_or_insert_with(|| {
                                        format!(
                                            "captured table {} was truncated or dropped at the source (the binlog holds the statement, not its rows)",
                                            t.plan.table
                                        )
                                    });
                                }
                                None => {}
                            }
                        }
                    }
                    let done = txn.take();
                    if commit(&mut collected, done, current, end, &mut committed) {
                        through = Some((current.clone(), end));
                    }
                    if let Some(why) = resnapshot {
                        return Err(SourceError::PositionExpired(why));
                    }
                    if collected.len() >= limit {
                        break;
                    }
                }
                Ok(EventType::XID_EVENT) => {
                    let done = txn.take();
                    if commit(&mut collected, done, current, end, &mut committed) {
                        through = Some((current.clone(), end));
                    }
                    if collected.len() >= limit {
                        break;
                    }
                }
                Ok(
                    EventType::WRITE_ROWS_EVENT
                    | EventType::UPDATE_ROWS_EVENT
                    | EventType::DELETE_ROWS_EVENT
                    | EventType::WRITE_ROWS_EVENT_V1
                    | EventType::UPDATE_ROWS_EVENT_V1
                    | EventType::DELETE_ROWS_EVENT_V1
                    | EventType::PARTIAL_UPDATE_ROWS_EVENT,
                ) => {
                    let Some(EventData::RowsEvent(rows)) = event
                        .read_data()
                        .map_err(|e| SourceError::Query(format!("a binlog rows event: {e}")))?
                    else {
                        continue;
                    };
                    let Some(t) = txn.as_mut() else {
                        return Err(SourceError::Query(
                            "a binlog rows event outside a transaction".to_owned(),
                        ));
                    };
                    let Some(tme) = stream.get_tme(rows.table_id()) else {
                        return Err(SourceError::Query(
                            "a binlog rows event without its table map".to_owned(),
                        ));
                    };
                    let database = tme.database_name().into_owned();
                    let table = tme.table_name().into_owned();
                    let bad_row = |e: std::io::Error| {
                        SourceError::Query(format!("a binlog row of {database}.{table}: {e}"))
                    };
                    match places.get(&rows.table_id()) {
                        // The layout is known and the images are full: walked for the key.
                        Some(Seen {
                            place,
                            layout: Some(layout),
                        }) if layout.walks(&rows) => {
                            // Every column when the rows come from the images, else the
                            // key columns only.
                            let whole = place.as_ref().and_then(|p| p.image.as_ref());
                            let keyed = place.as_ref().map(KeyPlace::positions).unwrap_or_default();
                            let wanted = whole.is_none().then_some(keyed.as_slice());
                            let mut data = rows.rows_data();
                            while !data.is_empty() {
                                let images = rowimage::row(&rows, layout, &mut data, wanted)
                                    .map_err(bad_row)?;
                                t.rows += 1;
                                let Some(place) = place else { continue };
                                if t.rows <= t.skip {
                                    continue;
                                }
                                for (after, values) in images.iter().enumerate() {
                                    let Some(values) = values else { continue };
                                    let (key, logged) = match whole {
                                        Some(image) => {
                                            let key = key_of(
                                                place,
                                                keyed.iter().filter_map(|i| values.get(*i)),
                                                &database,
                                                &table,
                                            )?;
                                            (key, logged(image, after == 1, |i| values.get(i)))
                                        }
                                        None => {
                                            (key_of(place, values.iter(), &database, &table)?, None)
                                        }
                                    };
                                    *order += 1;
                                    t.keys.push(
                                        Latest::new(place.table, key, *order, at).logged(logged),
                                    );
                                }
                            }
                        }
                        // Decoded by mysql_common; the first image tells where the key
                        // columns are and how the next images are laid out.
                        seen => {
                            let mut seen = seen.cloned();
                            for row in rows.rows(tme) {
                                let (before, after_image) = row.map_err(bad_row)?;
                                t.rows += 1;
                                for (after, image) in [before.as_ref(), after_image.as_ref()]
                                    .into_iter()
                                    .enumerate()
                                {
                                    let Some(image) = image else { continue };
                                    if seen.is_none() {
                                        let s = Seen {
                                            place: self.key_place(&database, &table, image)?,
                                            layout: Layout::of(tme, image),
                                        };
                                        places.insert(rows.table_id(), s.clone());
                                        seen = Some(s);
                                    }
                                    if t.rows <= t.skip {
                                        break;
                                    }
                                    let Some(Seen {
                                        place: Some(place), ..
                                    }) = &seen
                                    else {
                                        break;
                                    };
                                    let mut values = Vec::with_capacity(place.columns.len());
                                    for (i, _) in &place.columns {
                                        values.push(image.as_ref(*i).ok_or_else(|| {
                                            SourceError::Query(format!(
                                                "a binlog row of {database}.{table} lacks key column {}",
                                                image.columns_ref()[*i].name_str()
                                            ))
                                        })?);
                                    }
                                    let key = key_of(place, values.into_iter(), &database, &table)?;
                                    let logged = place.image.as_ref().and_then(|read| {
                                        logged(read, after == 1, |i| image.as_ref(i))
                                    });
                                    *order += 1;
                                    t.keys.push(
                                        Latest::new(place.table, key, *order, at).logged(logged),
                                    );
                                }
                            }
                        }
                    }
                    // A transaction larger than a batch: return what it has read so far,
                    // the position staying at its start.
                    if collected.len() == 0 && t.keys.len() >= limit {
                        for l in t.keys.drain(..) {
                            collected.add(l);
                        }
                        through = Some((current.clone(), end));
                        committed = Position::Binlog {
                            file: t.file.clone(),
                            pos: t.start,
                            skip: t.rows,
                            gtid: t.gtid.clone().or_else(|| position_gtid(&committed)),
                        };
                        break;
                    }
                    // Enough for this batch without the open transaction: the next poll
                    // reads on into it (or again from its start, on a new stream).
                    if collected.len() > 0 && collected.len() + t.keys.len() >= limit {
                        break;
                    }
                }
                _ => {}
            }
        }
        // Until a prepared XA transaction ends, the position stays at its start: a stream
        // opened again from there reads its rows again (and replays those after it,
        // which are read whole and change nothing).
        if let Some(oldest) = cursor.xa.first()
            && version_of(&oldest.start) < version_of(&committed)
        {
            committed = oldest.start.clone();
        }
        if ended {
            let _ = cursor.stream.close().await;
        } else {
            cursor.returned = committed.clone();
            self.binlog_cursor = Some(Box::new(cursor));
        }
        Ok(Read {
            collected,
            position: committed,
            reload,
            through,
            complete_at: if ended { opened_at } else { None },
        })
    }
}

/// What `check --online` says of a server that does not tell which binlog position a
/// snapshot sees, and what capture logs once on it.
pub(crate) const NO_SNAPSHOT_POSITION: &str = "this server does not say which binlog position a consistent snapshot sees (status binlog_snapshot_position: MariaDB and Percona Server have it, Oracle MySQL does not), so binlog capture cannot wait for a logged transaction to become visible before reading its rows: a row read between the server writing the log and committing the transaction is taken for deleted, or read with its old values, until its next change; use changelog capture on this server where no change may be missed";

/// How long a snapshot's head waits for XA transactions prepared before it to end,
/// before it fails as unreachable and is taken again.
pub(crate) const XA_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Server errors of an account that may not list prepared XA transactions (1227: Oracle
/// MySQL 8 without `XA_RECOVER_ADMIN`; 1044, 1142: access denied).
const XA_RECOVER_DENIED: [u16; 3] = [1227, 1044, 1142];

/// What binlog capture logs once, and `check --online` says, where the account may not
/// list prepared XA transactions.
pub(crate) const XA_NOT_LISTED: &str = "this account may not list prepared XA transactions (`XA RECOVER`; Oracle MySQL 8 needs `GRANT XA_RECOVER_ADMIN ON *.*`): an XA transaction prepared before a snapshot starts and committed after it has read the table would be missed by both the snapshot and the stream";

/// The prepared XA transactions `XA RECOVER` lists (format id and the xid's bytes), or
/// `None` where the account may not list them.
pub(crate) async fn prepared_xa(
    conn: &mut Conn,
) -> Result<Option<Vec<(i64, Vec<u8>)>>, SourceError> {
    match conn.query::<mysql_async::Row, _>("XA RECOVER").await {
        Ok(rows) => Ok(Some(
            rows.into_iter()
                .map(|r| {
                    (
                        r.get::<i64, _>(0).unwrap_or_default(),
                        r.get::<Vec<u8>, _>(3).unwrap_or_default(),
                    )
                })
                .collect(),
        )),
        Err(mysql_async::Error::Server(e)) if XA_RECOVER_DENIED.contains(&e.code) => Ok(None),
        Err(e) => Err(classify(e, None)),
    }
}

/// The binlog position a consistent snapshot taken now sees up to (MariaDB, Percona
/// Server); `None` when the server does not say.
pub(crate) async fn snapshot_position(
    conn: &mut Conn,
) -> Result<Option<(String, u64)>, SourceError> {
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(|e| classify(e, None))?;
    let status: Result<Vec<(String, String)>, _> = conn
        .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
        .await;
    let end = conn.query_drop("COMMIT").await;
    let status = status.map_err(|e| classify(e, None))?;
    end.map_err(|e| classify(e, None))?;
    Ok(snapshot_status(&status))
}

/// The file and position of `SHOW STATUS LIKE 'binlog_snapshot_%'` rows.
fn snapshot_status(rows: &[(String, String)]) -> Option<(String, u64)> {
    let get = |name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let file = get("Binlog_snapshot_file").filter(|f| !f.is_empty())?;
    let pos = get("Binlog_snapshot_position")?.parse().ok()?;
    Some((file.to_owned(), pos))
}

/// A binlog position's place in the log, for comparing two.
fn version_of(p: &Position) -> i64 {
    match p {
        Position::Binlog { file, pos, .. } => Position::binlog_version(file, *pos),
        _ => 0,
    }
}

/// The GTID a position carries.
fn position_gtid(p: &Position) -> Option<String> {
    match p {
        Position::Binlog { gtid, .. } => gtid.clone(),
        _ => None,
    }
}

/// A transaction ended at `end` of `file`: its keys join the batch, the position moves
/// past it; whether it had keys.
fn commit(
    collected: &mut Collected,
    txn: Option<Txn>,
    file: &str,
    end: u64,
    committed: &mut Position,
) -> bool {
    let gtid = match &txn {
        Some(t) if t.gtid.is_some() => t.gtid.clone(),
        _ => position_gtid(committed),
    };
    let mut keyed = false;
    if let Some(t) = txn {
        keyed = !t.keys.is_empty();
        for l in t.keys {
            collected.add(l);
        }
    }
    *committed = Position::Binlog {
        file: file.to_owned(),
        pos: end,
        skip: 0,
        gtid,
    };
    keyed
}

/// A dump error: a file the server no longer has (or never had) is an expired position.
fn dump_error(e: mysql_async::Error, file: &str) -> SourceError {
    if let mysql_async::Error::Server(s) = &e
        && s.code == ER_MASTER_FATAL_ERROR_READING_BINLOG
    {
        return SourceError::PositionExpired(format!(
            "the server cannot send binlog {file} from the stored position (error {}; purged, or the log was reset)",
            s.code
        ));
    }
    classify(e, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_server_set_up_for_binlog_capture_misses_nothing() {
        let ok = vars(&[
            ("log_bin", "ON"),
            ("binlog_format", "ROW"),
            ("binlog_row_image", "FULL"),
            ("binlog_row_metadata", "FULL"),
            ("log_bin_compress", "OFF"),
        ]);
        let grants = vec![
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `ebis`@`%`".to_owned(),
            "GRANT SELECT ON `tax`.* TO `ebis`@`%`".to_owned(),
        ];
        assert!(missing(&ok, &grants).is_empty());
        let root =
            vec!["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION".to_owned()];
        assert!(missing(&ok, &root).is_empty());
    }

    #[test]
    fn each_missing_setting_and_grant_is_named() {
        let off = vars(&[
            ("log_bin", "OFF"),
            ("binlog_format", "MIXED"),
            ("binlog_row_image", "MINIMAL"),
            ("log_bin_compress", "ON"),
        ]);
        let grants = vec!["GRANT SELECT ON `tax`.* TO `ebis`@`%`".to_owned()];
        let found = missing(&off, &grants).join("\n");
        for expected in [
            "log_bin is OFF, must be ON",
            "binlog_format is MIXED, must be ROW",
            "binlog_row_image is MINIMAL, must be FULL",
            "no binlog_row_metadata",
            "log_bin_compress is ON",
            "lacks REPLICATION SLAVE",
            "lacks REPLICATION CLIENT",
        ] {
            assert!(found.contains(expected), "{expected} in:\n{found}");
        }
        let on_one_db = vec!["GRANT REPLICATION SLAVE ON `tax`.* TO `ebis`@`%`".to_owned()];
        assert!(
            missing(&off, &on_one_db)
                .iter()
                .any(|m| m.contains("REPLICATION SLAVE")),
            "replication is granted on *.* only"
        );
    }

    #[test]
    fn ddl_on_a_captured_table_is_told_apart_from_other_statements() {
        let e = |sql| ddl_effect(sql, "tax", "tax", "DJ_NSRXX");
        assert_eq!(
            e("ALTER TABLE DJ_NSRXX ADD COLUMN X INT"),
            Some(Ddl::Reload)
        );
        assert_eq!(
            e("alter table `tax`.`dj_nsrxx` drop column X"),
            Some(Ddl::Reload)
        );
        assert_eq!(e("RENAME TABLE DJ_NSRXX TO DJ_OLD"), Some(Ddl::Reload));
        assert_eq!(e("TRUNCATE TABLE DJ_NSRXX"), Some(Ddl::Resnapshot));
        assert_eq!(
            e("DROP TABLE IF EXISTS `DJ_NSRXX` /* generated by server */"),
            Some(Ddl::Resnapshot)
        );
        assert_eq!(
            e("ALTER TABLE DJ_NSRXX_BAK ADD COLUMN X INT"),
            None,
            "another table"
        );
        assert_eq!(
            e("ALTER TABLE other.DJ_NSRXX ADD COLUMN X INT"),
            None,
            "another schema"
        );
        assert_eq!(e("CREATE TABLE DJ_NSRXX2 LIKE DJ_NSRXX"), None);
        assert_eq!(
            e("ALTER TABLE T COMMENT 'DJ_NSRXX'"),
            None,
            "a name inside a string literal"
        );
        assert_eq!(
            ddl_effect("DROP TABLE DJ_NSRXX", "other", "tax", "DJ_NSRXX"),
            None,
            "run in another schema"
        );
    }

    #[test]
    fn the_fake_rotate_loses_its_checksum_tail() {
        assert_eq!(
            rotate_name(b"mariadb-bin.000003R<sT", true),
            "mariadb-bin.000003"
        );
        assert_eq!(
            rotate_name(b"mariadb-bin.000004", false),
            "mariadb-bin.000004"
        );
    }

    #[test]
    fn xa_statements_give_their_xid_as_the_log_writes_it() {
        assert_eq!(
            xa_xid("XA END X'7831',X'',1", "END").as_deref(),
            Some("X'7831',X'',1")
        );
        assert_eq!(
            xa_xid("XA COMMIT X'7831',X'',1", "COMMIT").as_deref(),
            Some("X'7831',X'',1")
        );
        assert_eq!(
            xa_xid("xa commit X'7831',X'',1 one phase", "COMMIT").as_deref(),
            Some("X'7831',X'',1")
        );
        assert_eq!(xa_xid("XA ROLLBACK X'61',X'',1", "COMMIT"), None);
        assert_eq!(xa_xid("ALTER TABLE XA END", "END"), None);
        assert_eq!(xa_xid("XA", "END"), None);
        assert_eq!(
            xa_xid("XA START X'7831',X'',1", "START").as_deref(),
            Some("X'7831',X'',1")
        );
    }

    #[test]
    fn a_snapshot_position_is_read_from_the_status_rows() {
        let rows = |f: &str, p: &str| {
            vec![
                ("Binlog_snapshot_file".to_owned(), f.to_owned()),
                ("Binlog_snapshot_position".to_owned(), p.to_owned()),
            ]
        };
        assert_eq!(
            snapshot_status(&rows("mariadb-bin.000009", "61339491")),
            Some(("mariadb-bin.000009".to_owned(), 61339491))
        );
        // Oracle MySQL has no such status; a server without a binlog gives empty values.
        assert_eq!(snapshot_status(&[]), None);
        assert_eq!(snapshot_status(&rows("", "0")), None);
        // The next file's start is past the end of the one before.
        assert!(
            Position::binlog_version("mariadb-bin.000010", 4)
                > Position::binlog_version("mariadb-bin.000009", 61339491)
        );
    }

    #[test]
    fn mariadb_gtid_events_give_domain_server_and_sequence() {
        let mut data = 77u64.to_le_bytes().to_vec();
        data.extend(3u32.to_le_bytes());
        data.push(1);
        assert_eq!(mariadb_gtid(&data, 1), Some("3-1-77".to_owned()));
        assert_eq!(mariadb_gtid(&data, 9), Some("3-9-77".to_owned()));
        assert_eq!(mariadb_gtid(&data[..5], 1), None);
    }
}
