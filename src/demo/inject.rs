//! Injected discrepancies: one per enterprise at most, each making exactly the finding of
//! its rule (and nothing else) where it applies.

use super::people::{address, misspelled, org_code, person};
use super::world::{AicState, Enterprise, Tax, World};
use crate::rules::Rule;
use chrono::Days;

impl World {
    /// Injects a discrepancy of `rule` into enterprise `i`, when it applies; true if done.
    pub fn inject(&mut self, i: usize, rule: Rule) -> bool {
        if !self.enterprises[i].injected.is_empty() {
            return false;
        }
        // An enterprise whose code is known only through its tax registrations (QTS did not
        // record its registration number) keeps them as they are: taking them away would
        // leave its code unlinked, which is no discrepancy of any rule.
        if self.enterprises[i]
            .qts
            .as_ref()
            .is_some_and(|q| q.reg_no.is_empty())
        {
            return false;
        }
        // An org-code conflict is, as often as not, a re-issue one tax bureau did not follow.
        if rule == Rule::OrgCodeConflict && self.rng.chance(0.5) && self.reissue_code(i, false) {
            self.enterprises[i].injected.push(rule);
            return true;
        }
        let as_of = self.options.as_of;
        let p = person(&mut self.rng);
        let other_address = {
            let d = self.enterprises[i].district.clone();
            address(&mut self.rng, &d)
        };
        let pick_tax = self.rng.chance(0.5);
        let fresh_code = org_code(90_000_000 + self.rng.below(9_000_000));
        let closed_on = self.date_between(
            self.enterprises[i].established + Days::new(60),
            as_of - Days::new(20),
        );
        let old_dereg_on = self.date_between(
            self.enterprises[i].established + Days::new(60),
            as_of - Days::new(35),
        );
        let void_on = self.date_between(self.enterprises[i].established + Days::new(40), as_of);
        let abn_on = self.date_between(self.enterprises[i].established + Days::new(40), as_of);
        let req_on = self.date_between(
            self.enterprises[i].established + Days::new(40),
            as_of - Days::new(70),
        );
        let ids = (self.id(), self.id());
        let misspelled_name = misspelled(&self.enterprises[i].name, &mut self.rng);
        let which = self.rng.below(3);
        let covered = self.covered(&self.enterprises[i].district);
        let e = &mut self.enterprises[i];
        let active = e.aic == AicState::Active;
        let old_enough = e.established + Days::new(31) <= as_of;
        let done = match rule {
            Rule::RegisteredNotTaxRegistered if active && old_enough && e.ntax.is_some() => {
                if covered && e.ltax.is_some() && pick_tax {
                    e.ltax = None;
                } else {
                    e.ntax = None;
                }
                true
            }
            Rule::AicClosedTaxActive if active && e.ntax.as_ref().is_some_and(Tax::active) => {
                match closed_on {
                    Some(on) => {
                        e.aic = if pick_tax {
                            AicState::Deregistered(on, "决议解散".to_owned())
                        } else {
                            AicState::Revoked(on, "未按规定年检".to_owned())
                        };
                        true
                    }
                    None => false,
                }
            }
            Rule::TaxClosedAicActive if active => {
                match (e.ntax.as_mut().filter(|t| t.dereg.is_none()), old_dereg_on) {
                    (Some(t), Some(on)) if on > t.registered => {
                        t.dereg = Some((ids.0, on, "迁出".to_owned()));
                        true
                    }
                    _ => false,
                }
            }
            Rule::NameMismatch => {
                let target = match which {
                    0 => e.ntax.as_mut().map(|t| &mut t.name),
                    1 => e.ltax.as_mut().map(|t| &mut t.name),
                    _ => e.qts.as_mut().map(|q| &mut q.name),
                };
                match target {
                    Some(n) => {
                        *n = misspelled_name;
                        true
                    }
                    None => false,
                }
            }
            Rule::LegalRepMismatch if p.name != e.rep.name => match tax_of(e, pick_tax) {
                Some(t) => {
                    t.rep = p.name.clone();
                    t.rep_id = p.id_card.clone();
                    true
                }
                None => false,
            },
            Rule::AddressMismatch => match tax_of(e, pick_tax) {
                Some(t) => {
                    t.address = other_address;
                    true
                }
                None => false,
            },
            Rule::OrgCodeConflict if e.qts.is_some() => {
                match tax_of(e, pick_tax).filter(|t| t.org_code.is_some()) {
                    Some(t) => {
                        t.org_code = Some(fresh_code);
                        true
                    }
                    None => false,
                }
            }
            // A credit code embeds the org code: such an enterprise has one.
            Rule::NoOrgCode
                if active
                    && old_enough
                    && e.qts.is_some()
                    && !crate::identifiers::is_uscc(&e.reg_no) =>
            {
                e.qts = None;
                let rep_id = e.rep.id_card.clone();
                for t in [e.ntax.as_mut(), e.ltax.as_mut()].into_iter().flatten() {
                    t.org_code = None;
                    t.taxpayer_id = rep_id.clone();
                }
                true
            }
            Rule::OrgCodeVoidedActive if active => match (e.qts.as_mut(), void_on) {
                (Some(q), Some(on)) if q.voided.is_none() && on >= q.issued => {
                    q.voided = Some((ids.0, on));
                    true
                }
                _ => false,
            },
            Rule::AbnormalTaxpayerActive if active => match (tax_of(e, pick_tax), abn_on) {
                (Some(t), Some(on)) if t.dereg.is_none() && on >= t.registered => {
                    t.abnormal.push((ids.0, on, None));
                    true
                }
                _ => false,
            },
            Rule::RevocationRequestPending if active => match (tax_of(e, pick_tax), req_on) {
                (Some(t), Some(on)) if on >= t.registered => {
                    t.requests
                        .push((ids.1, on, "逾期未申报，经责令限期改正仍未改正".to_owned()));
                    true
                }
                _ => false,
            },
            Rule::NtaxLtaxMismatch if covered => {
                let ntax_id = e.ntax.as_ref().map(|t| t.taxpayer_id.clone());
                match (ntax_id, e.ltax.as_mut()) {
                    (Some(n), Some(l)) if l.org_code.is_some() && n == l.taxpayer_id => {
                        l.taxpayer_id = format!("150300{}", l.org_code.clone().unwrap_or_default());
                        true
                    }
                    _ => false,
                }
            }
            Rule::InvalidIdentifier => match which {
                0 => {
                    e.aic_rep_id = corrupt(&e.aic_rep_id);
                    true
                }
                1 => match e.ntax.as_mut().filter(|t| t.taxpayer_id.len() == 15) {
                    Some(t) => {
                        t.taxpayer_id = corrupt(&t.taxpayer_id);
                        true
                    }
                    None => false,
                },
                _ => match tax_of(e, pick_tax).filter(|t| t.org_code.is_some()) {
                    Some(t) => {
                        t.reg_no = t.reg_no.as_deref().map(corrupt);
                        true
                    }
                    None => false,
                },
            },
            _ => false,
        };
        if done {
            e.injected.push(rule);
        }
        done
    }
}

/// One of an enterprise's tax records, preferring local tax when asked.
fn tax_of(e: &mut Enterprise, prefer_ltax: bool) -> Option<&mut Tax> {
    if prefer_ltax && e.ltax.is_some() {
        e.ltax.as_mut()
    } else if e.ntax.is_some() {
        e.ntax.as_mut()
    } else {
        e.ltax.as_mut()
    }
}

/// The identifier with its last character changed (so its check fails).
fn corrupt(id: &str) -> String {
    let mut chars: Vec<char> = id.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = match *last {
            '9' => '0',
            'X' => '1',
            c if c.is_ascii_digit() => char::from_u32(c as u32 + 1).unwrap_or('0'),
            _ => '0',
        };
    }
    chars.into_iter().collect()
}
