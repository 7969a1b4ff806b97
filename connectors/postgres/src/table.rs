//! One captured table: its columns as the catalog reports them, and the statements that
//! read it (snapshot chunks, rows by key, keys, rows after a timestamp mark).
//!
//! Names: PostgreSQL folds unquoted names to lower case, and bureaus' mappings are often
//! written in upper case (`DJ_NSRXX`, `NSRSBH`). A name in a mapping means the table or
//! column of exactly that name if there is one, else the one PostgreSQL would find for
//! it unquoted (lower case), else the one name that matches ignoring case. Names from
//! the catalog are quoted here; values always travel as text parameters, cast by the
//! server to the column's own type.

use crate::error::classify;
use crate::values::{Reading, decode, param};
use ebis_source::{Change, KeyEntry, Op, Row, SourceError, TablePlan, Value};
use std::sync::Arc;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

pub use ebis_capture::keys::{key_problem, split_table};

/// Keys per statement when rows are fetched by key.
const FETCH_CHUNK: usize = 5_000;

/// Quotes an identifier with double quotes.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The name PostgreSQL gives an identifier written without quotes: lower case.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// The one of `names` that `wanted` means (see the module's note on names).
pub fn resolve<'a>(wanted: &str, names: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    let folded = fold(wanted);
    names
        .clone()
        .find(|n| *n == wanted)
        .or_else(|| names.clone().find(|n| *n == folded))
        .or_else(|| {
            let mut matching = names.filter(|n| n.eq_ignore_ascii_case(wanted));
            let first = matching.next();
            first.filter(|_| matching.next().is_none())
        })
}

/// A catalog column: name, type as `format_type` writes it, NOT NULL.
#[derive(Clone, Debug)]
struct Column {
    name: String,
    ty: String,
    not_null: bool,
}

/// Where a table lives: its schema and name as the catalog has them, and its oid.
#[derive(Clone, Debug)]
pub struct Located {
    /// The schema.
    pub schema: String,
    /// The table's name.
    pub name: String,
    /// Its oid.
    pub oid: u32,
    /// `pg_class.relreplident`: d(efault), n(othing), f(ull), i(ndex).
    pub replica_identity: char,
    /// A partitioned table (its rows live in its partitions).
    pub partitioned: bool,
}

/// Finds a table the way a mapping names it: `TABLE` or `SCHEMA.TABLE`, the schema
/// defaulting to the session's search path.
pub async fn locate(client: &Client, written: &str) -> Result<Option<Located>, SourceError> {
    let (schema, name) = split_table(written);
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.oid, c.relreplident::text,
                    coalesce(array_position(current_schemas(false), n.nspname::name), 1000),
                    c.relkind::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND lower(c.relname) = lower($2)
               AND CASE WHEN $1::text IS NULL THEN n.nspname = ANY (current_schemas(false))
                        ELSE lower(n.nspname) = lower($1) END
             ORDER BY 5",
            &[&schema, &name],
        )
        .await
        .map_err(|e| classify(e, Some(written)))?;
    let found: Vec<(String, String, u32, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(5)))
        .collect();
    // The first schema in the search path that has a matching table.
    let schemas: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
    let Some(schema) = (match schema {
        Some(s) => resolve(s, schemas.iter().copied()),
        None => schemas.first().copied(),
    }) else {
        return Ok(None);
    };
    let in_schema = found.iter().filter(|f| f.0 == schema);
    let Some(table) = resolve(name, in_schema.clone().map(|f| f.1.as_str())) else {
        return Ok(None);
    };
    Ok(in_schema.clone().find(|f| f.1 == table).map(|f| Located {
        schema: f.0.clone(),
        name: f.1.clone(),
        oid: f.2,
        replica_identity: f.3.chars().next().unwrap_or('d'),
        partitioned: f.4 == "p",
    }))
}

