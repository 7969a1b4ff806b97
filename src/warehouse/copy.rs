//! Rows as binary COPY: each record's fields in their columns' types, then its
//! provenance, encoded into large messages.

use super::WarehouseError;
use super::apply::SourceMeta;
use super::batch::StagedRecord;
use super::layout::Layouts;
use crate::indicators::{FieldType, RecordKind};
use crate::mapping::FieldValue;
use bytes::{BufMut, BytesMut};
use futures_util::{SinkExt, pin_mut};
use postgres_protocol::escape::escape_identifier;
use std::error::Error as StdError;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// A field value as a COPY cell of the column's type.
#[derive(Debug)]
struct Cell<'a>(&'a FieldValue, FieldType);

impl ToSql for Cell<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match (self.0, self.1) {
            (FieldValue::Null, _) => Ok(IsNull::Yes),
            (FieldValue::Text(s), FieldType::Text) => s.to_sql(ty, out),
            (FieldValue::Date(d), FieldType::Date) => d.to_sql(ty, out),
            (FieldValue::Year(y), FieldType::Year) => y.to_sql(ty, out),
            // The kind of value only: an error never carries an enterprise's value.
            (v, t) => {
                let kind = match v {
                    FieldValue::Null => "null",
                    FieldValue::Text(_) => "text",
                    FieldValue::Date(_) => "date",
                    FieldValue::Year(_) => "year",
                };
                Err(format!("a {kind} value cannot go in a {t:?} column").into())
            }
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TEXT || *ty == Type::DATE || *ty == Type::INT2
    }

    to_sql_checked!();
}

fn pg_type(t: FieldType) -> Type {
    match t {
        FieldType::Text => Type::TEXT,
        FieldType::Date => Type::DATE,
        FieldType::Year => Type::INT2,
    }
}

pub(super) const PROVENANCE: [(&str, Type); 10] = [
    ("source", Type::TEXT),
    ("bureau", Type::TEXT),
    ("division", Type::TEXT),
    ("source_key", Type::TEXT),
    ("change_position", Type::TEXT),
    ("change_version", Type::INT8),
    ("source_commit_time", Type::TIMESTAMPTZ),
    ("mapping_version", Type::TEXT),
    ("raw_row", Type::JSON),
    ("raw_layout", Type::INT4),
];

/// The columns a record kind's rows are copied with (fields, then provenance), and
/// their types.
pub(super) fn copy_columns(kind: &RecordKind) -> (Vec<String>, Vec<Type>) {
    let cols = kind
        .fields
        .iter()
        .map(|f| escape_identifier(f.name))
        .chain(PROVENANCE.iter().map(|(c, _)| (*c).to_owned()))
        .collect();
    let types = kind
        .fields
        .iter()
        .map(|f| pg_type(f.ty))
        .chain(PROVENANCE.iter().map(|(_, t)| t.clone()))
        .collect();
    (cols, types)
}

/// Rows are encoded into chunks of about this many bytes, each sent as one COPY message
/// (tokio-postgres's `BinaryCopyInWriter` sends every 4 kB and waits for each send).
const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// Copies rows into `target` (binary COPY); how many. A value that cannot be encoded as
/// its column's type fails the copy as a refused value of that column (SQLSTATE 22000),
/// so its row goes to quarantine like one the server refused.
pub(super) async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    source: SourceMeta<'_>,
    position: &str,
    kind: &RecordKind,
    rows: &[StagedRecord],
    layouts: &Layouts,
    target: &str,
) -> Result<u64, WarehouseError> {
    let (cols, types) = copy_columns(kind);
    let sink = tx
        .copy_in::<_, bytes::Bytes>(&format!(
            "copy {target} ({}) from stdin (format binary)",
            cols.join(", ")
        ))
        .await?;
    pin_mut!(sink);
    let columns = i16::try_from(types.len()).expect("a record kind has fewer than 32,767 columns");
    // A chunk's size and room for the row that passes it.
    let chunk = || BytesMut::with_capacity(COPY_CHUNK_BYTES + 16 * 1024);
    let mut buf = chunk();
    // The binary format's signature, flags and header extension length.
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0);
    buf.put_i32(0);
    let refused = |i: usize, e: Box<dyn StdError + Sync + Send>| WarehouseError::Db {
        code: "22000".to_owned(),
        message: format!("a value of column {} could not be encoded: {e}", cols[i]),
        column: Some(
            kind.fields
                .get(i)
                .map_or_else(|| PROVENANCE[i - kind.fields.len()].0, |f| f.name)
                .to_owned(),
        ),
    };
    for r in rows {
        buf.put_i16(columns);
        let fields = r.record.values.iter().zip(kind.fields);
        for (i, (v, f)) in fields.enumerate() {
            put_value(&mut buf, &Cell(v, f.ty), &types[i]).map_err(|e| refused(i, e))?;
        }
        let layout = layouts.of(&r.raw_row);
        let provenance: [&(dyn ToSql + Sync); 10] = [
            &source.name,
            &source.bureau,
            &r.record.division,
            &r.record.source_key,
            &position,
            &r.version,
            &r.commit_time,
            &r.mapping_version,
            &r.raw_row,
            &layout,
        ];
        let first = kind.fields.len();
        for (i, v) in provenance.into_iter().enumerate() {
            put_value(&mut buf, v, &types[first + i]).map_err(|e| refused(first + i, e))?;
        }
        if buf.len() >= COPY_CHUNK_BYTES {
            sink.send(std::mem::replace(&mut buf, chunk()).freeze())
                .await?;
        }
    }
    buf.put_i16(-1);
    sink.send(buf.split().freeze()).await?;
    Ok(sink.as_mut().finish().await?)
}

/// One field of a binary COPY row: its length (-1 for NULL), then its bytes.
fn put_value(
    buf: &mut BytesMut,
    value: &(dyn ToSql + Sync),
    ty: &Type,
) -> Result<(), Box<dyn StdError + Sync + Send>> {
    let at = buf.len();
    buf.put_i32(0);
    let len = match value.to_sql_checked(ty, buf)? {
        IsNull::Yes => -1,
        IsNull::No => i32::try_from(buf.len() - at - 4)?,
    };
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}
