//! The lifecycle events of the simulated city: closures done properly, renames and moves
//! every bureau follows, abnormal episodes, penalties, checks, branches and reports of
//! unlicensed businesses. None of them makes a finding on its own.

use super::people::{self, address, enterprise_name};
use super::world::{AicState, Amendment, Unlicensed, World};
use crate::indicators::Bureau;
use chrono::{Days, NaiveDate};

const TAX_REASONS: [&str; 3] = ["停业", "迁出", "经营期满"];
const AIC_DEREG_REASONS: [&str; 3] = ["决议解散", "经营期满", "股东会决议"];
const REVOKE_REASONS: [&str; 2] = ["未按规定年检", "连续六个月未开展经营"];
const VIOLATIONS: [(&str, &str); 3] = [
    ("逾期申报", "罚款200元"),
    ("未按规定保管账簿", "罚款1000元"),
    ("虚开发票", "罚款5000元"),
];

/// What a followed change alters.
#[derive(Clone, Copy)]
enum Followed {
    Name,
    Address,
}

impl World {
    /// Proper deregistration: tax first, AIC after, QTS voids the code after AIC.
    pub fn deregister(&mut self, i: usize) {
        let as_of = self.options.as_of;
        let e = &self.enterprises[i];
        if e.aic != AicState::Active || e.ntax.is_none() {
            return;
        }
        let start = [e.ntax.as_ref(), e.ltax.as_ref()]
            .into_iter()
            .flatten()
            .map(|t| t.registered)
            .max()
            .unwrap_or(e.established)
            + Days::new(30);
        let Some(tax_on) = self.date_between(start, as_of - Days::new(45)) else {
            return;
        };
        let aic_on = tax_on + Days::new(1 + self.rng.below(10));
        let qts_on = aic_on + Days::new(1 + self.rng.below(20));
        let reason = (*self.rng.pick(&TAX_REASONS)).to_owned();
        let aic_reason = (*self.rng.pick(&AIC_DEREG_REASONS)).to_owned();
        let (id1, id2, id3) = (self.id(), self.id(), self.id());
        let e = &mut self.enterprises[i];
        for (t, id) in [(e.ntax.as_mut(), id1), (e.ltax.as_mut(), id2)] {
            if let Some(t) = t {
                t.dereg = Some((id, tax_on, reason.clone()));
            }
        }
        e.aic = AicState::Deregistered(aic_on, aic_reason);
        if let Some(q) = e.qts.as_mut() {
            q.voided = (qts_on <= as_of).then_some((id3, qts_on));
        }
    }

    /// Revocation: abnormal at tax, a request to AIC, AIC revokes within the grace period,
    /// tax deregisters within 15 days, QTS voids the code.
    pub fn revoke(&mut self, i: usize) {
        let as_of = self.options.as_of;
        let e = &self.enterprises[i];
        if e.aic != AicState::Active {
            return;
        }
        let Some(t) = e.ntax.as_ref() else { return };
        let Some(abnormal_on) =
            self.date_between(t.registered + Days::new(60), as_of - Days::new(200))
        else {
            return;
        };
        let request_on = abnormal_on + Days::new(90);
        let revoke_on = request_on + Days::new(10 + self.rng.below(40));
        let dereg_on = revoke_on + Days::new(1 + self.rng.below(13));
        let void_on = revoke_on + Days::new(5 + self.rng.below(20));
        let reason = (*self.rng.pick(&REVOKE_REASONS)).to_owned();
        let ids: Vec<u64> = (0..6).map(|_| self.id()).collect();
        let e = &mut self.enterprises[i];
        for (k, t) in [e.ntax.as_mut(), e.ltax.as_mut()]
            .into_iter()
            .flatten()
            .enumerate()
        {
            t.abnormal.push((ids[k * 3], abnormal_on, None));
            if k == 0 {
                t.requests
                    .push((ids[k * 3 + 1], request_on, "非正常户超过三个月".to_owned()));
            }
            t.dereg = Some((ids[k * 3 + 2], dereg_on, "吊销营业执照".to_owned()));
        }
        e.aic = AicState::Revoked(revoke_on, reason);
        if let Some(q) = e.qts.as_mut() {
            q.voided = (void_on <= as_of).then_some((ids[5], void_on));
        }
    }

    /// A rename every bureau follows (noise: never a finding).
    pub fn rename_followed(&mut self, i: usize) {
        let district = self.enterprises[i].district.clone();
        let (new_name, _, _) = enterprise_name(&mut self.rng, &district);
        self.change_followed(i, Followed::Name, new_name);
    }