/// A table ready to be read.
#[derive(Clone, Debug)]
pub struct Table {
    /// What the mappings need.
    pub plan: TablePlan,
    /// Where it lives.
    pub located: Located,
    /// `"schema"."name"`.
    pub quoted: String,
    select: String,
    /// The select list's items, one per column and expression.
    items: Vec<String>,
    readings: Vec<Reading>,
    /// The type of each select-list item (a column's own, an expression's result).
    oids: Vec<u32>,
    /// Select-list positions of the key columns.
    key_idx: Vec<usize>,
    /// Key columns, quoted, as the catalog names them.
    key_quoted: Vec<String>,
    /// Key columns' types, as `format_type` writes them (for casts of parameters).
    key_types: Vec<String>,
    /// The key columns as the catalog names them.
    pub key_names: Vec<String>,
    /// The modified column: select-list position, quoted name, type.
    modified: Option<(usize, String, String)>,
    /// Each column's name and data type, as the catalog reports them.
    pub types: Vec<(String, String)>,
    /// The columns the table's replica identity logs for a delete (every column for
    /// FULL, none for NOTHING or a table without a primary key).
    pub identity: Vec<String>,
}

impl Table {
    /// Reads the table's columns from the catalog and checks the plan against them: a
    /// missing table or column is a fatal error naming it.
    pub async fn load(client: &Client, plan: &TablePlan) -> Result<Table, SourceError> {
        let missing = || SourceError::MissingTable {
            table: plan.table.clone(),
        };
        let located = locate(client, &plan.table).await?.ok_or_else(missing)?;
        let columns: Vec<Column> = client
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod), attnotnull
                 FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
                 ORDER BY attnum",
                &[&located.oid],
            )
            .await
            .map_err(|e| classify(e, Some(&plan.table)))?
            .iter()
            .map(|r| Column {
                name: r.get(0),
                ty: r.get(1),
                not_null: r.get(2),
            })
            .collect();
        if columns.is_empty() {
            return Err(missing());
        }
        let names = || columns.iter().map(|c| c.name.as_str());
        let find = |col: &str| {
            resolve(col, names()).and_then(|n| columns.iter().position(|c| c.name == n))
        };
        for col in plan.columns.iter().chain(plan.modified_column.iter()) {
            if find(col).is_none() {
                return Err(SourceError::MissingColumn {
                    table: plan.table.clone(),
                    column: col.clone(),
                });
            }
        }
        let quoted = format!("{}.{}", quote(&located.schema), quote(&located.name));
        // The types of what the select list reads, as the server reports them for a
        // statement over every column and expression: expressions are checked here too,
        // and a broken one is named by its mapping's file, line and field.
        let mut exprs: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
        for e in &plan.expressions {
            let probe = format!("SELECT ({}) FROM {quoted} LIMIT 0", e.sql);
            if let Err(err) = client.prepare(&probe).await {
                let err = classify(err, None);
                if err.is_retryable() {
                    return Err(err);
                }
                return Err(SourceError::Expression {
                    origin: e.origin.clone(),
                    message: match err {
                        SourceError::Query(m) => m,
                        o => o.to_string(),
                    },
                });
            }
            exprs.push(format!("({})", e.sql));
        }
        let probe = format!("SELECT {} FROM {quoted} LIMIT 0", exprs.join(", "));
        let statement = client
            .prepare(&probe)
            .await
            .map_err(|e| classify(e, Some(&plan.table)))?;
        let aliases: Vec<String> = columns
            .iter()
            .map(|c| c.name.clone())
            .chain(plan.expressions.iter().map(|e| e.alias.clone()))
            .collect();
        let mut items = Vec::new();
        let mut readings = Vec::new();
        let mut oids = Vec::new();
        for ((expr, alias), col) in exprs.iter().zip(&aliases).zip(statement.columns()) {
            items.push(Reading::select_item(col.type_(), expr, &quote(alias)));
            readings.push(Reading::of(col.type_()));
            oids.push(col.type_().oid());
        }
        let mut key_idx = Vec::new();
        for k in &plan.key {
            key_idx.push(find(k).ok_or_else(|| SourceError::MissingColumn {
                table: plan.table.clone(),
                column: k.clone(),
            })?);
        }
        let key_names: Vec<String> = key_idx.iter().map(|i| columns[*i].name.clone()).collect();
        let indexes = unique_indexes(client, located.oid, &plan.table).await?;
        if !plan.trust_key {
            let unique: Vec<(String, String)> = indexes
                .iter()
                .map(|(index, column, _, _)| (index.clone(), column.clone()))
                .collect();
            let key_nullable: Vec<&str> = key_idx
                .iter()
                .filter(|i| !columns[**i].not_null)
                .map(|i| columns[*i].name.as_str())
                .collect();
            if let Some(problem) = key_problem(&key_names, &unique, &key_nullable) {
                return Err(SourceError::Key {
                    table: plan.table.clone(),
                    problem,
                });
            }
        }
        let identity = match located.replica_identity {
            'f' => columns.iter().map(|c| c.name.clone()).collect(),
            'd' => indexes
                .iter()
                .filter(|i| i.2)
                .map(|i| i.1.clone())
                .collect(),
            'i' => indexes
                .iter()
                .filter(|i| i.3)
                .map(|i| i.1.clone())
                .collect(),
            _ => Vec::new(),
        };
        let modified = plan
            .modified_column
            .as_ref()
            .and_then(|m| find(m).map(|i| (i, quote(&columns[i].name), columns[i].ty.clone())));
        Ok(Table {
            quoted,
            select: items.join(", "),
            items,
            readings,
            oids,
            key_quoted: key_names.iter().map(|k| quote(k)).collect(),
            key_types: key_idx.iter().map(|i| columns[*i].ty.clone()).collect(),
            key_names,
            key_idx,
            modified,
            types: columns
                .iter()
                .map(|c| (c.name.clone(), c.ty.clone()))
                .collect(),
            identity,
            located,
            plan: plan.clone(),
        })
    }

    /// How key column `i` is read.
    pub fn key_reading(&self, i: usize) -> Reading {
        self.readings[self.key_idx[i]]
    }

    /// The select list's columns (name, type oid, reading), when it reads nothing but
    /// the table's columns: a row of those can be taken from a log's tuple. `None`
    /// when a mapping adds an expression (only the server evaluates it).
    pub fn column_readings(&self) -> Option<Vec<(&str, u32, Reading)>> {
        if !self.plan.expressions.is_empty() {
            return None;
        }
        Some(
            self.types
                .iter()
                .zip(&self.oids)
                .zip(&self.readings)
                .map(|(((name, _), oid), reading)| (name.as_str(), *oid, *reading))
                .collect(),
        )
    }

    /// True when the table has a modified column (timestamp capture possible).
    pub fn has_modified(&self) -> bool {
        self.modified.is_some()
    }

    fn order_by(&self) -> String {
        self.key_quoted.join(", ")
    }

    /// `(k1, k2) > ($n::text::t1, …)` with parameters numbered from `first`.
    fn after_key(&self, first: usize) -> String {
        let marks: Vec<String> = self
            .key_types
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("${}::text::{ty}", first + i))
            .collect();
        format!("({}) > ({})", self.key_quoted.join(", "), marks.join(", "))
    }

    /// `WHERE <key> > (…)` and its parameters, or nothing.
    fn after_clause(&self, after: Option<&[Value]>) -> (String, Vec<Option<String>>) {
        match after {
            Some(k) => (
                format!("WHERE {}", self.after_key(1)),
                k.iter().map(param).collect(),
            ),
            None => (String::new(), Vec::new()),
        }
    }

    async fn rows(
        &self,
        client: &Client,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, SourceError> {
        tracing::trace!(table = %self.plan.table, "read");
        let found = client
            .query(sql, params)
            .await
            .map_err(|e| classify(e, Some(&self.plan.table)))?;
        // Every row of a result has the same columns: their names are taken once.
        let Some(first) = found.first() else {
            return Ok(Vec::new());
        };
        let names = Row::shared_names(
            first.columns().iter().map(|c| c.name()),
            self.readings.len(),
        );
        Ok(found.iter().map(|r| self.row(&names, r)).collect())
    }

    fn row(&self, names: &Arc<Vec<String>>, r: &tokio_postgres::Row) -> Row {
        let values = (0..r.len())
            .zip(&self.readings)
            .map(|(i, reading)| decode(r, i, *reading))
            .collect();
        Row::with_names(Arc::clone(names), values)
    }

    /// The key values of a row read by this table's select list.
    pub fn key_of(&self, row: &Row) -> Vec<Value> {
        row.values_at(&self.key_idx)
    }

    /// The modified column's value, if the table has one.
    pub fn modified_of(&self, row: &Row) -> Option<Value> {
        let (i, _, _) = self.modified.as_ref()?;
        row.value_at(*i)
    }

    /// One snapshot chunk in key order.
    pub async fn chunk(
        &self,
        client: &Client,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>, SourceError> {
        let (cond, texts) = self.after_clause(after);
        let sql = format!(
            "SELECT {} FROM {} {cond} ORDER BY {} LIMIT {limit}",
            self.select,
            self.quoted,
            self.order_by()
        );
        self.rows(client, &sql, &refs(&texts)).await
    }

    /// Keys in key order, each with the row's modified value when the table has one.
    pub async fn keys(
        &self,
        client: &Client,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<KeyEntry>, SourceError> {
        let (cond, texts) = self.after_clause(after);
        let mut items: Vec<&str> = self
            .key_idx
            .iter()
            .map(|i| self.items[*i].as_str())
            .collect();
        if let Some((i, _, _)) = &self.modified {
            items.push(&self.items[*i]);
        }
        let sql = format!(
            "SELECT {} FROM {} {cond} ORDER BY {} LIMIT {limit}",
            items.join(", "),
            self.quoted,
            self.order_by()
        );
        let found = client
            .query(&sql, &refs(&texts))
            .await
            .map_err(|e| classify(e, Some(&self.plan.table)))?;
        let width = self.key_idx.len();
        Ok(found
            .iter()
            .map(|r| {
                let key = (0..width)
                    .map(|i| decode(r, i, self.key_reading(i)))
                    .collect();
                let modified = self
                    .modified
                    .as_ref()
                    .map(|(m, _, _)| decode(r, width, self.readings[*m]));
                KeyEntry { key, modified }
            })
            .collect())
    }

    /// The current rows for some keys. Keys the table no longer has are simply absent.
    pub async fn by_keys(
        &self,
        client: &Client,
        keys: &[Vec<Value>],
    ) -> Result<Vec<Row>, SourceError> {
        let mut out = Vec::with_capacity(keys.len());
        let width = self.key_quoted.len();
        let unnest: Vec<String> = (1..=width).map(|i| format!("${i}::text[]")).collect();
        let casts: Vec<String> = self
            .key_types
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("k.c{i}::{ty}"))
            .collect();
        let aliases: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE ({}) IN (SELECT {} FROM unnest({}) AS k({}))",
            self.select,
            self.quoted,
            self.key_quoted.join(", "),
            casts.join(", "),
            unnest.join(", "),
            aliases.join(", ")
        );
        for chunk in keys.chunks(FETCH_CHUNK) {
            let columns: Vec<Vec<Option<String>>> = (0..width)
                .map(|i| chunk.iter().map(|k| k.get(i).and_then(param)).collect())
                .collect();
            let params: Vec<&(dyn ToSql + Sync)> =
                columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
            out.extend(self.rows(client, &sql, &params).await?);
        }
        Ok(out)
    }

    /// Rows after a (modified, key) mark and no later than `upto` (the source's own
    /// clock), in (modified, key) order. An empty key means "every row at that modified
    /// time".
    pub async fn after_mark(
        &self,
        client: &Client,
        modified: Option<&Value>,
        key: &[Value],
        upto: &Value,
        limit: usize,
    ) -> Result<Vec<Row>, SourceError> {
        let Some((_, mc, ty)) = &self.modified else {
            return Ok(Vec::new());
        };
        let mut texts: Vec<Option<String>> = vec![param(upto)];
        let cond = match modified {
            None => format!("{mc} <= $1::text::{ty}"),
            Some(m) if key.is_empty() => {
                texts.push(param(m));
                format!("{mc} <= $1::text::{ty} AND {mc} >= $2::text::{ty}")
            }
            Some(m) => {
                texts.push(param(m));
                texts.extend(key.iter().map(param));
                format!(
                    "{mc} <= $1::text::{ty} AND ({mc} > $2::text::{ty} OR ({mc} = $2::text::{ty} AND {}))",
                    self.after_key(3)
                )
            }
        };
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond} ORDER BY {mc}, {} LIMIT {limit}",
            self.select,
            self.quoted,
            self.order_by()
        );
        self.rows(client, &sql, &refs(&texts)).await
    }

    /// Rows whose modified time lies in [from, to], in (modified, key) order.
    pub async fn modified_between(
        &self,
        client: &Client,
        from: &Value,
        to: &Value,
        limit: usize,
    ) -> Result<Vec<Row>, SourceError> {
        let Some((_, mc, ty)) = &self.modified else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {} FROM {} WHERE {mc} >= $1::text::{ty} AND {mc} <= $2::text::{ty} ORDER BY {mc}, {} LIMIT {limit}",
            self.select,
            self.quoted,
            self.order_by()
        );
        let texts = [param(from), param(to)];
        self.rows(client, &sql, &refs(&texts)).await
    }

    /// The row with the largest modified value in the table, its modified value.
    pub async fn newest(&self, client: &Client) -> Result<Option<Value>, SourceError> {
        let Some((i, mc, _)) = &self.modified else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {} FROM {} WHERE {mc} IS NOT NULL ORDER BY {mc} DESC LIMIT 1",
            self.select, self.quoted
        );
        let rows = self.rows(client, &sql, &[]).await?;
        Ok(rows.first().and_then(|r| r.value_at(*i)))
    }

    /// Number of rows, for progress: the planner's estimate, or a count.
    pub async fn count(&self, client: &Client) -> Result<u64, SourceError> {
        // `reltuples` is kept by VACUUM, ANALYZE and CREATE INDEX (and scaled to the
        // table's current pages by the planner, as here): free, where a count reads the
        // whole table. Never analyzed (-1) or empty then, the table is counted.
        let estimate = client
            .query_one(
                "SELECT CASE WHEN c.reltuples > 0 AND c.relpages > 0
                             THEN (c.reltuples / c.relpages
                                   * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint
                        END
                 FROM pg_class c WHERE c.oid = $1::text::regclass",
                &[&self.quoted],
            )
            .await
            .map_err(|e| classify(e, Some(&self.plan.table)))?;
        if let Some(n) = estimate.get::<_, Option<i64>>(0)
            && n > 0
        {
            return Ok(u64::try_from(n).unwrap_or(0));
        }
        let row = client
            .query_one(&format!("SELECT count(*) FROM {}", self.quoted), &[])
            .await
            .map_err(|e| classify(e, Some(&self.plan.table)))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// An upsert change for a row read from this table.
    pub fn upsert(&self, row: Row, version: i64) -> Change {
        Change {
            table: self.plan.table.clone(),
            op: Op::Upsert,
            key: self.key_of(&row),
            row,
            version,
            commit_time: None,
        }
    }
}

/// Text parameters as the driver takes them.
fn refs(texts: &[Option<String>]) -> Vec<&(dyn ToSql + Sync)> {
    texts.iter().map(|t| t as &(dyn ToSql + Sync)).collect()
}

/// The table's unique indexes (no partial ones): (index, column, is primary, is the
/// replica identity index).
async fn unique_indexes(
    client: &Client,
    oid: u32,
    table: &str,
) -> Result<Vec<(String, String, bool, bool)>, SourceError> {
    Ok(client
        .query(
            "SELECT i.indexrelid::regclass::text, a.attname::text, i.indisprimary, i.indisreplident
             FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
             WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL",
            &[&oid],
        )
        .await
        .map_err(|e| classify(e, Some(table)))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_name_means_the_exact_then_the_folded_then_the_only_case_insensitive_name() {
        let names = ["kit_ent", "Mixed", "MIXED2", "mixed2"];
        let find = |w: &str| resolve(w, names.iter().copied());
        assert_eq!(find("KIT_ENT"), Some("kit_ent"));
        assert_eq!(find("kit_ent"), Some("kit_ent"));
        assert_eq!(find("Mixed"), Some("Mixed"));
        assert_eq!(find("MIXED"), Some("Mixed"), "the only one ignoring case");
        assert_eq!(find("MIXED2"), Some("MIXED2"), "exact first");
        assert_eq!(find("Mixed2"), Some("mixed2"), "then folded");
        assert_eq!(find("other"), None);
    }
}
