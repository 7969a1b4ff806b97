//! The consistency comparison from the application's side: run it (`compare.refresh()` in
//! the warehouse does the work), summarize a run per rule, export work lists, and score
//! findings against a simulator's ground truth.

mod export;
mod score;

pub use export::{ExportError, ExportFormat, ExportOptions, export_worklists};
pub use score::{RuleScore, TRUTH_HEADER, Truth, parse_truth, render_scores, score_against_truth};

use crate::rules::Rule;
use crate::warehouse::{Warehouse, WarehouseError};
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;

/// One rule's state after a run.
#[derive(Clone, Debug, Serialize)]
pub struct RuleSummary {
    /// Rule name.
    pub rule: &'static str,
    /// Chinese label.
    pub label: &'static str,
    /// Open findings.
    pub open: i64,
    /// First seen in this run.
    pub new: i64,
    /// Resolved in this run.
    pub resolved: i64,
}

/// A comparison run.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Run id.
    pub run: i64,
    /// The as-of date it used.
    pub as_of: NaiveDate,
    /// "full" (every enterprise) or "incremental" (only those changed since the last run,
    /// and those it held back).
    pub kind: String,
    /// Enterprises an incremental run re-evaluated.
    pub evaluated: Option<i64>,
    /// Seconds it took.
    pub seconds: f64,
    /// Per rule.
    pub rules: Vec<RuleSummary>,
    /// Candidate findings held back because a bureau they rest on is not complete up to
    /// their evidence yet, per such bureau.
    pub held_back: BTreeMap<String, i64>,
    /// Unresolved rejected rows at the time of the run, per bureau and record kind:
    /// findings resting on those bureaus may be wrong.
    pub rejections: BTreeMap<String, BTreeMap<String, i64>>,
}

impl Warehouse {
    /// Runs the comparison once — incremental when it can be — and summarizes it.
    pub async fn compare(&self) -> Result<RunSummary, WarehouseError> {
        self.compare_run(false).await
    }

    /// Runs the comparison once over every enterprise and summarizes it.
    pub async fn compare_full(&self) -> Result<RunSummary, WarehouseError> {
        self.compare_run(true).await
    }

    async fn compare_run(&self, full: bool) -> Result<RunSummary, WarehouseError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let sql = if full {
            "select compare.refresh_full()"
        } else {
            "select compare.refresh()"
        };
        let run: i64 = tx.query_one(sql, &[]).await?.get(0);
        tx.commit().await?;
        let meta = client
            .query_one(
                "select as_of, extract(epoch from finished_at - started_at)::float8, held_back, rejections,
                        kind, evaluated
                 from compare.run where id = $1",
                &[&run],
            )
            .await?;
        let rows = client
            .query(
                "select rule,
                        count(*) filter (where resolved_at is null),
                        count(*) filter (where resolved_at is null and first_run = $1),
                        count(*) filter (where resolved_at is not null and last_run < $1
                                         and resolved_at >= (select started_at from compare.run where id = $1))
                 from compare.finding group by rule",
                &[&run],
            )
            .await?;
        let rules = Rule::ALL
            .iter()
            .map(|r| {
                let row = rows.iter().find(|x| x.get::<_, String>(0) == r.name());
                RuleSummary {
                    rule: r.name(),
                    label: r.label(),
                    open: row.map(|x| x.get(1)).unwrap_or(0),
                    new: row.map(|x| x.get(2)).unwrap_or(0),
                    resolved: row.map(|x| x.get(3)).unwrap_or(0),
                }
            })
            .collect();
        Ok(RunSummary {
            run,
            as_of: meta.get(0),
            seconds: meta.get(1),
            rules,
            held_back: serde_json::from_value(meta.get(2)).unwrap_or_default(),
            rejections: serde_json::from_value(meta.get(3)).unwrap_or_default(),
            kind: meta.get(4),
            evaluated: meta.get(5),
        })
    }

    /// Sets the date the rules are evaluated at (`None`: today).
    pub async fn set_as_of(&self, as_of: Option<NaiveDate>) -> Result<(), WarehouseError> {
        let client = self.client().await?;
        let value = as_of.map(|d| d.to_string()).unwrap_or_default();
        client
            .execute(
                "update compare.setting set value = $1 where key = 'as_of'",
                &[&value],
            )
            .await?;
        Ok(())
    }
}

