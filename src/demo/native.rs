//! The world as each bureau's own database holds it: rows of the reference native tables
//! (`sql/demo/mysql/`), with each bureau's column names, code values and text forms —
//! national tax prints org codes with a hyphen; local tax keeps dates as `YYYYMMDD` and
//! names as GBK bytes in latin1 columns.

use super::world::{AicState, Enterprise, Tax, Unlicensed, World};
use crate::indicators::Bureau;
use chrono::NaiveDate;
use mysql_async::Value as My;
use std::collections::BTreeMap;

/// A native table: its bureau, name and key column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Table {
    /// The bureau whose database holds it.
    pub bureau: Bureau,
    /// Table name.
    pub name: &'static str,
    /// Its key column.
    pub key: &'static str,
}

const fn t(bureau: Bureau, name: &'static str, key: &'static str) -> Table {
    Table { bureau, name, key }
}

/// Every native table the simulator writes.
pub const TABLES: [Table; 20] = [
    t(Bureau::Aic, "E_BASEINFO", "PRIPID"),
    t(Bureau::Aic, "E_ALTER_RECODER", "ALT_ID"),
    t(Bureau::Aic, "E_NJ_BASEINFO", "NJ_ID"),
    t(Bureau::Qts, "T_JGDM", "JGDM"),
    t(Bureau::Qts, "T_JGDM_BG", "BGXH"),
    t(Bureau::Qts, "T_JGDM_ZF", "ZFXH"),
    t(Bureau::Ntax, "DJ_NSRXX", "DJXH"),
    t(Bureau::Ntax, "DJ_ZXDJ", "ZXDJ_ID"),
    t(Bureau::Ntax, "DJ_YZHZ", "YZHZ_ID"),
    t(Bureau::Ntax, "RD_FZCHRD", "FZCH_ID"),
    t(Bureau::Ntax, "WF_TQDX", "TQDX_ID"),
    t(Bureau::Ntax, "WF_XZCF", "XZCF_ID"),
    t(Bureau::Ntax, "WF_WZJY", "WZJY_ID"),
    t(Bureau::Ltax, "DJ_JL_JBSJ", "JSJDM"),
    t(Bureau::Ltax, "DJ_JL_ZXDJ", "ZXXH"),
    t(Bureau::Ltax, "DJ_JL_YZHZ", "YZXH"),
    t(Bureau::Ltax, "ZS_FZCHGL", "FZXH"),
    t(Bureau::Ltax, "WF_TQDXYYZZ", "TQXH"),
    t(Bureau::Ltax, "WF_XZCFJL", "CFXH"),
    t(Bureau::Ltax, "WF_WZJYHU", "WZXH"),
];

/// A table by name.
pub fn table(name: &str) -> Table {
    TABLES
        .iter()
        .copied()
        .find(|t| t.name == name)
        .unwrap_or(TABLES[0])
}

