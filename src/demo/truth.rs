//! The ground truth: the consistency rules evaluated on the simulated world itself, with
//! the same thresholds and normalization as the warehouse's views. What the warehouse
//! reports is compared with this.

use super::world::{AicState, Enterprise, Tax, World};
use crate::identifiers::{is_id_card, is_org_code, is_reg_no, is_taxpayer_id};
use crate::indicators::Bureau;
use crate::rules::Rule;
use chrono::{Days, NaiveDate};
use serde::Serialize;
use std::collections::BTreeSet;

/// Thresholds of the rules (the warehouse keeps the same in `compare.setting`).
#[derive(Clone, Debug)]
pub struct Thresholds {
    /// Days to register for tax after AIC registration.
    pub tax_registration_days: u64,
    /// Days tax has to deregister after AIC closes.
    pub aic_closed_grace_days: u64,
    /// Days AIC has to deregister after tax deregisters.
    pub tax_closed_grace_days: u64,
    /// Days to obtain an org code.
    pub org_code_days: u64,
    /// Days AIC has to act on a revocation request.
    pub revocation_request_days: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            tax_registration_days: 30,
            aic_closed_grace_days: 15,
            tax_closed_grace_days: 30,
            org_code_days: 30,
            revocation_request_days: 60,
        }
    }
}

/// One expected finding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Truth {
    /// The rule.
    pub rule: &'static str,
    /// The enterprise's org code (as QTS issued it), if it has one.
    pub org_code: String,
    /// Its registration number (AIC), if it has one.
    pub reg_no: String,
    /// Name (AIC's, or as reported).
    pub name: String,
    /// True when this discrepancy was injected on purpose (false: a consequence of another).
    pub injected: bool,
}

use crate::mapping::text::norm_text as normalized;

fn older_than(d: NaiveDate, days: u64, as_of: NaiveDate) -> bool {
    d + Days::new(days) < as_of
}

