//! Timestamp capture on PostgreSQL: the primitives the shared timestamp poll
//! ([`ebis_capture::timestamp`]) runs on — rows after a (modified, key) mark up to the
//! source's clock, rows in a modified-time range — and the head each table's newest
//! modified time gives.

use crate::PostgresSource;
use crate::table::Table;
use ebis_capture::timestamp::{self, TimestampReader};
use ebis_source::{Batch, Clock, Position, Row, SourceError, Value};
use std::time::Duration;
use tokio_postgres::Client;

/// One poll's reader: the connection and the captured tables.
struct Reader<'a> {
    client: &'a Client,
    tables: &'a [Table],
    utc_offset: i64,
}

impl TimestampReader for Reader<'_> {
    async fn clock(&mut self) -> Result<Clock, SourceError> {
        PostgresSource::clock_on(self.client).await
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
        self.tables[index]
            .after_mark(self.client, mark, key, upto, limit)
            .await
    }
    async fn modified_between(
        &mut self,
        index: usize,
        from: &Value,
        to: &Value,
        limit: usize,
    ) -> Result<Vec<Row>, SourceError> {
        self.tables[index]
            .modified_between(self.client, from, to, limit)
            .await
    }
    fn utc_offset(&self) -> i64 {
        self.utc_offset
    }
}

impl PostgresSource {
    pub(crate) async fn timestamp_changes(
        &mut self,
        after: &Position,
        limit: usize,
        overlap: Duration,
    ) -> Result<Batch, SourceError> {
        self.tables().await?;
        let mut reader = Reader {
            client: crate::live(&self.client)?,
            tables: self.tables.as_deref().unwrap_or(&[]),
            utc_offset: self.utc_offset,
        };
        timestamp::poll(&mut reader, after, limit, overlap, &mut self.window).await
    }

    /// Each table's newest modified time, never past the source's clock, and a stamp.
    pub(crate) async fn timestamp_head(&mut self) -> Result<Position, SourceError> {
        let client = self.client()?;
        let clock = Self::clock_on(client).await?;
        let mut newest = Vec::new();
        for t in self.tables.iter().flatten() {
            newest.push((t.plan.table.clone(), t.newest(client).await?));
        }
        Ok(timestamp::head(clock, newest))
    }
}