/// One native row: (column, value) in table order; the key is the first column.
pub type NativeRow = Vec<(&'static str, My)>;

/// Rows per table.
pub type Rows = BTreeMap<&'static str, Vec<NativeRow>>;

fn s(v: impl Into<String>) -> My {
    My::Bytes(v.into().into_bytes())
}

fn opt(v: Option<impl Into<String>>) -> My {
    v.map(s).unwrap_or(My::NULL)
}

fn date(d: NaiveDate) -> My {
    s(d.format("%Y-%m-%d").to_string())
}

fn odate(d: Option<NaiveDate>) -> My {
    d.map(date).unwrap_or(My::NULL)
}

/// Local tax stores dates as YYYYMMDD text ('' when unknown).
fn ymd(d: Option<NaiveDate>) -> My {
    s(d.map(|d| d.format("%Y%m%d").to_string())
        .unwrap_or_default())
}

/// Local tax stores text as GBK bytes (sent over a latin1 connection).
fn gbk(v: &str) -> My {
    let (bytes, _, _) = encoding_rs::GBK.encode(v);
    My::Bytes(bytes.into_owned())
}

fn id(v: u64) -> My {
    My::UInt(v)
}

/// Every native row about one enterprise.
pub fn enterprise_rows(e: &Enterprise) -> Rows {
    let mut rows = Rows::new();
    let (state, can, rev) = match &e.aic {
        AicState::Active => ("1", None, None),
        AicState::Deregistered(d, r) => ("3", Some((*d, r.clone())), None),
        AicState::Revoked(d, r) => ("2", None, Some((*d, r.clone()))),
    };
    rows.entry("E_BASEINFO").or_default().push(vec![
        ("PRIPID", id(e.pripid)),
        ("REGNO", s(&e.reg_no)),
        ("ENTNAME", s(&e.name)),
        ("ENTTYPE", s(e.enttype)),
        ("INDUSTRYPHY", s(e.industry.0.to_string())),
        ("INDUSTRYCO", s(e.industry.1)),
        ("NAME", s(&e.rep.name)),
        ("CERTYPE", s("1")),
        ("CERNO", s(&e.aic_rep_id)),
        ("DOM", s(&e.address)),
        ("DOMDISTRICT", s(&e.district)),
        ("POSTALCODE", s("016000")),
        (
            "TEL",
            s(format!("0473-{}", 2_000_000 + e.pripid % 7_000_000)),
        ),
        ("CBUITEM", s("日用百货、五金交电、建筑材料销售")),
        ("REGCAP", s(format!("{}.0000", 10 + e.pripid % 990))),
        ("ESTDATE", date(e.established)),
        ("APPRDATE", date(e.established)),
        ("REGORG", s(&e.district)),
        ("REGSTATE", s(state)),
        ("CANDATE", odate(can.as_ref().map(|c| c.0))),
        ("CANREA", opt(can.map(|c| c.1))),
        ("REVDATE", odate(rev.as_ref().map(|r| r.0))),
        ("REVREA", opt(rev.map(|r| r.1))),
    ]);
    for a in &e.amendments {
        rows.entry("E_ALTER_RECODER").or_default().push(vec![
            ("ALT_ID", id(a.id)),
            ("PRIPID", id(e.pripid)),
            ("ALTITEM", s(a.item)),
            ("ALTBE", s(&a.before)),
            ("ALTAF", s(&a.after)),
            ("ALTDATE", date(a.on)),
        ]);
    }
    for (nj, year, result) in &e.inspections {
        rows.entry("E_NJ_BASEINFO").or_default().push(vec![
            ("NJ_ID", id(*nj)),
            ("PRIPID", id(e.pripid)),
            ("NJND", s(year.to_string())),
            ("NJJG", s(result.to_string())),
            ("NJRQ", odate(NaiveDate::from_ymd_opt(year + 1, 5, 31))),
        ]);
    }
    if let Some(q) = &e.qts {
        rows.entry("T_JGDM").or_default().push(vec![
            ("JGDM", s(&q.org_code)),
            ("JGMC", s(&q.name)),
            ("JGLX", s(q.org_type.to_string())),
            ("FDDBR", s(&q.rep.name)),
            ("ZJHM", s(&q.rep.id_card)),
            ("JGDZ", s(&q.address)),
            ("XZQH", s(&e.district)),
            ("ZCH", s(&q.reg_no)),
            ("BZRQ", date(q.issued)),
            ("ZFRQ", odate(q.voided.map(|v| v.1))),
            ("ZT", s(if q.voided.is_some() { "2" } else { "1" })),
        ]);
        for (bg, item, content, on) in &q.changes {
            rows.entry("T_JGDM_BG").or_default().push(vec![
                ("BGXH", id(*bg)),
                ("JGDM", s(&q.org_code)),
                ("JGMC", s(&q.name)),
                ("BGSX", s(*item)),
                ("BGNR", s(content)),
                ("BGRQ", date(*on)),
            ]);
        }
        if let Some((zf, on)) = q.voided {
            rows.entry("T_JGDM_ZF").or_default().push(vec![
                ("ZFXH", id(zf)),
                ("JGDM", s(&q.org_code)),
                ("JGMC", s(&q.name)),
                ("ZFRQ", date(on)),
                ("ZFYY", s("注销")),
            ]);
        }
        // Codes voided when a new one was issued: their own rows, voided.
        for p in &q.previous {
            rows.entry("T_JGDM").or_default().push(vec![
                ("JGDM", s(&p.org_code)),
                ("JGMC", s(&q.name)),
                ("JGLX", s(q.org_type.to_string())),
                ("FDDBR", s(&q.rep.name)),
                ("ZJHM", s(&q.rep.id_card)),
                ("JGDZ", s(&q.address)),
                ("XZQH", s(&e.district)),
                ("ZCH", s(&q.reg_no)),
                ("BZRQ", date(p.issued)),
                ("ZFRQ", date(p.voided.1)),
                ("ZT", s("2")),
            ]);
            rows.entry("T_JGDM_ZF").or_default().push(vec![
                ("ZFXH", id(p.voided.0)),
                ("JGDM", s(&p.org_code)),
                ("JGMC", s(&q.name)),
                ("ZFRQ", date(p.voided.1)),
                ("ZFYY", s("换发新代码")),
            ]);
        }
    }
    if let Some(t) = &e.ntax {
        ntax_rows(e, t, &mut rows);
    }
    if let Some(t) = &e.ltax {
        ltax_rows(e, t, &mut rows);
    }
    rows
}

fn ntax_rows(e: &Enterprise, t: &Tax, rows: &mut Rows) {
    let status = if t.dereg.is_some() {
        "07"
    } else if t.abnormal_now() {
        "05"
    } else {
        "03"
    };
    // National tax prints org codes as on the certificate: XXXXXXXX-X.
    let printed = t.org_code.as_deref().map(super::people::printed);
    rows.entry("DJ_NSRXX").or_default().push(vec![
        ("DJXH", id(t.key)),
        ("NSRSBH", s(&t.taxpayer_id)),
        ("NSRMC", s(&t.name)),
        ("ZZJG_DM", opt(printed)),
        ("GSDJ_ZCH", opt(t.reg_no.clone())),
        ("FDDBRXM", s(&t.rep)),
        ("FDDBRSFZJHM", s(&t.rep_id)),
        ("ZCDZ", s(&t.address)),
        ("DJZCLX_DM", s("173")),
        ("HY_DM", s(e.industry.1)),
        ("DJRQ", date(t.registered)),
        ("ZGSWJ_DM", s(format!("1{}0000", e.district))),
        ("NSRZT_DM", s(status)),
    ]);
    if let Some((zx, on, reason)) = &t.dereg {
        rows.entry("DJ_ZXDJ").or_default().push(vec![
            ("ZXDJ_ID", id(*zx)),
            ("DJXH", id(t.key)),
            ("NSRSBH", s(&t.taxpayer_id)),
            ("NSRMC", s(&t.name)),
            ("ZXYY", s(reason)),
            ("ZXRQ", date(*on)),
            ("ZXJG_DM", s(format!("1{}0000", e.district))),
        ]);
    }
    for (yz, on) in &t.checks {
        rows.entry("DJ_YZHZ").or_default().push(vec![
            ("YZHZ_ID", id(*yz)),
            ("DJXH", id(t.key)),
            ("NSRSBH", s(&t.taxpayer_id)),
            ("NSRMC", s(&t.name)),
            ("YZRQ", date(*on)),
        ]);
    }
    for (fz, on, lifted) in &t.abnormal {
        rows.entry("RD_FZCHRD").or_default().push(vec![
            ("FZCH_ID", id(*fz)),
            ("DJXH", id(t.key)),
            ("NSRSBH", s(&t.taxpayer_id)),
            ("NSRMC", s(&t.name)),
            ("RDRQ", date(*on)),
            ("JCRQ", odate(*lifted)),
        ]);
    }
    for (tq, on, reason) in &t.requests {
        rows.entry("WF_TQDX").or_default().push(vec![
            ("TQDX_ID", id(*tq)),
            ("GSDJ_ZCH", s(&e.reg_no)),
            ("QYMC", s(&t.name)),
            ("TQYY", s(reason)),
            ("TQRQ", date(*on)),
        ]);
    }
    for (cf, violation, decision, on) in &t.penalties {
        rows.entry("WF_XZCF").or_default().push(vec![
            ("XZCF_ID", id(*cf)),
            ("DJXH", id(t.key)),
            ("NSRSBH", s(&t.taxpayer_id)),
            ("NSRMC", s(&t.name)),
            ("WFSD", s(*violation)),
            ("CFJG", s(*decision)),
            ("CFRQ", date(*on)),
        ]);
    }
}

fn ltax_rows(e: &Enterprise, t: &Tax, rows: &mut Rows) {
    let key = format!("L{:09}", t.key);
    let status = if t.dereg.is_some() {
        "09"
    } else if t.abnormal_now() {
        "02"
    } else {
        "01"
    };
    rows.entry("DJ_JL_JBSJ").or_default().push(vec![
        ("JSJDM", s(&key)),
        ("SWDJZH", s(&t.taxpayer_id)),
        ("NSRMC", gbk(&t.name)),
        ("ZZJGDM", opt(t.org_code.clone())),
        ("YYZZH", opt(t.reg_no.clone())),
        ("FDDBR", gbk(&t.rep)),
        ("SFZJHM", s(&t.rep_id)),
        ("ZCDZ", gbk(&t.address)),
        ("DJZCLXDM", s("173")),
        ("GJBZHYDM", s(e.industry.1)),
        ("KYDJRQ", ymd(Some(t.registered))),
        ("SWJGZZJGDM", s(format!("2{}0000", e.district))),
        ("NSRZT", s(status)),
        ("GDSGGHBS", s("Y")),
    ]);
    if let Some((zx, on, reason)) = &t.dereg {
        rows.entry("DJ_JL_ZXDJ").or_default().push(vec![
            ("ZXXH", id(*zx)),
            ("JSJDM", s(&key)),
            ("SWDJZH", s(&t.taxpayer_id)),
            ("NSRMC", gbk(&t.name)),
            ("ZXYY", gbk(reason)),
            ("ZXRQ", ymd(Some(*on))),
            ("ZXSWJG", s(format!("2{}0000", e.district))),
        ]);
    }
    for (yz, on) in &t.checks {
        rows.entry("DJ_JL_YZHZ").or_default().push(vec![
            ("YZXH", id(*yz)),
            ("JSJDM", s(&key)),
            ("SWDJZH", s(&t.taxpayer_id)),
            ("NSRMC", gbk(&t.name)),
            ("YZRQ", ymd(Some(*on))),
        ]);
    }
    for (fz, on, lifted) in &t.abnormal {
        rows.entry("ZS_FZCHGL").or_default().push(vec![
            ("FZXH", id(*fz)),
            ("JSJDM", s(&key)),
            ("SWDJZH", s(&t.taxpayer_id)),
            ("NSRMC", gbk(&t.name)),
            ("RDRQ", ymd(Some(*on))),
            ("JCRQ", ymd(*lifted)),
        ]);
    }
    for (tq, on, reason) in &t.requests {
        rows.entry("WF_TQDXYYZZ").or_default().push(vec![
            ("TQXH", id(*tq)),
            ("YYZZH", s(&e.reg_no)),
            ("NSRMC", gbk(&t.name)),
            ("TQYY", gbk(reason)),
            ("TQRQ", ymd(Some(*on))),
        ]);
    }
    for (cf, violation, decision, on) in &t.penalties {
        rows.entry("WF_XZCFJL").or_default().push(vec![
            ("CFXH", id(*cf)),
            ("JSJDM", s(&key)),
            ("SWDJZH", s(&t.taxpayer_id)),
            ("NSRMC", gbk(&t.name)),
            ("WFWZSD", gbk(violation)),
            ("CFJG", gbk(decision)),
            ("CFRQ", ymd(Some(*on))),
        ]);
    }
}

/// The row of an unlicensed-business report.
pub fn unlicensed_rows(u: &Unlicensed) -> Rows {
    let mut rows = Rows::new();
    match u.bureau {
        Bureau::Ltax => rows.entry("WF_WZJYHU").or_default().push(vec![
            ("WZXH", id(u.id)),
            ("QYMC", gbk(&u.name)),
            ("JYDZ", gbk(&u.address)),
            ("FXRQ", ymd(Some(u.found))),
        ]),
        _ => rows.entry("WF_WZJY").or_default().push(vec![
            ("WZJY_ID", id(u.id)),
            ("QYMC", s(&u.name)),
            ("JYDZ", s(&u.address)),
            ("FXRQ", date(u.found)),
        ]),
    }
    rows
}

/// The native rows of some enterprises (to load a large world a slice at a time).
pub fn rows_of(enterprises: &[Enterprise]) -> Rows {
    let mut all = Rows::new();
    for e in enterprises {
        for (t, rows) in enterprise_rows(e) {
            all.entry(t).or_default().extend(rows);
        }
    }
    all
}

/// The rows of the unlicensed-business reports.
pub fn unlicensed_rows_all(world: &World) -> Rows {
    let mut all = Rows::new();
    for u in &world.unlicensed {
        for (t, rows) in unlicensed_rows(u) {
            all.entry(t).or_default().extend(rows);
        }
    }
    all
}

/// Every native row of the world.
pub fn all_rows(world: &World) -> Rows {
    let mut all = Rows::new();
    for e in &world.enterprises {
        for (t, rows) in enterprise_rows(e) {
            all.entry(t).or_default().extend(rows);
        }
    }
    for u in &world.unlicensed {
        for (t, rows) in unlicensed_rows(u) {
            all.entry(t).or_default().extend(rows);
        }
    }
    all
}

/// What changed between two sets of rows: rows to upsert and keys to delete, per table.
pub fn diff(before: &Rows, after: &Rows) -> (Rows, Vec<(&'static str, My)>) {
    let mut upserts = Rows::new();
    let mut deletes = Vec::new();
    for (t, rows) in after {
        let old = before.get(t);
        for r in rows {
            let same = old.is_some_and(|o| o.iter().any(|x| x == r));
            if !same {
                upserts.entry(t).or_default().push(r.clone());
            }
        }
    }
    for (t, rows) in before {
        for r in rows {
            let key = &r[0].1;
            let kept = after
                .get(t)
                .is_some_and(|a| a.iter().any(|x| &x[0].1 == key));
            if !kept {
                deletes.push((*t, key.clone()));
            }
        }
    }
    (upserts, deletes)
}
