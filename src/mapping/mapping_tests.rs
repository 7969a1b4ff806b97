//! Compiling real-looking mapping files and applying them to rows with Chinese text.

use super::*;
use crate::indicators::Bureau;
use chrono::NaiveDate;
use ebis_source::{Change, Op, Row, Value};
use std::path::PathBuf;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("ebis-mapping-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        Dir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ESTABLISHMENT: &str = "\
record_kind: aic_establishment
source:
  table: E_BASEINFO
  key: [PRIPID]
fields:
  reg_no:
    column: REGNO
    transforms: [identifier]
  name:
    column: ENTNAME
    transforms: [trim, halfwidth, collapse_spaces]
  legal_rep:
    column: NAME
    transforms: [trim]
  address:
    column: DOM
    transforms: [decode: gbk, trim]
  enterprise_type:
    column: ENTTYPE
    transforms:
      - lookup:
          map: {'1100': 有限责任公司, '1200': 股份有限公司}
          missing: keep
  established_on:
    column: ESTDATE
    transforms:
      - null_if: ['', '00000000']
      - date: [YYYYMMDD, YYYY-MM-DD]
  registration_authority:
    value: 乌海市工商行政管理局
";

fn row(cols: &[(&str, Value)]) -> Row {
    cols.iter()
        .map(|(c, v)| ((*c).to_owned(), v.clone()))
        .collect()
}

fn upsert(key: i64, row: Row) -> Change {
    Change {
        table: "E_BASEINFO".into(),
        op: Op::Upsert,
        key: vec![Value::Int(key)],
        row,
        version: 1,
        commit_time: None,
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn gbk(s: &str) -> Value {
    let (bytes, _, _) = encoding_rs::GBK.encode(s);
    Value::Bytes(bytes.into_owned())
}

fn establishment() -> (Dir, Mapping) {
    let dir = Dir::new("est");
    let path = dir.write("aic_establishment.yaml", ESTABLISHMENT);
    let m = compile_file(&path, Some(Bureau::Aic)).expect("compiles");
    (dir, m)
}

#[test]
fn maps_a_row_with_chinese_text_gbk_bytes_codes_and_dates() {
    let (_dir, m) = establishment();
    let r = row(&[
        ("PRIPID", Value::Int(7)),
        ("REGNO", text("150302 000123452")),
        (
            "ENTNAME",
            text("  乌海市（海勃湾）\u{3000}宏达商贸有限公司 "),
        ),
        ("NAME", text("王镕")),
        ("DOM", gbk("内蒙古乌海市海勃湾区新华街１号")),
        ("ENTTYPE", text("1100")),
        ("ESTDATE", text("20060301")),
    ]);
    let Outcome::Upsert(rec) = m.apply(&upsert(7, r), "150302") else {
        panic!("expected a record");
    };
    assert_eq!(rec.source_key, "7");
    assert_eq!(rec.division, "150302");
    let get = |name: &str| {
        let i = m
            .kind
            .fields
            .iter()
            .position(|f| f.name == name)
            .expect("field");
        rec.values[i].clone()
    };
    assert_eq!(get("reg_no"), FieldValue::Text("150302000123452".into()));
    assert_eq!(
        get("name"),
        FieldValue::Text("乌海市(海勃湾) 宏达商贸有限公司".into())
    );
    assert_eq!(get("legal_rep"), FieldValue::Text("王镕".into()));
    assert_eq!(
        get("address"),
        FieldValue::Text("内蒙古乌海市海勃湾区新华街１号".into())
    );
    assert_eq!(
        get("enterprise_type"),
        FieldValue::Text("有限责任公司".into())
    );
    assert_eq!(
        get("established_on"),
        FieldValue::Date(NaiveDate::from_ymd_opt(2006, 3, 1).expect("d"))
    );
    assert_eq!(
        get("registration_authority"),
        FieldValue::Text("乌海市工商行政管理局".into())
    );
    assert_eq!(get("phone"), FieldValue::Null, "unmapped fields are NULL");
}

#[test]
fn a_bad_date_is_rejected_with_field_reason_and_raw_value() {
    let (_dir, m) = establishment();
    let r = row(&[
        ("PRIPID", Value::Int(8)),
        ("REGNO", text("150302000123452")),
        ("ENTNAME", text("乌海市某公司")),
        ("NAME", text("张三")),
        ("DOM", gbk("乌达区")),
        ("ENTTYPE", text("1100")),
        ("ESTDATE", text("2006-13-45")),
    ]);
    assert_eq!(
        m.apply(&upsert(8, r), "150302"),
        Outcome::Rejected(Rejected {
            source_key: "8".into(),
            field: "established_on".into(),
            reason: "not a date in format YYYYMMDD or YYYY-MM-DD".into(),
            raw: Some("2006-13-45".into()),
        })
    );
}

#[test]
fn invalid_gbk_bytes_are_rejected_with_the_raw_bytes() {
    let (_dir, m) = establishment();
    let r = row(&[
        ("PRIPID", Value::Int(9)),
        ("REGNO", text("150302000123452")),
        ("ENTNAME", text("乌海市某公司")),
        ("NAME", text("张三")),
        ("DOM", Value::Bytes(vec![0xCE, 0xDA, 0xFF, 0xFF])),
        ("ENTTYPE", text("1100")),
        ("ESTDATE", text("20060301")),
    ]);
    let Outcome::Rejected(rej) = m.apply(&upsert(9, r), "150302") else {
        panic!("expected a rejection");
    };
    assert_eq!(rej.field, "address");
    assert_eq!(rej.reason, "invalid GBK/GB18030 byte sequence at byte 2");
    assert_eq!(rej.raw.as_deref(), Some("\\xcedaffff"));
}

#[test]
fn blank_and_zero_dates_become_null() {
    let (_dir, m) = establishment();
    for raw in ["", "00000000"] {
        let r = row(&[
            ("PRIPID", Value::Int(1)),
            ("REGNO", text("150302000123452")),
            ("ENTNAME", text("乌海市某公司")),
            ("NAME", text("张三")),
            ("DOM", Value::Null),
            ("ENTTYPE", Value::Null),
            ("ESTDATE", text(raw)),
        ]);
        let Outcome::Upsert(rec) = m.apply(&upsert(1, r), "150302") else {
            panic!("expected a record for {raw:?}");
        };
        assert!(
            rec.values
                .iter()
                .filter(|v| **v == FieldValue::Null)
                .count()
                >= 3
        );
    }
}

#[test]
fn a_deleted_row_is_a_delete() {
    let (_dir, m) = establishment();
    let mut c = upsert(5, Row::new());
    c.op = Op::Delete;
    assert_eq!(
        m.apply(&c, "150302"),
        Outcome::Delete {
            source_key: "5".into()
        }
    );
}

const REVOCATION: &str = "\
record_kind: aic_revocation
source:
  table: E_BASEINFO
  key: [PRIPID]
  filter:
    - {column: REGSTATE, equals: '2'}
    - {column: REVDATE, is_null: false}
fields:
  reg_no: {column: REGNO}
  name: {column: ENTNAME}
  revoked_on:
    column: REVDATE
    transforms: [{date: YYYYMMDD}]
";

#[test]
fn a_row_that_stops_matching_the_filter_is_a_delete_for_that_kind() {
    let dir = Dir::new("rev");
    let m = compile_file(
        &dir.write("aic_revocation.yaml", REVOCATION),
        Some(Bureau::Aic),
    )
    .expect("ok");
    let revoked = row(&[
        ("PRIPID", Value::Int(3)),
        ("REGNO", text("150302000123452")),
        ("ENTNAME", text("乌海市某公司")),
        ("REGSTATE", Value::Int(2)),
        ("REVDATE", text("20061012")),
    ]);
    assert!(matches!(
        m.apply(&upsert(3, revoked), "150302"),
        Outcome::Upsert(_)
    ));
    let active = row(&[
        ("PRIPID", Value::Int(3)),
        ("REGNO", text("150302000123452")),
        ("ENTNAME", text("乌海市某公司")),
        ("REGSTATE", text("1 ")),
        ("REVDATE", text("")),
    ]);
    assert_eq!(
        m.apply(&upsert(3, active), "150302"),
        Outcome::Delete {
            source_key: "3".into()
        }
    );
}

#[test]
fn latin1_mangled_gbk_text_decodes_and_years_parse() {
    let dir = Dir::new("insp");
    let path = dir.write(
        "aic_annual_inspection.yaml",
        "\
record_kind: aic_annual_inspection
source: {table: E_ANNUAL, key: [PRIPID, ANCHEYEAR]}
fields:
  reg_no: {column: REGNO}
  inspection_year: {column: ANCHEYEAR}
  result:
    column: RESULT
    transforms: [{decode: gbk}, trim]
",
    );
    let m = compile_file(&path, Some(Bureau::Aic)).expect("ok");
    // 合格 in GBK (BA CF B8 F1) as it arrives through a latin1 column and a UTF-8 connection.
    let mangled: String = encoding_rs::WINDOWS_1252
        .decode_without_bom_handling(&[0xBA, 0xCF, 0xB8, 0xF1])
        .0
        .into_owned();
    let c = Change {
        table: "E_ANNUAL".into(),
        op: Op::Upsert,
        key: vec![Value::Int(3), text("2005")],
        row: row(&[
            ("REGNO", text("150302000123452")),
            ("ANCHEYEAR", text("2005")),
            ("RESULT", Value::Text(mangled)),
        ]),
        version: 1,
        commit_time: None,
    };
    let Outcome::Upsert(rec) = m.apply(&c, "150303") else {
        panic!("expected a record");
    };
    assert_eq!(rec.source_key, "3|2005");
    assert_eq!(rec.values[2], FieldValue::Year(2005));
    assert_eq!(rec.values[3], FieldValue::Text("合格".into()));
}

fn errors_of(name: &str, text: &str) -> Vec<String> {
    let dir = Dir::new(name);
    let path = dir.write(&format!("{name}.yaml"), text);
    compile_file(&path, Some(Bureau::Aic))
        .expect_err("must not compile")
        .0
        .iter()
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect()
}

#[test]
fn a_misspelled_field_is_named_with_its_place_and_a_suggestion() {
    let errs = errors_of(
        "typo",
        &ESTABLISHMENT.replace("  legal_rep:", "  legal_repp:"),
    );
    assert_eq!(
        errs,
        [
            "12:3: unknown field `legal_repp` for record kind aic_establishment (did you mean `legal_rep`?)"
        ]
    );
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let bad = ESTABLISHMENT
        .replace("key: [PRIPID]", "key: [PRIPID, 'X Y']")
        .replace("column: REGNO", "column: 'REGNO; DROP TABLE t'")
        .replace("date: [YYYYMMDD, YYYY-MM-DD]", "date: [YYYYMMDD, YYYY-MM]")
        .replace("decode: gbk", "decode: big5")
        .replace("missing: keep", "missing: maybe");
    let errs = errors_of("many", &bad);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(
        errs[0].starts_with("4:17: `source.key`: `X Y` is not a valid SQL identifier"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with(
            "7:13: field `reg_no`: `REGNO; DROP TABLE t` is not a valid SQL identifier"
        ),
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with("17:18: field `address`: cannot decode `big5`"),
        "{errs:#?}"
    );
    assert!(
        errs[3].starts_with("21:9: field `enterprise_type`: lookup `missing: maybe`"),
        "{errs:#?}"
    );
    assert!(
        errs[4].starts_with(
            "28:9: field `established_on`: date format `YYYY-MM` needs YYYY, MM and DD"
        ),
        "{errs:#?}"
    );
}

#[test]
fn unknown_kind_missing_required_field_and_wrong_bureau() {
    let errs = errors_of(
        "kind",
        &ESTABLISHMENT.replace("aic_establishment", "aic_establishmnet"),
    );
    assert_eq!(
        errs,
        [
            "1:14: unknown record kind `aic_establishmnet` (did you mean `aic_establishment`?); the record kinds of bureau aic: aic_establishment, aic_amendment, aic_deregistration, aic_revocation, aic_annual_inspection"
        ]
    );
    let errs = errors_of(
        "req",
        &ESTABLISHMENT.replace(
            "  reg_no:\n    column: REGNO\n    transforms: [identifier]\n",
            "",
        ),
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("6:3: missing field `reg_no` (企业注册号)"),
        "{errs:#?}"
    );
    let errs = errors_of(
        "bureau",
        &ESTABLISHMENT
            .replace("aic_establishment", "tax_unlicensed")
            .replace("  reg_no:", "  rx:"),
    );
    assert!(
        errs[0].contains("record kind `tax_unlicensed` cannot come from bureau aic"),
        "{errs:#?}"
    );
}

#[test]
fn structural_errors_come_from_the_parser_with_their_place() {
    let errs = errors_of(
        "struct",
        &ESTABLISHMENT.replace("    transforms: [trim]\n", "    transfroms: [trim]\n"),
    );
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("14:5: unknown field `transfroms`"),
        "{errs:#?}"
    );
    let errs = errors_of("tf", &ESTABLISHMENT.replace("[trim]", "[trimm]"));
    assert!(
        errs[0].starts_with("14:18: unknown variant `trimm`"),
        "{errs:#?}"
    );
    let errs = errors_of(
        "two",
        &ESTABLISHMENT.replace("    column: NAME\n", "    column: NAME\n    value: x\n"),
    );
    assert!(
        errs[0].starts_with(
            "13:5: field `legal_rep` needs exactly one of column, expression, value, concat"
        ),
        "{errs:#?}"
    );
}

#[test]
fn versions_change_with_content_and_code_tables() {
    let dir = Dir::new("ver");
    std::fs::create_dir_all(dir.0.join("codes")).expect("mkdir");
    dir.write("codes/status.yaml", "'01': 正常\n'03': 非正常\n");
    let text = "\
record_kind: qts_code_voided
source: {table: T_JGDM, key: [JGDM]}
fields:
  org_code: {column: JGDM, transforms: [identifier]}
  org_name:
    column: JGMC
    transforms: [{lookup: {file: codes/status.yaml, missing: keep}}]
";
    let p = dir.write("a.yaml", text);
    let v1 = compile_file(&p, Some(Bureau::Qts)).expect("ok").version;
    dir.write("codes/status.yaml", "'01': 正常\n'03': 非正常户\n");
    let v2 = compile_file(&p, Some(Bureau::Qts)).expect("ok").version;
    assert_ne!(v1, v2, "a changed code table changes the version");
    assert_eq!(v1.len(), 12);
    dir.write("codes/status.yaml", "'01': [not, a, string]\n");
    let err = compile_file(&p, Some(Bureau::Qts)).expect_err("bad code table");
    assert!(err.0[0].message.contains("lookup file"), "{err}");
}

#[test]
fn a_folder_is_planned_per_table() {
    let dir = Dir::new("set");
    dir.write("aic_establishment.yaml", ESTABLISHMENT);
    dir.write("aic_revocation.yaml", REVOCATION);
    let set = MappingSet::load_dir(&dir.0, Some(Bureau::Aic)).expect("ok");
    let plans = set.plans();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].table, "E_BASEINFO");
    assert_eq!(plans[0].key, ["PRIPID"]);
    for c in ["REGNO", "ENTNAME", "DOM", "ESTDATE", "REGSTATE", "REVDATE"] {
        assert!(plans[0].columns.iter().any(|x| x == c), "{c} planned");
    }
    assert_eq!(set.for_table("e_baseinfo").count(), 2);
    dir.write(
        "zz.yaml",
        &REVOCATION.replace("key: [PRIPID]", "key: [REGNO]"),
    );
    let err = MappingSet::load_dir(&dir.0, Some(Bureau::Aic)).expect_err("disagreeing keys");
    let text = err.to_string();
    assert!(text.contains("must agree on its key"), "{text}");
    assert!(
        text.contains("already filled from table E_BASEINFO"),
        "{text}"
    );
}

#[test]
fn values_the_warehouse_cannot_store_are_rejections_not_failures() {
    let (_dir, m) = establishment();
    let base = |name: Value, date: Value| {
        row(&[
            ("PRIPID", Value::Int(10)),
            ("REGNO", text("150302000123452")),
            ("ENTNAME", name),
            ("NAME", text("张三")),
            ("DOM", gbk("乌达区")),
            ("ENTTYPE", text("1100")),
            ("ESTDATE", date),
        ])
    };
    // A NUL inside text: rejected, the raw value kept as bytes.
    let Outcome::Rejected(rej) =
        m.apply(&upsert(10, base(text("a\0b"), text("20060301"))), "150302")
    else {
        panic!("expected a rejection");
    };
    assert_eq!(
        (rej.field.as_str(), rej.raw.as_deref()),
        ("name", Some("\\x610062"))
    );
    assert!(rej.reason.contains("NUL"), "{}", rej.reason);
    // A year 0 date that MySQL accepts.
    let year_zero = NaiveDate::from_ymd_opt(0, 1, 1).expect("d");
    let Outcome::Rejected(rej) = m.apply(
        &upsert(10, base(text("乌海市某公司"), Value::Date(year_zero))),
        "150302",
    ) else {
        panic!("expected a rejection");
    };
    assert_eq!(rej.field, "established_on");
    assert_eq!(rej.reason, "a date outside the years 1 to 9999");
}

#[test]
fn keys_that_cannot_identify_a_row_are_rejected_each_on_its_own() {
    let (_dir, m) = establishment();
    let with_key = |key: Value, name: &str| Change {
        key: vec![key.clone()],
        ..upsert(
            0,
            row(&[
                ("PRIPID", key),
                ("REGNO", text("150302000123452")),
                ("ENTNAME", text(name)),
                ("NAME", text("张三")),
                ("DOM", gbk("乌达区")),
                ("ENTTYPE", text("1100")),
                ("ESTDATE", text("20060301")),
            ]),
        )
    };
    let rejected = |c: &Change| match m.apply(c, "150302") {
        Outcome::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    };
    let a = rejected(&with_key(Value::Null, "甲公司"));
    let b = rejected(&with_key(Value::Null, "乙公司"));
    assert_eq!(a.field, "key");
    assert!(
        a.reason.contains("key column PRIPID is NULL"),
        "{}",
        a.reason
    );
    assert_ne!(
        a.source_key, b.source_key,
        "two NULL-key rows are two quarantine entries, not one"
    );
    let nul = rejected(&with_key(text("L\u{0}1"), "丙公司"));
    assert_eq!(nul.source_key, "\\x4c0031");
    assert!(!nul.source_key.contains('\0'));
    let long = rejected(&with_key(text(&"键".repeat(1000)), "丁公司"));
    assert!(long.reason.contains("3000 bytes"), "{}", long.reason);
    // Their deletes touch nothing and never carry a NUL to the warehouse.
    let delete = Change {
        op: Op::Delete,
        row: Row::new(),
        ..with_key(text("L\u{0}1"), "")
    };
    assert_eq!(
        m.apply(&delete, "150302"),
        Outcome::Delete {
            source_key: "\\x4c0031".into()
        }
    );
}

#[test]
fn concat_joins_columns_as_the_sources_concat_of_coalesced_texts_would() {
    let with_concat = ESTABLISHMENT.replace(
        "  registration_authority:\n    value: 乌海市工商行政管理局\n",
        "  industry_code:\n    concat: [INDUSTRYPHY, INDUSTRYCO]\n    transforms: [{null_if: ['']}]\n",
    );
    let dir = Dir::new("concat");
    let path = dir.write("aic_establishment.yaml", &with_concat);
    let m = compile_file(&path, Some(Bureau::Aic)).expect("compiles");
    let plans = MappingSet {
        mappings: vec![m.clone()],
    }
    .plans();
    assert!(
        ["INDUSTRYPHY", "INDUSTRYCO"]
            .iter()
            .all(|c| plans[0].columns.iter().any(|p| p == c)),
        "both columns are read: {:?}",
        plans[0].columns
    );
    assert!(
        plans[0].expressions.is_empty(),
        "nothing asked of the source"
    );
    let industry = |phy: Value, co: Value| {
        let r = row(&[
            ("PRIPID", Value::Int(7)),
            ("REGNO", text("150302000123452")),
            ("ENTNAME", text("乌海市宏达商贸有限公司")),
            ("NAME", Value::Null),
            ("DOM", Value::Null),
            ("ENTTYPE", Value::Null),
            ("ESTDATE", Value::Null),
            ("INDUSTRYPHY", phy),
            ("INDUSTRYCO", co),
        ]);
        let i = m
            .kind
            .fields
            .iter()
            .position(|f| f.name == "industry_code")
            .expect("field");
        match m.apply(&upsert(7, r), "150302") {
            Outcome::Upsert(rec) => Ok(rec.values[i].clone()),
            Outcome::Rejected(rej) => Err(rej.reason),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        industry(text("C"), text("1310")),
        Ok(FieldValue::Text("C1310".into()))
    );
    assert_eq!(
        industry(Value::Null, text("1310")),
        Ok(FieldValue::Text("1310".into()))
    );
    assert_eq!(industry(Value::Null, Value::Null), Ok(FieldValue::Null));
    let bytes = industry(text("C"), Value::Bytes(vec![0xFE]));
    assert!(
        bytes
            .as_ref()
            .is_err_and(|r| r.contains("INDUSTRYCO holds bytes")),
        "{bytes:?}"
    );
    let errs = errors_of(
        "one",
        &with_concat.replace("[INDUSTRYPHY, INDUSTRYCO]", "[INDUSTRYPHY]"),
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("concat joins two or more columns")),
        "{errs:#?}"
    );
    let errs = errors_of(
        "bad",
        &with_concat.replace("[INDUSTRYPHY, INDUSTRYCO]", "[INDUSTRYPHY, 'A; DROP']"),
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("is not a valid SQL identifier")),
        "{errs:#?}"
    );
}
