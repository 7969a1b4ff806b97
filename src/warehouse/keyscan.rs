//! Comparing a source table's keys with the warehouse, for capture modes that cannot see
//! everything by themselves: rows deleted at the source (timestamp capture, and after a
//! re-snapshot), and — where the table has a modified column — rows the capture's mark
//! has already passed (a late commit, a client clock behind, an application that sets the
//! column, a row deleted and then re-created with an older time).
//!
//! The warehouse side is taken first: each live key of the source in the table's record
//! kinds with the modified value its raw row holds, and the open quarantine entries (a
//! rejected row is known too). The source's keys are then streamed into a temporary
//! table. All of it lives on one dedicated connection, so memory stays bounded however
//! large the table.

use super::{Warehouse, WarehouseError};
use postgres_protocol::escape::escape_identifier;
use tokio_postgres::Client;

/// An open key comparison.
pub struct KeyScan {
    client: Client,
}

impl Warehouse {
    /// Starts a comparison of `table` of `source`: records the warehouse's live keys in the
    /// given record kinds and the unresolved quarantine entries of the table, each with
    /// the `modified_column` value of its raw row when one is given.
    pub async fn start_key_scan(
        &self,
        source: &str,
        table: &str,
        kinds: &[&str],
        modified_column: Option<&str>,
    ) -> Result<KeyScan, WarehouseError> {
        let client = self.dedicated().await?;
        // The raw row's column names are the source's; the mapping may spell them in
        // another case. An exchange row's raw row is its values (migration 0053), at the
        // column's place in its list (`l`), or an object written before.
        let from_object = |raw: &str| {
            format!(
                "coalesce({raw} ->> $2, (select e.value from json_each_text({raw}::json) e
                                         where lower(e.key) = lower($2) limit 1))"
            )
        };
        let (modified, held_modified, layouts, join) = if modified_column.is_some() {
            (
                format!(
                    "case when t.raw_layout is null then {} else t.raw_row ->> l.at end",
                    from_object("t.raw_row")
                ),
                from_object("raw_row"),
                "with l as (
                     select layout, coalesce(array_position(columns, $2),
                                             (select u.at from unnest(columns) with ordinality u(c, at)
                                              where lower(u.c) = lower($2) limit 1))::int - 1 as at
                     from ebis.raw_layout)",
                "left join l on l.layout = t.raw_layout",
            )
        } else {
            ("null::text".to_owned(), "null::text".to_owned(), "", "")
        };
        let union = kinds
            .iter()
            .map(|k| {
                format!(
                    "select t.source_key, {modified} as modified from exchange.{} t {join}
                     where t.source = $1 and t.deleted_at is null",
                    escape_identifier(k)
                )
            })
            .collect::<Vec<_>>()
            .join(" union all ");
        client
            .batch_execute(
                "create temp table ebis_scan_src (source_key text primary key, modified text, candidate boolean not null);
                 create temp table ebis_scan_wh (source_key text primary key, modified text);
                 create temp table ebis_scan_held (source_key text primary key, modified text);",
            )
            .await?;
        let column = modified_column.unwrap_or("");
        client
            .execute(
                &format!(
                    "insert into ebis_scan_wh {layouts} select source_key, min(modified) from ({union}) k
                     where $2::text is not null group by source_key"
                ),
                &[&source, &column],
            )
            .await?;
        client
            .execute(
                &format!(
                    "insert into ebis_scan_held select source_key, min({held_modified}) from ebis.quarantine
                     where source = $1 and resolved_at is null and lower(source_table) = lower($3) and record_kind = any($4)
                       and $2::text is not null
                     group by source_key"
                ),
                &[&source, &column, &table, &kinds],
            )
            .await?;
        Ok(KeyScan { client })
    }
}

impl KeyScan {
    /// Adds keys the source has, with their rows' modified values as text, and whether
    /// each may be read again when the warehouse does not hold it as it is (rows the
    /// capture's polling will read anyway are not).
    pub async fn add(&self, keys: &[(String, Option<String>, bool)]) -> Result<(), WarehouseError> {
        let texts: Vec<&str> = keys.iter().map(|(k, _, _)| k.as_str()).collect();
        let modified: Vec<Option<&str>> = keys.iter().map(|(_, m, _)| m.as_deref()).collect();
        let candidate: Vec<bool> = keys.iter().map(|(_, _, c)| *c).collect();
        self.client
            .execute(
                "insert into ebis_scan_src select * from unnest($1::text[], $2::text[], $3::bool[])
                 on conflict do nothing",
                &[&texts, &modified, &candidate],
            )
            .await?;
        Ok(())
    }

    /// Keys not to read again after all (written while the scan ran: polling reads them).
    pub async fn exclude(&self, keys: &[String]) -> Result<(), WarehouseError> {
        self.client
            .execute(
                "update ebis_scan_src set candidate = false where source_key = any($1)",
                &[&keys],
            )
            .await?;
        Ok(())
    }

    /// The keys the warehouse holds live that the source does not (deleted there).
    pub async fn missing(&self) -> Result<Vec<String>, WarehouseError> {
        let rows = self
            .client
            .query(
                "select source_key from ebis_scan_wh except select source_key from ebis_scan_src order by 1",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The source's keys the warehouse does not know as they are now: not held live nor in
    /// quarantine, or held with another modified value. Only meaningful when the scan was
    /// started with a modified column.
    pub async fn stale(&self) -> Result<Vec<String>, WarehouseError> {
        let rows = self
            .client
            .query(
                "select s.source_key from ebis_scan_src s
                 left join ebis_scan_wh w using (source_key)
                 left join ebis_scan_held h using (source_key)
                 where s.candidate and ((w.source_key is null and h.source_key is null)
                    or (w.source_key is not null and w.modified is distinct from s.modified)
                    or (w.source_key is null and h.modified is distinct from s.modified))
                 order by 1",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