impl RunSummary {
    /// "full", or "incremental, N enterprises re-evaluated".
    pub fn scope(&self) -> String {
        match self.evaluated {
            Some(n) if self.kind == "incremental" => {
                format!("incremental, {n} enterprises re-evaluated")
            }
            _ => self.kind.clone(),
        }
    }

    /// As a text table.
    pub fn render(&self) -> String {
        use crate::table::Align::{Left, Right};
        let mut out = format!(
            "comparison run {} ({}) as of {} took {:.2} s\n",
            self.run,
            self.scope(),
            self.as_of,
            self.seconds
        );
        let mut rows: Vec<Vec<String>> = self
            .rules
            .iter()
            .map(|r| {
                vec![
                    r.rule.to_string(),
                    r.label.to_string(),
                    r.open.to_string(),
                    r.new.to_string(),
                    r.resolved.to_string(),
                ]
            })
            .collect();
        let total: i64 = self.rules.iter().map(|r| r.open).sum();
        rows.push(vec![
            "total".to_owned(),
            String::new(),
            total.to_string(),
            String::new(),
            String::new(),
        ]);
        out.push_str(&crate::table::render(
            &[
                ("RULE", Left),
                ("", Left),
                ("OPEN", Right),
                ("NEW", Right),
                ("RESOLVED", Right),
            ],
            &rows,
        ));
        if !self.held_back.is_empty() {
            let per: Vec<String> = self
                .held_back
                .iter()
                .map(|(b, n)| format!("{b} {n}"))
                .collect();
            out.push_str(&format!(
                "held back until their bureaus are complete up to the evidence (see ebis status): {}\n",
                per.join(", ")
            ));
        }
        if !self.rejections.is_empty() {
            let per: Vec<String> = self
                .rejections
                .iter()
                .map(|(b, kinds)| {
                    let n: i64 = kinds.values().sum();
                    let detail: Vec<String> =
                        kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
                    format!("{b} {n} ({})", detail.join(", "))
                })
                .collect();
            out.push_str(&format!(
                "unresolved rejected rows (findings resting on these bureaus may be wrong; see ebis.quarantine): {}\n",
                per.join("; ")
            ));
        }
        out
    }
}

/// Runs the comparison every `every` until shutdown (the `compare.every` of `ebis run`).
/// A failed run is logged and retried at the next tick.
pub async fn run_on_schedule(
    wh: Warehouse,
    every: std::time::Duration,
    mut shutdown: crate::pipeline::Shutdown,
) {
    loop {
        if shutdown.sleep(every).await {
            return;
        }
        match wh.compare().await {
            Ok(run) => {
                let open: i64 = run.rules.iter().map(|r| r.open).sum();
                let new: i64 = run.rules.iter().map(|r| r.new).sum();
                tracing::info!(
                    run = run.run,
                    open,
                    new,
                    seconds = run.seconds,
                    "comparison run"
                );
            }
            Err(e) => tracing::warn!(error = %e, "comparison run failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lines_up_with_chinese_labels() {
        let rules = crate::rules::Rule::ALL
            .iter()
            .enumerate()
            .map(|(i, r)| RuleSummary {
                rule: r.name(),
                label: r.label(),
                open: (i as i64) * 137,
                new: i as i64,
                resolved: 0,
            })
            .collect();
        let run = RunSummary {
            run: 7,
            as_of: NaiveDate::from_ymd_opt(2026, 12, 3).expect("date"),
            kind: "full".to_owned(),
            evaluated: None,
            seconds: 1.5,
            rules,
            held_back: BTreeMap::new(),
            rejections: BTreeMap::new(),
        };
        let text = run.render();
        let table: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(table.len(), 1 + 14 + 1, "header, the rules, total:\n{text}");
        // Every row's last number ends in the same display column as the header's.
        let width = |s: &str| unicode_width::UnicodeWidthStr::width(s);
        let rows = &table[..table.len() - 1];
        assert!(
            rows.iter().all(|l| width(l) == width(table[0])),
            "misaligned:\n{text}"
        );
        assert!(
            rows.iter()
                .any(|l| l.contains(crate::rules::Rule::ALL[0].label())),
            "{text}"
        );
    }
}
