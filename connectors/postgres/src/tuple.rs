//! Rows from logical decoding's tuples. pgoutput (protocol 1, text format) sends an
//! insert's and an update's new row whole, each column as the text its type's output
//! function writes in the decoding session's settings — those of every ebis connection
//! (`DateStyle=ISO,YMD`, `IntervalStyle=postgres`, `extra_float_digits=3`, UTF-8). The
//! select list reads most types as that same text (`::text`), and the others (integers,
//! booleans, floats, text, bytea) as binary values their text gives back exactly. So a
//! tuple gives the row a read by key gives at that change, and the pipeline takes it
//! instead of reading the row again — except where it cannot be sure, when the row is
//! read by key as before:
//!
//! - a select list with a mapping's expression (only the server evaluates it);
//! - a `timestamptz` column: the select list reads it as the session's local time, the
//!   tuple holds it with its offset;
//! - a column the Relation message does not name, or names with another type than the
//!   select list's (a publication's column list, a generated column, a domain, a column
//!   added or changed since the table was loaded);
//! - an unchanged TOASTed value (`u`: an update that left a large value alone);
//! - bytea not written in hex (a server with `bytea_output = escape`), text that is not
//!   UTF-8, or a value in binary format.

use crate::values::{Reading, from_text};
use ebis_source::{Row, Value};
use pg_walstream::TupleData;
use std::sync::Arc;

/// `timestamptz`'s type oid.
const TIMESTAMPTZ: u32 = 1184;

/// Where each select-list column of a table is in one relation's tuples, and how it is
/// read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TupleRead {
    /// The select list's names, shared by the rows read.
    names: Arc<Vec<String>>,
    /// Position in the tuple, reading: in select-list order.
    columns: Vec<(usize, Reading)>,
}

impl TupleRead {
    /// The reading of a relation's tuples (`relation`: its columns' names and type oids,
    /// as its Relation message gives them) into rows of a select list of `select`
    /// (`Table::column_readings`); `None` when some column cannot be taken from them.
    pub(crate) fn new(select: &[(&str, u32, Reading)], relation: &[(&str, u32)]) -> Option<Self> {
        select
            .iter()
            .map(|(name, oid, reading)| {
                if *oid == TIMESTAMPTZ {
                    return None;
                }
                let p = relation.iter().position(|(n, _)| n == name)?;
                (relation[p].1 == *oid).then_some((p, *reading))
            })
            .collect::<Option<Vec<_>>>()
            .map(|columns| TupleRead {
                names: Arc::new(select.iter().map(|(n, _, _)| (*n).to_owned()).collect()),
                columns,
            })
    }

