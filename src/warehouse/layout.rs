//! Raw rows' column lists. An exchange row keeps its source row's values as a JSON array
//! (`raw_row`) and the number of its column list (`raw_layout`, a row of
//! `ebis.raw_layout`), so the column names are stored once per list instead of in every
//! row (migration 0053). `ebis.raw_row(raw_layout, raw_row)` gives the row back as an
//! object.
//!
//! Each process numbers the lists it meets once, through `ebis.raw_layout_of`, before the
//! apply transaction that uses them (a list numbered in a transaction that rolled back
//! would be gone), and remembers them: the warehouse never deletes a list.

use super::batch::{ApplyBatch, RawRow};
use super::{Warehouse, WarehouseError};
use std::collections::HashMap;
use std::sync::Arc;

/// The lists this process has numbered, by their names.
pub(super) type Known = Arc<std::sync::Mutex<HashMap<Vec<String>, i32>>>;

/// A batch's column lists' numbers, by the address of the list its rows share.
#[derive(Debug, Default)]
pub(super) struct Layouts(HashMap<usize, i32>);

impl Layouts {
    /// The number of `raw`'s column list.
    ///
    /// # Panics
    /// When the list is not one of the batch's ([`Warehouse::raw_layouts`] numbers each).
    pub(super) fn of(&self, raw: &RawRow) -> i32 {
        self.0[&address(raw)]
    }
}

fn address(raw: &RawRow) -> usize {
    Arc::as_ptr(raw.names()) as usize
}

impl Warehouse {
    /// The numbers of the column lists of `batch`'s records, those this process has not
    /// met yet numbered now (each in its own statement, committed at once).
    pub(super) async fn raw_layouts(
        &self,
        client: &tokio_postgres::Client,
        batch: &ApplyBatch,
    ) -> Result<Layouts, WarehouseError> {
        let mut layouts = Layouts::default();
        let mut unknown: Vec<(usize, Arc<Vec<String>>)> = Vec::new();
        {
            let known = self.layouts.lock().expect("the layouts' lock");
            let mut last = None;
            for (_, kb) in batch.kinds.values() {
                for r in &kb.upserts {
                    let at = address(&r.raw_row);
                    // The rows of one read share one list: most rows are the last one's.
                    if last == Some(at) || layouts.0.contains_key(&at) {
                        last = Some(at);
                        continue;
                    }
                    last = Some(at);
                    match known.get(r.raw_row.names().as_slice()) {
                        Some(id) => {
                            layouts.0.insert(at, *id);
                        }
                        None => {
                            if !unknown.iter().any(|(a, _)| *a == at) {
                                unknown.push((at, Arc::clone(r.raw_row.names())));
                            }
                        }
                    }
                }
            }
        }
        for (at, names) in unknown {
            let id: i32 = client
                .query_one("select ebis.raw_layout_of($1)", &[names.as_ref()])
                .await?
                .get(0);
            self.layouts
                .lock()
                .expect("the layouts' lock")
                .insert(names.as_ref().clone(), id);
            layouts.0.insert(at, id);
        }
        Ok(layouts)
    }
}