    /// QTS's issuance does not record the registration number: the enterprise holds its
    /// code through its tax registrations (which carry both). No finding.
    pub fn code_known_through_tax(&mut self, i: usize) {
        let e = &mut self.enterprises[i];
        let code = e.org_code.clone();
        let through_tax = [e.ntax.as_ref(), e.ltax.as_ref()]
            .into_iter()
            .flatten()
            .any(|t| t.org_code.as_deref() == Some(code.as_str()));
        if let Some(q) = e.qts.as_mut()
            && through_tax
        {
            q.reg_no = String::new();
        }
    }

    /// QTS voids the enterprise's code and issues a new one; true if done. Every tax
    /// bureau holding the code follows (no finding), or — with `all` false — one keeps the
    /// voided code (that bureau's `org_code_conflict`, nothing else). Taxpayer ids stay
    /// as they were.
    pub fn reissue_code(&mut self, i: usize, all: bool) -> bool {
        let Some(q) = self.enterprises[i].qts.clone() else {
            return false;
        };
        if q.voided.is_some() || !q.previous.is_empty() || q.reg_no.is_empty() {
            return false;
        }
        let Some(on) = self.date_between(q.issued + Days::new(30), self.options.as_of) else {
            return false;
        };
        self.next_serial += 1;
        let fresh = super::people::org_code(50_000_000 + self.next_serial * 7);
        let void_id = self.id();
        let lagging = (!all).then(|| self.rng.below(2));
        let e = &mut self.enterprises[i];
        let code = e.org_code.clone();
        let holders = [e.ntax.as_ref(), e.ltax.as_ref()]
            .into_iter()
            .flatten()
            .filter(|t| t.org_code.as_deref() == Some(code.as_str()))
            .count() as u64;
        if lagging.is_some() && holders == 0 {
            return false;
        }
        let lag = lagging.map(|k| k % holders.max(1));
        for (n, t) in [e.ntax.as_mut(), e.ltax.as_mut()]
            .into_iter()
            .flatten()
            .filter(|t| t.org_code.as_deref() == Some(code.as_str()))
            .enumerate()
        {
            if Some(n as u64) != lag {
                t.org_code = Some(fresh.clone());
            }
        }
        let q = e.qts.as_mut().expect("checked above");
        q.previous.push(super::world::PreviousCode {
            org_code: q.org_code.clone(),
            issued: q.issued,
            voided: (void_id, on),
        });
        q.org_code = fresh.clone();
        q.issued = on;
        e.org_code = fresh;
        true
    }

    /// Registered after the 2015 reform: the unified social credit code is the
    /// registration number at AIC, QTS and tax, and the taxpayer id. No finding.
    pub fn credit_code(&mut self, i: usize) {
        let e = &mut self.enterprises[i];
        // The code it embeds is one QTS issued.
        if !e
            .qts
            .as_ref()
            .is_some_and(|q| q.previous.is_empty() && !q.reg_no.is_empty())
        {
            return;
        }
        let Some(code) = crate::identifiers::uscc_of(&e.district, &e.org_code) else {
            return;
        };
        let old = std::mem::replace(&mut e.reg_no, code.clone());
        if let Some(q) = e.qts.as_mut() {
            q.reg_no = code.clone();
        }
        for t in [e.ntax.as_mut(), e.ltax.as_mut()].into_iter().flatten() {
            if t.reg_no.as_deref() == Some(old.as_str()) {
                t.reg_no = Some(code.clone());
            }
            t.taxpayer_id = code.clone();
        }
    }

    /// A move every bureau follows.
    pub fn move_followed(&mut self, i: usize) {
        let district = self.enterprises[i].district.clone();
        let new_address = address(&mut self.rng, &district);
        self.change_followed(i, Followed::Address, new_address);
    }