    /// The row a tuple holds, as the select list reads it; `None` when a value is not
    /// there or not read exactly (see the module's note).
    pub(crate) fn row(&self, tuple: &TupleData) -> Option<Row> {
        let mut values = Vec::with_capacity(self.columns.len());
        for (p, reading) in &self.columns {
            let c = tuple.get_column(*p)?;
            let value = if c.is_null() {
                Value::Null
            } else if !c.is_text() {
                return None;
            } else {
                let s = c.as_str()?;
                if *reading == Reading::Bytes && !s.starts_with("\\x") {
                    return None;
                }
                from_text(*reading, &s)
            };
            values.push(value);
        }
        Some(Row::with_names(Arc::clone(&self.names), values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use pg_walstream::ColumnData;

    const INT4: u32 = 23;
    const VARCHAR: u32 = 1043;
    const BYTEA: u32 = 17;
    const DATE: u32 = 1082;
    const FLOAT4: u32 = 700;

    fn text(s: &str) -> ColumnData {
        ColumnData::text(s.as_bytes().to_vec())
    }

    fn select() -> Vec<(&'static str, u32, Reading)> {
        vec![
            ("ID", INT4, Reading::I32),
            ("ENTNAME", VARCHAR, Reading::Text),
            ("ESTDATE", DATE, Reading::Date),
            ("PHOTO", BYTEA, Reading::Bytes),
            ("SCORE", FLOAT4, Reading::F32),
        ]
    }

    #[test]
    fn a_tuple_reads_as_the_select_list_reads_its_columns_found_by_name() {
        // The relation lists its columns in its own order, with one ebis does not read.
        let relation = [
            ("ESTDATE", DATE),
            ("NOTE", VARCHAR),
            ("ID", INT4),
            ("PHOTO", BYTEA),
            ("SCORE", FLOAT4),
            ("ENTNAME", VARCHAR),
        ];
        let read = TupleRead::new(&select(), &relation).expect("every column readable");
        let tuple = TupleData::new(vec![
            text("2006-03-01"),
            text("whatever"),
            text("7"),
            text("\\x00ff"),
            text("1.1"),
            text("乌海市第7号商贸有限公司"),
        ]);
        let row = read.row(&tuple).expect("a row");
        let mut want = Row::new();
        want.push("ID", Value::Int(7));
        want.push("ENTNAME", Value::Text("乌海市第7号商贸有限公司".to_owned()));
        want.push(
            "ESTDATE",
            Value::Date(NaiveDate::from_ymd_opt(2006, 3, 1).expect("date")),
        );
        want.push("PHOTO", Value::Bytes(vec![0, 255]));
        want.push("SCORE", Value::Float(f64::from(1.1f32)));
        assert_eq!(row, want);

        let nulls = TupleData::new(vec![
            ColumnData::null(),
            ColumnData::null(),
            text("8"),
            ColumnData::null(),
            ColumnData::null(),
            ColumnData::null(),
        ]);
        let row = read.row(&nulls).expect("a row of NULLs");
        assert_eq!(row.get("ENTNAME"), Some(&Value::Null));
        assert_eq!(row.get("ID"), Some(&Value::Int(8)));
    }

    #[test]
    fn what_a_tuple_cannot_give_exactly_is_left_to_a_read_by_key() {
        let relation = [
            ("ID", INT4),
            ("ENTNAME", VARCHAR),
            ("ESTDATE", DATE),
            ("PHOTO", BYTEA),
            ("SCORE", FLOAT4),
        ];
        let read = TupleRead::new(&select(), &relation).expect("readable");
        let with = |i: usize, c: ColumnData| {
            let mut cols = vec![
                text("1"),
                text("x"),
                text("2006-03-01"),
                text("\\x00"),
                text("1"),
            ];
            cols[i] = c;
            read.row(&TupleData::new(cols))
        };
        assert!(with(1, text("y")).is_some());
        assert_eq!(
            with(3, ColumnData::unchanged()),
            None,
            "an unchanged TOASTed value is not in the tuple"
        );
        assert_eq!(with(3, text("\\000")), None, "bytea written as escapes");
        assert_eq!(with(1, ColumnData::binary(b"x".to_vec())), None);
        assert_eq!(
            with(1, ColumnData::text(vec![0xff, 0xfe])),
            None,
            "not UTF-8"
        );
        assert_eq!(
            read.row(&TupleData::new(vec![text("1"), text("x")])),
            None,
            "a tuple shorter than its relation"
        );

        // A column the relation lacks, or has with another type, or a timestamptz.
        assert_eq!(TupleRead::new(&select(), &relation[..4]), None);
        let mut retyped = relation;
        retyped[2] = ("ESTDATE", VARCHAR);
        assert_eq!(TupleRead::new(&select(), &retyped), None);
        let stamped = [
            ("ID", INT4, Reading::I32),
            ("AT", TIMESTAMPTZ, Reading::DateTime),
        ];
        assert_eq!(
            TupleRead::new(&stamped, &[("ID", INT4), ("AT", TIMESTAMPTZ)]),
            None
        );
        const TIMESTAMP: u32 = 1114;
        let local = [
            ("ID", INT4, Reading::I32),
            ("AT", TIMESTAMP, Reading::DateTime),
        ];
        assert!(TupleRead::new(&local, &[("ID", INT4), ("AT", TIMESTAMP)]).is_some());
    }
}
