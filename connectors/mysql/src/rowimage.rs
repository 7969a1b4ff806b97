//! Row images of the binary log walked for their key columns only.
//!
//! mysql_common's `BinlogRow` builds a `Column` for every column of every row it decodes
//! (schema, table and column name strings, the table map's optional metadata parsed
//! again for each row) and copies every value: 48 % of the ebis process's samples in a
//! profile of a binlog catch-up, for rows of which binlog capture keeps one or two key
//! values (walking them instead cut the process's CPU in that catch-up by a third). A
//! [`Layout`], taken once per table map from the first row decoded that way, walks the
//! following full images value by value (each value still read by mysql_common's
//! `BinlogValue`, so every column type is read exactly as it reads it) and keeps the
//! values asked for.
//!
//! Only full images (every column present, as `binlog_row_image = FULL` logs them) of
//! ordinary rows events are walked; a minimal image or a MySQL partial JSON update is
//! decoded the slow way.

use mysql_async::binlog::events::{RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_common::io::ParseBuf;
use std::io;

/// How a table's full row images are laid out: per column, what reading its value
/// needs (type, the table map's metadata for it, whether it is unsigned).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Layout {
    columns: Vec<(ColumnType, Vec<u8>, bool)>,
}

impl Layout {
    /// The layout of `table`'s rows, from its table map and one full image decoded by
    /// mysql_common (whose columns carry the unsigned flags the map's optional metadata
    /// gives); `None` when the image is not full.
    pub(crate) fn of(table: &TableMapEvent<'_>, image: &BinlogRow) -> Option<Layout> {
        let described = image.columns_ref();
        let n = usize::try_from(table.columns_count()).ok()?;
        if described.len() != n {
            return None;
        }
        let mut columns = Vec::with_capacity(n);
        for (i, column) in described.iter().enumerate() {
            let ty = table.get_column_type(i).ok()??;
            columns.push((
                ty,
                table.get_column_metadata(i).unwrap_or(&[]).to_vec(),
                column.flags().contains(ColumnFlags::UNSIGNED_FLAG),
            ));
        }
        Some(Layout { columns })
    }

    /// Whether every image of `rows` is a full image of this layout's table, which
    /// [`Layout::read`] can walk.
    pub(crate) fn walks(&self, rows: &RowsEventData<'_>) -> bool {
        let n = self.columns.len();
        !matches!(rows, RowsEventData::PartialUpdateRowsEvent(_))
            && usize::try_from(rows.num_columns()).is_ok_and(|c| c == n)
            && [rows.columns_before_image(), rows.columns_after_image()]
                .into_iter()
                .flatten()
                .all(|present| present.count_ones() == n)
    }

    /// Reads one full image from the start of `data`, and moves `data` past it: the
    /// values of the columns at `wanted`, in that order, or of every column in image
    /// order when `wanted` is `None` (SQL NULL as `Value::NULL`, as mysql_common gives it).
    pub(crate) fn read(
        &self,
        data: &mut &[u8],
        wanted: Option<&[usize]>,
    ) -> io::Result<Vec<BinlogValue<'static>>> {
        let mut buf = ParseBuf(data);
        let nulls: &[u8] = buf.parse(self.columns.len().div_ceil(8))?;
        let n = wanted.map_or(self.columns.len(), <[usize]>::len);
        let mut out = vec![BinlogValue::Value(mysql_async::Value::NULL); n];
        for (i, (ty, meta, unsigned)) in self.columns.iter().enumerate() {
            if nulls[i / 8] & (1 << (i % 8)) != 0 {
                continue;
            }
            let value: BinlogValue<'_> = buf.parse((*ty, meta.as_slice(), *unsigned, false))?;
            let slot = match wanted {
                None => Some(i),
                Some(w) => w.iter().position(|w| *w == i),
            };
            if let Some(slot) = slot {
                out[slot] = value.into_owned();
            }
        }
        *data = &data[data.len() - buf.0.len()..];
        Ok(out)
    }
}

/// The images of one row of `rows`, before then after (each present when the event
/// type logs it), walked with `layout`; each image's values at `wanted` (`None`: every
/// column).
pub(crate) fn row(
    rows: &RowsEventData<'_>,
    layout: &Layout,
    data: &mut &[u8],
    wanted: Option<&[usize]>,
) -> io::Result<[Option<Vec<BinlogValue<'static>>>; 2]> {
    let before = rows.columns_before_image().is_some();
    let before = before.then(|| layout.read(data, wanted)).transpose()?;
    let after = rows.columns_after_image().is_some();
    let after = after.then(|| layout.read(data, wanted)).transpose()?;
    Ok([before, after])
}
