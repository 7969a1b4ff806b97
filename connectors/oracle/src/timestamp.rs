//! Timestamp capture on Oracle: the primitives the shared timestamp poll
//! ([`ebis_capture::timestamp`]) runs on — for a `DATE`/`TIMESTAMP` modified column, and
//! for `ORA_ROWSCN`, the commit number Oracle keeps per block (per row when the table was
//! created with `ROWDEPENDENCIES`): a change to one row of a block raises the number of
//! every row in it, so such rows are read again (harmless, an upsert of the same
//! values), never missed. The number is assigned at commit, so `ORA_ROWSCN` needs no
//! overlap window; it is not indexable, so each poll scans the table.

use crate::connect::Session;
use crate::table::Table;
use crate::{OracleSource, clock_on, current_scn_on};
use ebis_capture::timestamp::{self, TimestampReader};
use ebis_source::{Batch, Clock, Position, Row, SourceError, Value};
use std::time::Duration;

/// One poll's reader: the session and the captured tables.
struct Reader<'a> {
    session: &'a Session,
    tables: &'a [Table],
    utc_offset: i64,
}

impl TimestampReader for Reader<'_> {
    async fn clock(&mut self) -> Result<Clock, SourceError> {
        clock_on(self.session).await
    }
    fn table_count(&self) -> usize {
        self.tables.len()
    }
    fn table_name(&self, index: usize) -> String {
        self.tables[index].plan.table.clone()
    }
    fn has_modified(&self, index: usize) -> bool {
        self.tables[index].has_modified()
    }
    fn key_of(&self, index: usize, row: &Row) -> Vec<Value> {
        self.tables[index].key_of(row)
    }
    fn modified_of(&self, index: usize, row: &Row) -> Option<Value> {
        self.tables[index].modified_of(row)
    }
    async fn after_mark(
        &mut self,
        index: usize,
        mark: Option<&Value>,
        key: &[Value],
        upto: &Value,
        limit: usize,
    ) -> Result<Vec<Row>, SourceError> {
        let t = &self.tables[index];
        t.rows(self.session, t.after_mark_stmt(mark, key, upto, limit))
            .await
    }
    async fn modified_between(
        &mut self,
        index: usize,
        from: &Value,
        to: &Value,
        limit: usize,
    ) -> Result<Vec<Row>, SourceError> {
        let t = &self.tables[index];
        t.rows(self.session, t.between_stmt(from, to, limit)).await
    }
    fn utc_offset(&self) -> i64 {
        self.utc_offset
    }
    fn commit_stamped(&self, index: usize) -> bool {
        self.tables[index].rowscn
    }
    async fn commit_number(&mut self) -> Result<i64, SourceError> {
        current_scn_on(self.session).await?.ok_or_else(|| {
            SourceError::CaptureNotInstalled(
                "ORA_ROWSCN capture reads the database's SCN: grant EXECUTE ON SYS.DBMS_FLASHBACK (or SELECT ON V_$DATABASE) to the reading account".to_owned(),
            )
        })
    }
}

impl OracleSource {
    pub(crate) async fn timestamp_changes(
        &mut self,
        after: &Position,
        limit: usize,
        overlap: Duration,
    ) -> Result<Batch, SourceError> {
        self.tables().await?;
        let mut reader = Reader {
            session: &self.session,
            tables: self.tables.as_deref().unwrap_or(&[]),
            utc_offset: self.utc_offset,
        };
        timestamp::poll(&mut reader, after, limit, overlap, &mut self.window).await
    }

    /// Each table's newest modified time, never past the source's clock; `ORA_ROWSCN`
    /// tables start at `scn` (what a snapshot as of it holds).
    pub(crate) async fn timestamp_head(
        &mut self,
        scn: Option<i64>,
    ) -> Result<Position, SourceError> {
        let clock = self.clock_now().await?;
        let mut newest = Vec::new();
        let mut stamped = Vec::new();
        for t in self.tables.iter().flatten() {
            if t.rowscn {
                stamped.push(t.plan.table.clone());
                newest.push((t.plan.table.clone(), None));
                continue;
            }
            let stmt = t.newest_stmt(&Value::DateTime(clock.local));
            let v = self
                .session
                .run(Some(&t.plan.table), move |conn| {
                    crate::values::with_params(&stmt.params, |p| {
                        conn.query_row_as::<Option<oracle::sql_type::Timestamp>>(&stmt.sql, p)
                    })
                })
                .await?;
            newest.push((
                t.plan.table.clone(),
                v.as_ref().and_then(crate::values::datetime),
            ));
        }
        let mut head = timestamp::head(clock, newest);
        if !stamped.is_empty() {
            let scn = match scn {
                Some(n) => n,
                None => current_scn_on(&self.session).await?.ok_or_else(|| {
                    SourceError::CaptureNotInstalled(
                        "ORA_ROWSCN capture reads the database's SCN: grant EXECUTE ON SYS.DBMS_FLASHBACK (or SELECT ON V_$DATABASE) to the reading account".to_owned(),
                    )
                })?,
            };
            if let Position::Timestamp { tables, .. } = &mut head {
                for name in stamped {
                    tables.entry(name).or_default().scn = Some(scn);
                }
            }
        }
        Ok(head)
    }
}
