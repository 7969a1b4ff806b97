//! The simulated city: enterprises and what each bureau holds about them, with
//! lifecycles, noise that must not become a finding, and injected discrepancies.
//!
//! The world is a plain in-memory model. Everything else derives from it: the rows of
//! each bureau's native tables (`native`), and the ground truth (`truth`). All dates lie
//! on or before `as_of`, the simulated "today" the comparison rules are evaluated at.

use super::people::{self, Person, address, enterprise_name, misspelled, org_code, person, reg_no};
use super::rng::Rng;
use crate::indicators::Bureau;
use crate::rules::Rule;
use chrono::{Days, NaiveDate};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Options {
    /// Enterprises in the initial load.
    pub enterprises: usize,
    /// Seed: the same seed gives the same world.
    pub seed: u64,
    /// Probability, per enterprise and rule, of an injected discrepancy.
    pub discrepancy_rate: f64,
    /// Probability of each kind of harmless noise.
    pub noise_rate: f64,
    /// The simulated "today".
    pub as_of: NaiveDate,
    /// Divisions whose local-tax records are connected.
    pub ltax_covers: Vec<String>,
}

impl Options {
    /// Defaults for `n` enterprises.
    pub fn new(enterprises: usize, seed: u64) -> Options {
        Options {
            enterprises,
            seed,
            discrepancy_rate: 0.02,
            noise_rate: 0.15,
            as_of: NaiveDate::from_ymd_opt(2006, 12, 31).unwrap_or_default(),
            ltax_covers: vec!["150302".to_owned()],
        }
    }
}

/// The AIC registration state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AicState {
    /// 在营.
    Active,
    /// 注销 on a date, with a reason.
    Deregistered(NaiveDate, String),
    /// 吊销 on a date, with a reason.
    Revoked(NaiveDate, String),
}

/// An AIC alteration record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amendment {
    /// ALT_ID.
    pub id: u64,
    /// 变更事项.
    pub item: &'static str,
    /// Before.
    pub before: String,
    /// After.
    pub after: String,
    /// 核准日期.
    pub on: NaiveDate,
}

/// What QTS holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qts {
    /// The code.
    pub org_code: String,
    /// 机构名称 as QTS holds it.
    pub name: String,
    /// 机构类型 (JGLX).
    pub org_type: char,
    /// 工商注册号 as QTS holds it.
    pub reg_no: String,
    /// Legal representative.
    pub rep: Person,
    /// Address as QTS holds it.
    pub address: String,
    /// 颁证日期.
    pub issued: NaiveDate,
    /// Change records: (id, item, content, date).
    pub changes: Vec<(u64, &'static str, String, NaiveDate)>,
    /// Void record: (id, date).
    pub voided: Option<(u64, NaiveDate)>,
}

/// What one tax bureau holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tax {
    /// Internal key (DJXH / JSJDM number).
    pub key: u64,
    /// 纳税人识别号.
    pub taxpayer_id: String,
    /// Org code as held (`None`: not known to tax).
    pub org_code: Option<String>,
    /// Registration number as held.
    pub reg_no: Option<String>,
    /// Name as held.
    pub name: String,
    /// Legal representative as held.
    pub rep: String,
    /// Representative's ID as held.
    pub rep_id: String,
    /// Address as held.
    pub address: String,
    /// 税务登记日期.
    pub registered: NaiveDate,
    /// Deregistration: (id, date, reason).
    pub dereg: Option<(u64, NaiveDate, String)>,
    /// Abnormal episodes: (id, identified, lifted).
    pub abnormal: Vec<(u64, NaiveDate, Option<NaiveDate>)>,
    /// Revocation requests: (id, date, reason).
    pub requests: Vec<(u64, NaiveDate, String)>,
    /// Penalties: (id, violation, decision, date).
    pub penalties: Vec<(u64, &'static str, &'static str, NaiveDate)>,
    /// Certificate checks: (id, date).
    pub checks: Vec<(u64, NaiveDate)>,
}

impl Tax {
    /// Registered, not deregistered, not abnormal now.
    pub fn active(&self) -> bool {
        self.dereg.is_none() && !self.abnormal_now()
    }

    /// An abnormal episode not lifted.
    pub fn abnormal_now(&self) -> bool {
        self.abnormal.iter().any(|(_, _, lifted)| lifted.is_none())
    }
}

