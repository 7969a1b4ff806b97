//! Precision and recall of the warehouse's open findings against a ground truth (the
//! simulator's `ground_truth.csv`): enterprise rules match on (rule, registration number);
//! unlicensed-business reports on (normalized name, matched or not).

use crate::demo::truth::normalized;
use crate::rules::Rule;
use crate::warehouse::{Warehouse, WarehouseError};
use serde::Serialize;
use std::collections::BTreeMap;

/// One rule's score.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleScore {
    /// Rule name.
    pub rule: &'static str,
    /// Expected and found.
    pub true_positives: usize,
    /// Found, not expected.
    pub false_positives: usize,
    /// Expected, not found.
    pub false_negatives: usize,
}

impl RuleScore {
    /// TP / (TP + FP); 1 when nothing was found.
    pub fn precision(&self) -> f64 {
        let d = self.true_positives + self.false_positives;
        if d == 0 {
            1.0
        } else {
            self.true_positives as f64 / d as f64
        }
    }

    /// TP / (TP + FN); 1 when nothing was expected.
    pub fn recall(&self) -> f64 {
        let d = self.true_positives + self.false_negatives;
        if d == 0 {
            1.0
        } else {
            self.true_positives as f64 / d as f64
        }
    }
}

fn parse_truth(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        // rule,org_code,reg_no,"name",injected
        let mut parts = line.splitn(4, ',');
        let (Some(rule), Some(_org), Some(reg), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let name = rest
            .rsplit_once(',')
            .map(|(n, _)| n.trim_matches('"').replace("\"\"", "\""))
            .unwrap_or_default();
        out.push((rule.to_owned(), reg.to_owned(), name));
    }
    out
}

fn key(rule: &str, reg_no: &str, name: &str) -> String {
    if rule == Rule::UnlicensedBusiness.name() {
        format!("{}|{}", normalized(name), !reg_no.is_empty())
    } else {
        reg_no.to_owned()
    }
}

/// Scores the open findings against a ground-truth CSV.
pub async fn score_against_truth(
    wh: &Warehouse,
    truth_csv: &str,
) -> Result<Vec<RuleScore>, WarehouseError> {
    let client = wh.client().await?;
    let found = client
        .query(
            "select rule, coalesce(reg_no, ''), coalesce(enterprise_name, '') from compare.finding where resolved_at is null",
            &[],
        )
        .await?;
    let mut expected: BTreeMap<(String, String), isize> = BTreeMap::new();
    for (rule, reg, name) in parse_truth(truth_csv) {
        *expected
            .entry((rule.clone(), key(&rule, &reg, &name)))
            .or_default() += 1;
    }
    let mut actual: BTreeMap<(String, String), isize> = BTreeMap::new();
    for r in &found {
        let (rule, reg, name): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        *actual
            .entry((rule.clone(), key(&rule, &reg, &name)))
            .or_default() += 1;
    }
    Ok(Rule::ALL
        .iter()
        .map(|rule| {
            let mut s = RuleScore {
                rule: rule.name(),
                ..RuleScore::default()
            };
            let keys: std::collections::BTreeSet<&String> = expected
                .keys()
                .chain(actual.keys())
                .filter(|(r, _)| r == rule.name())
                .map(|(_, k)| k)
                .collect();
            for k in keys {
                let e = expected
                    .get(&(rule.name().to_owned(), k.clone()))
                    .copied()
                    .unwrap_or(0);
                let a = actual
                    .get(&(rule.name().to_owned(), k.clone()))
                    .copied()
                    .unwrap_or(0);
                s.true_positives += e.min(a) as usize;
                s.false_positives += (a - e).max(0) as usize;
                s.false_negatives += (e - a).max(0) as usize;
            }
            s
        })
        .collect())
}

/// The scores as a text table.
pub fn render_scores(scores: &[RuleScore]) -> String {
    let mut out = format!(
        "{:<32} {:>8} {:>6} {:>6} {:>10} {:>8}\n",
        "RULE", "EXPECTED", "FOUND", "WRONG", "PRECISION", "RECALL"
    );
    for s in scores {
        out.push_str(&format!(
            "{:<32} {:>8} {:>6} {:>6} {:>10.3} {:>8.3}\n",
            s.rule,
            s.true_positives + s.false_negatives,
            s.true_positives,
            s.false_positives,
            s.precision(),
            s.recall()
        ));
    }
    out
}