/// Every finding the rules must produce on this world.
pub fn ground_truth(world: &World, t: &Thresholds) -> Vec<Truth> {
    let as_of = world.options.as_of;
    let covered = |d: &str| world.options.ltax_covers.iter().any(|c| c == d);
    let mut out = BTreeSet::new();
    for e in &world.enterprises {
        let org = e
            .qts
            .as_ref()
            .map(|q| q.org_code.clone())
            .unwrap_or_default();
        let mut add = |rule: Rule| {
            out.insert(Truth {
                rule: rule.name(),
                org_code: org.clone(),
                reg_no: e.reg_no.clone(),
                name: e.name.clone(),
                injected: e.injected.contains(&rule),
            });
        };
        let active = e.aic == AicState::Active;
        let taxes: Vec<(Bureau, &Tax)> = [
            (Bureau::Ntax, e.ntax.as_ref()),
            (Bureau::Ltax, e.ltax.as_ref()),
        ]
        .into_iter()
        .filter_map(|(b, t)| t.map(|t| (b, t)))
        .collect();

        // 1. registered_not_tax_registered
        if active
            && older_than(e.established, t.tax_registration_days, as_of)
            && (e.ntax.is_none() || (covered(&e.district) && e.ltax.is_none()))
        {
            add(Rule::RegisteredNotTaxRegistered);
        }
        // 2. aic_closed_tax_active
        let closed_on = match &e.aic {
            AicState::Deregistered(d, _) | AicState::Revoked(d, _) => Some(*d),
            AicState::Active => None,
        };
        if closed_on.is_some_and(|d| older_than(d, t.aic_closed_grace_days, as_of))
            && taxes.iter().any(|(_, x)| x.active())
        {
            add(Rule::AicClosedTaxActive);
        }
        // 3. tax_closed_aic_active
        if active
            && taxes.iter().any(|(_, x)| {
                x.dereg
                    .as_ref()
                    .is_some_and(|(_, d, _)| older_than(*d, t.tax_closed_grace_days, as_of))
            })
        {
            add(Rule::TaxClosedAicActive);
        }
        // 4. name_mismatch (AIC against each other bureau)
        let name = normalized(&e.name);
        if taxes.iter().any(|(_, x)| normalized(&x.name) != name)
            || e.qts.as_ref().is_some_and(|q| normalized(&q.name) != name)
        {
            add(Rule::NameMismatch);
        }
        // 5. legal_rep_mismatch
        let rep = normalized(&e.rep.name);
        if taxes.iter().any(|(_, x)| normalized(&x.rep) != rep) {
            add(Rule::LegalRepMismatch);
        }
        // 6. address_mismatch
        let addr = normalized(&e.address);
        if taxes.iter().any(|(_, x)| normalized(&x.address) != addr) {
            add(Rule::AddressMismatch);
        }
        // 7. org_code_conflict: valid codes held by tax for this reg_no differ from QTS's
        if let Some(q) = &e.qts
            && taxes.iter().any(|(_, x)| {
                x.org_code
                    .as_deref()
                    .is_some_and(|c| is_org_code(c) && c != q.org_code)
            })
        {
            add(Rule::OrgCodeConflict);
        }
        // 8. no_org_code
        if active && e.qts.is_none() && older_than(e.established, t.org_code_days, as_of) {
            add(Rule::NoOrgCode);
        }
        // 9. org_code_voided_active
        if e.qts.as_ref().is_some_and(|q| q.voided.is_some())
            && (active || taxes.iter().any(|(_, x)| x.active()))
        {
            add(Rule::OrgCodeVoidedActive);
        }
        // 10. abnormal_taxpayer_active
        if active && taxes.iter().any(|(_, x)| x.abnormal_now()) {
            add(Rule::AbnormalTaxpayerActive);
        }
        // 11. revocation_request_pending
        if active
            && taxes.iter().any(|(_, x)| {
                x.requests
                    .iter()
                    .any(|(_, d, _)| older_than(*d, t.revocation_request_days, as_of))
            })
        {
            add(Rule::RevocationRequestPending);
        }
        // 13. ntax_ltax_mismatch (only where local tax is connected)
        if covered(&e.district) {
            let one_sided = match (&e.ntax, &e.ltax) {
                (Some(x), None) | (None, Some(x)) => {
                    older_than(x.registered, t.tax_registration_days, as_of)
                }
                _ => false,
            };
            let different_ids = match (&e.ntax, &e.ltax) {
                (Some(n), Some(l)) => {
                    is_taxpayer_id(&n.taxpayer_id)
                        && is_taxpayer_id(&l.taxpayer_id)
                        && n.taxpayer_id != l.taxpayer_id
                }
                _ => false,
            };
            if one_sided || different_ids {
                add(Rule::NtaxLtaxMismatch);
            }
        }
        // 14. invalid_identifier
        if invalid_identifier(e) {
            add(Rule::InvalidIdentifier);
        }
    }
    // 12. unlicensed_business: every report (two reports may look alike: keep both).
    let mut out: Vec<Truth> = out.into_iter().collect();
    // Matched against the registry as it is now (names change after a report): the
    // enterprise of that normalized name with the smallest registration number.
    let mut by_name: std::collections::HashMap<String, &Enterprise> =
        std::collections::HashMap::new();
    for e in &world.enterprises {
        let slot = by_name.entry(normalized(&e.name)).or_insert(e);
        if e.reg_no < slot.reg_no {
            *slot = e;
        }
    }
    for u in &world.unlicensed {
        let matched = by_name.get(&normalized(&u.name)).copied();
        out.push(Truth {
            rule: Rule::UnlicensedBusiness.name(),
            org_code: String::new(),
            reg_no: matched.map(|e| e.reg_no.clone()).unwrap_or_default(),
            name: u.name.clone(),
            injected: true,
        });
    }
    out.sort();
    out
}

fn invalid_identifier(e: &Enterprise) -> bool {
    let bad_reg = |r: &str| !is_reg_no(r);
    if bad_reg(&e.reg_no) || !is_id_card(&e.aic_rep_id) {
        return true;
    }
    // QTS may not have recorded the registration number (an empty one is no number).
    if let Some(q) = &e.qts
        && (!is_org_code(&q.org_code) || (!q.reg_no.is_empty() && bad_reg(&q.reg_no)))
    {
        return true;
    }
    [e.ntax.as_ref(), e.ltax.as_ref()]
        .into_iter()
        .flatten()
        .any(|t| {
            t.org_code.as_deref().is_some_and(|c| !is_org_code(c))
                || t.reg_no.as_deref().is_some_and(bad_reg)
                || !is_taxpayer_id(&t.taxpayer_id)
        })
}

/// Writes the truth as CSV (`rule,org_code,reg_no,name,injected`).
pub fn to_csv(truth: &[Truth]) -> String {
    let mut out = String::from("rule,org_code,reg_no,name,injected\n");
    for t in truth {
        out.push_str(&format!(
            "{},{},{},\"{}\",{}\n",
            t.rule,
            t.org_code,
            t.reg_no,
            t.name.replace('"', "\"\""),
            t.injected
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_ignores_width_brackets_and_spaces() {
        assert_eq!(
            normalized("乌海市（海勃湾） 宏达\u{3000}商贸有限公司"),
            normalized("乌海市(海勃湾)宏达商贸有限公司")
        );
        assert_ne!(
            normalized("乌海市宏达商贸有限公司"),
            normalized("乌海市宏大商贸有限公司")
        );
        assert_eq!(normalized("１号楼 a"), "1号楼A");
    }
}