/// One enterprise and every bureau's view of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enterprise {
    /// PRIPID.
    pub pripid: u64,
    /// Its district.
    pub district: String,
    /// 注册号.
    pub reg_no: String,
    /// The org code it has (or would have).
    pub org_code: String,
    /// Name at AIC.
    pub name: String,
    /// Legal representative.
    pub rep: Person,
    /// Address at AIC.
    pub address: String,
    /// ENTTYPE.
    pub enttype: &'static str,
    /// 门类 and class.
    pub industry: (char, &'static str),
    /// 成立日期.
    pub established: NaiveDate,
    /// AIC state.
    pub aic: AicState,
    /// The representative's ID as AIC holds it.
    pub aic_rep_id: String,
    /// Alterations.
    pub amendments: Vec<Amendment>,
    /// Annual inspections: (id, year, result code).
    pub inspections: Vec<(u64, i32, char)>,
    /// QTS record.
    pub qts: Option<Qts>,
    /// National tax record.
    pub ntax: Option<Tax>,
    /// Local tax record (only where local tax is connected).
    pub ltax: Option<Tax>,
    /// The parent, for a branch.
    pub parent: Option<u64>,
    /// Discrepancies injected on purpose.
    pub injected: Vec<Rule>,
}

/// A tax bureau's report of an unlicensed business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unlicensed {
    /// Which tax bureau.
    pub bureau: Bureau,
    /// Record id.
    pub id: u64,
    /// 企业名称 as reported.
    pub name: String,
    /// 住所.
    pub address: String,
    /// When found.
    pub found: NaiveDate,
    /// The AIC enterprise with the same normalized name, if any.
    pub matches: Option<u64>,
}

/// The simulated city.
#[derive(Clone, Debug)]
pub struct World {
    /// Options it was made with.
    pub options: Options,
    /// Enterprises, by index.
    pub enterprises: Vec<Enterprise>,
    /// Unlicensed-business reports.
    pub unlicensed: Vec<Unlicensed>,
    rng: Rng,
    next_id: u64,
    next_serial: u64,
}

const ENTTYPES: [&str; 5] = ["1100", "1151", "1200", "3200", "4100"];
const TAX_REASONS: [&str; 3] = ["停业", "迁出", "经营期满"];
const AIC_DEREG_REASONS: [&str; 3] = ["决议解散", "经营期满", "股东会决议"];
const REVOKE_REASONS: [&str; 2] = ["未按规定年检", "连续六个月未开展经营"];
const VIOLATIONS: [(&str, &str); 3] = [
    ("逾期申报", "罚款200元"),
    ("未按规定保管账簿", "罚款1000元"),
    ("虚开发票", "罚款5000元"),
];

impl World {
    /// Generates the initial world.
    pub fn generate(options: Options) -> World {
        let mut w = World {
            rng: Rng::new(options.seed),
            options,
            enterprises: Vec::new(),
            unlicensed: Vec::new(),
            next_id: 1,
            next_serial: 1,
        };
        let n = w.options.enterprises;
        for _ in 0..n {
            let days_back = w.rng.range(0, 6 * 365);
            let established = w.days_before_as_of(days_back);
            w.establish(established);
        }
        for i in 0..w.enterprises.len() {
            w.life(i);
        }
        for _ in 0..(n / 40).max(2) {
            w.report_unlicensed();
        }
        w
    }

