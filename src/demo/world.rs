//! The simulated city: enterprises and what each bureau holds about them, with
//! lifecycles, noise that must not become a finding, and injected discrepancies.
//!
//! The world is a plain in-memory model. Everything else derives from it: the rows of
//! each bureau's native tables (`native`), and the ground truth (`truth`). All dates lie
//! on or before `as_of`, the simulated "today" the comparison rules are evaluated at.

use super::people::{self, Person, address, enterprise_name, org_code, person, reg_no};
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
    /// 工商注册号 as QTS holds it (empty: QTS did not record it; the enterprise is then
    /// known to hold the code through its tax registrations).
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
    /// Codes QTS issued before this one and voided when it re-issued.
    pub previous: Vec<PreviousCode>,
}

/// A code QTS issued, then voided when it issued the enterprise a new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousCode {
    /// The old code.
    pub org_code: String,
    /// When it was issued.
    pub issued: NaiveDate,
    /// Its void record: (id, date).
    pub voided: (u64, NaiveDate),
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
    pub(super) rng: Rng,
    next_id: u64,
    pub(super) next_serial: u64,
}

const ENTTYPES: [&str; 5] = ["1100", "1151", "1200", "3200", "4100"];
impl World {
    /// Generates the initial world.
    pub fn generate(options: Options) -> World {
        let mut w = World::empty(options);
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

    /// A world with no enterprises yet (for building scenarios one by one).
    pub fn empty(options: Options) -> World {
        World {
            rng: Rng::new(options.seed),
            options,
            enterprises: Vec::new(),
            unlicensed: Vec::new(),
            next_id: 1,
            next_serial: 1,
        }
    }

    /// Like [`World::establish`], in a given district.
    pub fn establish_in(&mut self, established: NaiveDate, district: &str) -> usize {
        loop {
            let i = self.establish(established);
            if self.enterprises[i].district == district {
                return i;
            }
            self.enterprises.pop();
        }
    }

    /// A report of an unlicensed business with this name and address.
    pub fn report_named(&mut self, bureau: Bureau, name: &str, address: &str) {
        let id = self.id();
        self.unlicensed.push(Unlicensed {
            bureau,
            id,
            name: name.to_owned(),
            address: address.to_owned(),
            found: self.options.as_of - Days::new(100),
        });
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

    pub(super) fn days_before_as_of(&self, days: i64) -> NaiveDate {
        self.options
            .as_of
            .checked_sub_days(Days::new(days.max(0) as u64))
            .unwrap_or(self.options.as_of)
    }

    pub(super) fn date_between(&mut self, from: NaiveDate, to: NaiveDate) -> Option<NaiveDate> {
        let span = (to - from).num_days();
        (span >= 0).then(|| from + Days::new(self.rng.below(span as u64 + 1)))
    }

    pub(super) fn covered(&self, district: &str) -> bool {
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
                previous: Vec::new(),
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
        // How the bureaus' identifiers link: situations the base must follow without a
        // finding (or with exactly the one a lagging bureau earns).
        match self.rng.below(1000) {
            0..=19 => self.code_known_through_tax(i),
            20..=34 => {
                self.reissue_code(i, true);
            }
            45..=74 => self.credit_code(i),
            _ => {}
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
}
