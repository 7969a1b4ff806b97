//! Precision and recall of the warehouse's open findings against a ground truth (the
//! simulator's `ground_truth.csv`): enterprise rules match on (rule, registration number);
//! unlicensed-business reports on (normalized name, matched or not).

use crate::mapping::text::norm_text as normalized;
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

/// A ground truth read from its CSV: (rule, registration number, name) per finding.
#[derive(Clone, Debug, Default)]
pub struct Truth(Vec<(String, String, String)>);

/// The header a ground-truth CSV starts with (what `ebis demo` writes).
pub const TRUTH_HEADER: &str = "rule,org_code,reg_no,name,injected";

/// Reads a ground-truth CSV (`rule,org_code,reg_no,name,injected`, as `ebis demo` writes
/// it). A file of another shape is refused with the line at fault, rather than scored as
/// if nothing were expected.
pub fn parse_truth(text: &str) -> Result<Truth, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim_start_matches('\u{feff}').trim() == TRUTH_HEADER => {}
        Some((_, header)) => {
            return Err(format!(
                "line 1: the header is `{}`, not `{TRUTH_HEADER}` (a ground truth as `ebis demo` writes it)",
                header.chars().take(80).collect::<String>()
            ));
        }
        None => return Err("the file is empty".to_owned()),
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        // rule,org_code,reg_no,"name",injected
        let mut parts = line.splitn(4, ',');
        let (Some(rule), Some(_org), Some(reg), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("line {n}: expected 5 columns ({TRUTH_HEADER})"));
        };
        if !Rule::ALL.iter().any(|r| r.name() == rule) {
            return Err(format!("line {n}: `{rule}` is not a rule"));
        }
        let Some((name, injected)) = rest.rsplit_once(',') else {
            return Err(format!("line {n}: expected 5 columns ({TRUTH_HEADER})"));
        };
        if !matches!(injected.trim(), "true" | "false") {
            return Err(format!(
                "line {n}: the last column (injected) must be true or false"
            ));
        }
        let name = name.trim_matches('"').replace("\"\"", "\"");
        out.push((rule.to_owned(), reg.to_owned(), name));
    }
    Ok(Truth(out))
}

fn key(rule: &str, reg_no: &str, name: &str) -> String {
    if rule == Rule::UnlicensedBusiness.name() {
        format!("{}|{}", normalized(name), !reg_no.is_empty())
    } else {
        reg_no.to_owned()
    }
}

/// Scores the open findings against a ground truth.
pub async fn score_against_truth(
    wh: &Warehouse,
    truth: &Truth,
) -> Result<Vec<RuleScore>, WarehouseError> {
    let client = wh.client().await?;
    let found = client
        .query(
            "select rule, coalesce(reg_no, ''), coalesce(enterprise_name, '') from compare.finding where resolved_at is null",
            &[],
        )
        .await?;
    let mut expected: BTreeMap<(String, String), isize> = BTreeMap::new();
    for (rule, reg, name) in &truth.0 {
        *expected
            .entry((rule.clone(), key(rule, reg, name)))
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
    use crate::table::Align::{Left, Right};
    let rows: Vec<Vec<String>> = scores
        .iter()
        .map(|s| {
            vec![
                s.rule.to_string(),
                (s.true_positives + s.false_negatives).to_string(),
                s.true_positives.to_string(),
                s.false_positives.to_string(),
                format!("{:.3}", s.precision()),
                format!("{:.3}", s.recall()),
            ]
        })
        .collect();
    crate::table::render(
        &[
            ("RULE", Left),
            ("EXPECTED", Right),
            ("FOUND", Right),
            ("WRONG", Right),
            ("PRECISION", Right),
            ("RECALL", Right),
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truth_of_another_shape_is_refused_with_its_line() {
        let good = format!("{TRUTH_HEADER}\nno_org_code,,150302000123452,\"乌海市某公司\",true\n");
        assert_eq!(parse_truth(&good).map(|t| t.0.len()), Ok(1));
        let err = parse_truth("rule,reg_no\nno_org_code,1\n").expect_err("wrong header");
        assert!(
            err.starts_with("line 1: the header is `rule,reg_no`"),
            "{err}"
        );
        let err = parse_truth(&format!("{TRUTH_HEADER}\nno_such_rule,,1,\"x\",true\n"))
            .expect_err("unknown rule");
        assert_eq!(err, "line 2: `no_such_rule` is not a rule");
        let err = parse_truth(&format!("{TRUTH_HEADER}\nno_org_code,,1\n")).expect_err("short");
        assert!(err.starts_with("line 2: expected 5 columns"), "{err}");
        assert_eq!(parse_truth("").expect_err("empty"), "the file is empty");
    }
}