    /// A random number below `n` from the world's generator.
    pub fn rng_below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    /// True with probability `p`, from the world's generator.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.chance(p)
    }

    /// A new id for a native record.
    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn days_before_as_of(&self, days: i64) -> NaiveDate {
        self.options
            .as_of
            .checked_sub_days(Days::new(days.max(0) as u64))
            .unwrap_or(self.options.as_of)
    }

    fn date_between(&mut self, from: NaiveDate, to: NaiveDate) -> Option<NaiveDate> {
        let span = (to - from).num_days();
        (span >= 0).then(|| from + Days::new(self.rng.below(span as u64 + 1)))
    }

    fn covered(&self, district: &str) -> bool {
        self.options.ltax_covers.iter().any(|d| d == district)
    }

    /// A new enterprise established on `established` (registration at QTS and tax follow
    /// within the legal 30 days, as far as `as_of` allows). Returns its index.
    pub fn establish(&mut self, established: NaiveDate) -> usize {
        let district = self.rng.pick(&people::DISTRICTS).0.to_owned();
        let (name, letter, class) = enterprise_name(&mut self.rng, &district);
        self.next_serial += 1 + self.rng.below(3);
        let serial = self.next_serial;
        let mut e = Enterprise {
            pripid: 1_000_000 + serial,
            reg_no: reg_no(&district, serial),
            org_code: org_code(10_000_000 + serial * 7 + self.rng.below(7)),
            name,
            rep: person(&mut self.rng),
            address: address(&mut self.rng, &district),
            enttype: ENTTYPES[self.rng.below(ENTTYPES.len() as u64) as usize],
            industry: (letter, class),
            established,
            aic: AicState::Active,
            aic_rep_id: String::new(),
            amendments: Vec::new(),
            inspections: Vec::new(),
            qts: None,
            ntax: None,
            ltax: None,
            parent: None,
            injected: Vec::new(),
            district,
        };
        e.aic_rep_id = e.rep.id_card.clone();
        let as_of = self.options.as_of;
        let qts_on = established + Days::new(1 + self.rng.below(20));
        if qts_on <= as_of {
            e.qts = Some(Qts {
                org_code: e.org_code.clone(),
                name: e.name.clone(),
                org_type: '1',
                reg_no: e.reg_no.clone(),
                rep: e.rep.clone(),
                address: e.address.clone(),
                issued: qts_on,
                changes: Vec::new(),
                voided: None,
            });
        }
        for bureau in [Bureau::Ntax, Bureau::Ltax] {
            if bureau == Bureau::Ltax && !self.covered(&e.district) {
                continue;
            }
            let on = qts_on + Days::new(1 + self.rng.below(8));
            if on > as_of {
                continue;
            }
            let tax = self.tax_record(&e, on);
            match bureau {
                Bureau::Ntax => e.ntax = Some(tax),
                _ => e.ltax = Some(tax),
            }
        }
        for year in established
            .format("%Y")
            .to_string()
            .parse::<i32>()
            .unwrap_or(2006)
            + 1..=2006
        {
            if NaiveDate::from_ymd_opt(year, 6, 30).is_some_and(|d| d <= as_of) {
                let id = self.id();
                let result = *self.rng.pick(&['1', '1', '1', '2', '3']);
                e.inspections.push((id, year - 1, result));
            }
        }
        self.noise(&mut e);
        self.enterprises.push(e);
        self.enterprises.len() - 1
    }

    fn tax_record(&mut self, e: &Enterprise, on: NaiveDate) -> Tax {
        let key = self.id();
        let mut t = Tax {
            key,
            taxpayer_id: format!("{}{}", e.district, e.org_code),
            org_code: Some(e.org_code.clone()),
            reg_no: Some(e.reg_no.clone()),
            name: e.name.clone(),
            rep: e.rep.name.clone(),
            rep_id: e.rep.id_card.clone(),
            address: e.address.clone(),
            registered: on,
            dereg: None,
            abnormal: Vec::new(),
            requests: Vec::new(),
            penalties: Vec::new(),
            checks: Vec::new(),
        };
        if let Some(check) = self.date_between(on + Days::new(180), self.options.as_of) {
            let id = self.id();
            t.checks.push((id, check));
        }
        t
    }

    /// Harmless differences in how bureaus write the same thing.
    fn noise(&mut self, e: &mut Enterprise) {
        let p = self.options.noise_rate;
        if let Some(t) = e.ntax.as_mut() {
            if self.rng.chance(p) {
                t.name = people::widened(&t.name);
            }
            if self.rng.chance(p) {
                t.address = format!(" {}  ", people::widened(&t.address));
            }
        }
        if let Some(t) = e.ltax.as_mut()
            && self.rng.chance(p)
        {
            t.name = t.name.replace("有限", "有限 ");
        }
        if let Some(q) = e.qts.as_mut()
            && self.rng.chance(p)
        {
            q.name = people::narrowed(&q.name);
        }
        if self.rng.chance(p) {
            e.name = people::narrowed(&e.name);
        }
    }

    /// The initial life of enterprise `i`: closures, renames, abnormal episodes, penalties,
    /// branches, and injected discrepancies.
    fn life(&mut self, i: usize) {
        let r = self.rng.below(1000);
        match r {
            0..=69 => self.deregister(i),
            70..=109 => self.revoke(i),
            110..=149 => self.rename_followed(i),
            150..=169 => self.move_followed(i),
            170..=199 => self.abnormal_lifted(i),
            200..=219 => self.branch_of(i),
            _ => {}
        }
        if self.rng.chance(0.05) {
            self.penalty(i);
        }
        self.maybe_inject(i);
    }

    /// Injects at most one discrepancy into enterprise `i` (one per enterprise, so that a
    /// later injection can never undo an earlier one), each rule with the configured rate.
    pub fn maybe_inject(&mut self, i: usize) {
        for rule in Rule::ALL {
            if rule != Rule::UnlicensedBusiness
                && self.enterprises[i].injected.is_empty()
                && self.rng.chance(self.options.discrepancy_rate)
            {
                self.inject(i, rule);
            }
        }
    }

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
        let Some(on) = self.date_between(
            self.enterprises[i].established + Days::new(10),
            self.options.as_of,
        ) else {
            return;
        };
        let (a, b) = (self.id(), self.id());
        let e = &mut self.enterprises[i];
        e.amendments.push(Amendment {
            id: a,
            item: "名称",
            before: e.name.clone(),
            after: new_name.clone(),
            on,
        });
        e.name = new_name.clone();
        if let Some(q) = e.qts.as_mut() {
            q.name = new_name.clone();
            q.changes.push((b, "机构名称", new_name.clone(), on));
        }
        for t in [e.ntax.as_mut(), e.ltax.as_mut()].into_iter().flatten() {
            t.name = new_name.clone();
        }
    }

    /// A move every bureau follows.
    pub fn move_followed(&mut self, i: usize) {
        let district = self.enterprises[i].district.clone();
        let new_address = address(&mut self.rng, &district);
        let Some(on) = self.date_between(
            self.enterprises[i].established + Days::new(10),
            self.options.as_of,
        ) else {
            return;
        };
        let (a, b) = (self.id(), self.id());
        let e = &mut self.enterprises[i];
        e.amendments.push(Amendment {
            id: a,
            item: "住所",
            before: e.address.clone(),
            after: new_address.clone(),
            on,
        });
        e.address = new_address.clone();
        if let Some(q) = e.qts.as_mut() {
            q.address = new_address.clone();
            q.changes.push((b, "机构地址", new_address.clone(), on));
        }
        for t in [e.ntax.as_mut(), e.ltax.as_mut()].into_iter().flatten() {
            t.address = new_address.clone();
        }
    }

    /// An abnormal episode that was lifted (noise).
    pub fn abnormal_lifted(&mut self, i: usize) {
        let as_of = self.options.as_of;
        let Some(t) = self.enterprises[i].ntax.as_ref() else {
            return;
        };
        let Some(on) = self.date_between(t.registered + Days::new(30), as_of - Days::new(40))
        else {
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
        let Some(t) = self.enterprises[i].ntax.as_ref() else {
            return;
        };
        let Some(on) = self.date_between(t.registered + Days::new(30), as_of) else {
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
        let Some(t) = self.enterprises[i].ntax.as_ref() else {
            return;
        };
        let Some(on) = self.date_between(t.registered + Days::new(30), as_of) else {
            return;
        };
        let id = self.id();
        if let Some(t) = self.enterprises[i].ntax.as_mut() {
            t.checks.push((id, on));
        }
    }

    /// Turns enterprise `i` into a branch of an earlier enterprise, named like it (noise:
    /// a branch is a separate enterprise and must never be merged with its parent).
    fn branch_of(&mut self, i: usize) {
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
        let (name, address, matches) = if !self.enterprises.is_empty() && self.rng.chance(0.35) {
            let k = self.rng.below(self.enterprises.len() as u64) as usize;
            let e = &self.enterprises[k];
            (people::widened(&e.name), e.address.clone(), Some(e.pripid))
        } else {
            let district = self.rng.pick(&people::DISTRICTS).0.to_owned();
            let (name, _, _) = enterprise_name(&mut self.rng, &district);
            let name = format!("{}（无照）", name.trim_end_matches("有限公司"));
            (name, address(&mut self.rng, &district), None)
        };
        // A fresh name may collide with a registered one by chance; then it matches.
        let matches = matches.or_else(|| {
            let key = super::truth::normalized(&name);
            self.enterprises
                .iter()
                .find(|e| super::truth::normalized(&e.name) == key)
                .map(|e| e.pripid)
        });
        let id = self.id();
        self.unlicensed.push(Unlicensed {
            bureau,
            id,
            name,
            address,
            found,
            matches,
        });
    }

    /// Injects a discrepancy of `rule` into enterprise `i`, when it applies; true if done.
    pub fn inject(&mut self, i: usize, rule: Rule) -> bool {
        if !self.enterprises[i].injected.is_empty() {
            return false;
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
            Rule::NoOrgCode if active && old_enough && e.qts.is_some() => {
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