    /// An AIC alteration of the name or address, with QTS and both tax bureaus following.
    fn change_followed(&mut self, i: usize, what: Followed, value: String) {
        let Some(on) = self.date_between(
            self.enterprises[i].established + Days::new(10),
            self.options.as_of,
        ) else {
            return;
        };
        let (a, b) = (self.id(), self.id());
        let e = &mut self.enterprises[i];
        let (item, qts_item, current) = match what {
            Followed::Name => ("名称", "机构名称", &mut e.name),
            Followed::Address => ("住所", "机构地址", &mut e.address),
        };
        let before = std::mem::replace(current, value.clone());
        e.amendments.push(Amendment {
            id: a,
            item,
            before,
            after: value.clone(),
            on,
        });
        if let Some(q) = e.qts.as_mut() {
            match what {
                Followed::Name => q.name = value.clone(),
                Followed::Address => q.address = value.clone(),
            }
            q.changes.push((b, qts_item, value.clone(), on));
        }
        for t in [e.ntax.as_mut(), e.ltax.as_mut()].into_iter().flatten() {
            match what {
                Followed::Name => t.name = value.clone(),
                Followed::Address => t.address = value.clone(),
            }
        }
    }

    /// A day for a national-tax event of enterprise `i`: from 30 days after its
    /// registration up to `latest`; `None` when it has no registration or no such day.
    fn ntax_date(&mut self, i: usize, latest: NaiveDate) -> Option<NaiveDate> {
        let registered = self.enterprises[i].ntax.as_ref()?.registered;
        self.date_between(registered + Days::new(30), latest)
    }

    /// An abnormal episode that was lifted (noise).
    pub fn abnormal_lifted(&mut self, i: usize) {
        let as_of = self.options.as_of;
        let Some(on) = self.ntax_date(i, as_of - Days::new(40)) else {
            return;
        };
        let lifted = on + Days::new(10 + self.rng.below(30));
        let id = self.id();
        if let Some(t) = self.enterprises[i].ntax.as_mut() {
            t.abnormal.push((id, on, Some(lifted)));
        }
    }

    /// A tax penalty.
    pub fn penalty(&mut self, i: usize) {
        let as_of = self.options.as_of;
        let (violation, decision) = *self.rng.pick(&VIOLATIONS);
        let Some(on) = self.ntax_date(i, as_of) else {
            return;
        };
        let id = self.id();
        if let Some(t) = self.enterprises[i].ntax.as_mut() {
            t.penalties.push((id, violation, decision, on));
        }
    }

    /// A tax certificate check (验证换证) at national tax.
    pub fn certificate_check(&mut self, i: usize) {
        let as_of = self.options.as_of;
        let Some(on) = self.ntax_date(i, as_of) else {
            return;
        };
        let id = self.id();
        if let Some(t) = self.enterprises[i].ntax.as_mut() {
            t.checks.push((id, on));
        }
    }

    /// Turns enterprise `i` into a branch of an earlier enterprise, named like it (noise:
    /// a branch is a separate enterprise and must never be merged with its parent).
    pub(super) fn branch_of(&mut self, i: usize) {
        if i == 0 {
            return;
        }
        let p = self.rng.below(i as u64) as usize;
        let parent_name = self.enterprises[p].name.clone();
        let parent_id = self.enterprises[p].pripid;
        let district = self.enterprises[i].district.clone();
        let name = format!("{}{}分公司", parent_name, people::district_name(&district));
        let e = &mut self.enterprises[i];
        e.parent = Some(parent_id);
        e.enttype = "2100";
        e.name = name.clone();
        if let Some(q) = e.qts.as_mut() {
            q.name = name.clone();
            q.org_type = '2';
        }
        for t in [e.ntax.as_mut(), e.ltax.as_mut()].into_iter().flatten() {
            t.name = name.clone();
        }
    }

    /// A report of an unlicensed business: about a third name a registered enterprise.
    pub fn report_unlicensed(&mut self) {
        let bureau = if self.rng.chance(0.5) {
            Bureau::Ntax
        } else {
            Bureau::Ltax
        };
        let back = self.rng.range(0, 700);
        let found = self.days_before_as_of(back);
        // About a third name a registered enterprise (whether a report matches the registry
        // is decided by the ground truth from the names as they are at the end).
        let (name, address) = if !self.enterprises.is_empty() && self.rng.chance(0.35) {
            let k = self.rng.below(self.enterprises.len() as u64) as usize;
            let e = &self.enterprises[k];
            (people::widened(&e.name), e.address.clone())
        } else {
            let district = self.rng.pick(&people::DISTRICTS).0.to_owned();
            let (name, _, _) = enterprise_name(&mut self.rng, &district);
            let name = format!("{}（无照）", name.trim_end_matches("有限公司"));
            (name, address(&mut self.rng, &district))
        };
        let id = self.id();
        self.unlicensed.push(Unlicensed {
            bureau,
            id,
            name,
            address,
            found,
        });
    }
}
