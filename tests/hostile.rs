//! Hostile values through real source tables, on a bureau server whose clock reads
//! `+08:00`: every value either arrives intact or becomes a quarantined row naming its
//! field; no source stops, and the rest of each batch arrives.

use crate::support::TempDir;
use crate::support::harness::{Env, SourceDef};
use crate::support::mysql::{MyDb, gbk};
use ebis::config::ConnectionConfig;
use ebis::demo::servers::PrivateMariadb;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// One table holding every type a bureau's tables use, mapped onto the five AIC kinds.
const TABLE: &str = "CREATE TABLE HOSTILE (
    ID       BIGINT NOT NULL PRIMARY KEY,
    REGNO    VARCHAR(20) NOT NULL,
    NAME     MEDIUMTEXT NULL,
    NAME_GBK VARCHAR(300) CHARACTER SET latin1 NULL,
    SCOPE    MEDIUMTEXT NULL,
    BYTES    BLOB NULL,
    AMOUNT   DECIMAL(40, 10) NULL,
    D        DATE NULL,
    DT       DATETIME(6) NULL,
    TS       TIMESTAMP(6) NULL DEFAULT NULL,
    TM       TIME NULL,
    YR       YEAR NULL,
    YMD      CHAR(10) NULL
) DEFAULT CHARSET=utf8mb4";

const MAPPINGS: [(&str, &str); 5] = [
    (
        "aic_establishment.yaml",
        "record_kind: aic_establishment
source: {table: HOSTILE, key: [ID]}
fields:
  reg_no: {column: REGNO}
  name: {column: NAME}
  address: {column: NAME_GBK, transforms: [{decode: gbk}]}
  general_scope: {column: SCOPE}
  phone: {column: BYTES}
  postcode: {column: AMOUNT}
  established_on: {column: D}
",
    ),
    (
        "aic_deregistration.yaml",
        "record_kind: aic_deregistration
source: {table: HOSTILE, key: [ID]}
fields:
  reg_no: {column: REGNO}
  deregistered_on: {column: DT}
",
    ),
    (
        "aic_revocation.yaml",
        "record_kind: aic_revocation
source: {table: HOSTILE, key: [ID]}
fields:
  reg_no: {column: REGNO}
  revoked_on: {column: TS}
",
    ),
    (
        "aic_amendment.yaml",
        "record_kind: aic_amendment
source: {table: HOSTILE, key: [ID]}
fields:
  reg_no: {column: REGNO}
  change_item: {column: TM}
  approved_on:
    column: YMD
    transforms: [trim, {null_if: ['', '00000000']}, {date: YYYYMMDD}]
",
    ),
    (
        "aic_annual_inspection.yaml",
        "record_kind: aic_annual_inspection
source: {table: HOSTILE, key: [ID]}
fields:
  reg_no: {column: REGNO}
  inspection_year: {column: YR}
",
    ),
];

/// What must become of a hostile value.
enum Expect {
    /// The field arrives with this text (`None`: NULL).
    Intact(Option<&'static str>),
    /// The row is quarantined for the record kind, naming the field, with this reason.
    Quarantined(&'static str),
    /// The field arrives with this many characters (a value too long to spell here).
    Chars(usize),
}

struct Case {
    column: &'static str,
    /// SQL for the value (a literal or an expression).
    value: String,
    kind: &'static str,
    field: &'static str,
    expect: Expect,
}

fn case(
    column: &'static str,
    value: &str,
    kind: &'static str,
    field: &'static str,
    expect: Expect,
) -> Case {
    Case {
        column,
        value: value.to_owned(),
        kind,
        field,
        expect,
    }
}

fn cases() -> Vec<Case> {
    use Expect::*;
    const EST: &str = "aic_establishment";
    let mut rng = crate::support::harness::Rng::new(2006);
    let noise: String = (0..350_000)
        .map(|_| char::from_u32(0x4E00 + (rng.below(0x5000) as u32)).unwrap_or('乌'))
        .collect();
    vec![
        // Text the warehouse cannot hold, and text it can.
        case(
            "NAME",
            "CONCAT('a', CHAR(0), 'b')",
            EST,
            "name",
            Quarantined("NUL"),
        ),
        case("SCOPE", "CHAR(0)", EST, "general_scope", Quarantined("NUL")),
        case(
            "NAME",
            "'乌海😀企业'",
            EST,
            "name",
            Intact(Some("乌海😀企业")),
        ),
        case("NAME", "'𠀀𪚥龘'", EST, "name", Intact(Some("𠀀𪚥龘"))),
        case("NAME", "''", EST, "name", Intact(Some(""))),
        case(
            "NAME",
            "'甲\\t乙\\n丙\\r'",
            EST,
            "name",
            Intact(Some("甲\t乙\n丙\r")),
        ),
        case(
            "NAME",
            "'宏\u{200B}达\u{202E}商贸'",
            EST,
            "name",
            Intact(Some("宏\u{200B}达\u{202E}商贸")),
        ),
        case(
            "NAME",
            "'O''Brien\"); DROP TABLE x; --'",
            EST,
            "name",
            Intact(Some("O'Brien\"); DROP TABLE x; --")),
        ),
        case("NAME", "'\\\\x41'", EST, "name", Intact(Some("\\x41"))),
        case(
            "SCOPE",
            &format!("'{noise}'"),
            EST,
            "general_scope",
            Intact(None),
        ),
        // A megabyte of name: stored whole, and taken into the enterprise base (whose
        // name index is a hash, which any length fits).
        case("NAME", &format!("'{noise}'"), EST, "name", Chars(350_000)),
        // GBK held in latin1.
        case(
            "NAME_GBK",
            &gbk("内蒙古乌海市海勃湾区"),
            EST,
            "address",
            Intact(Some("内蒙古乌海市海勃湾区")),
        ),
        case(
            "NAME_GBK",
            "X'FFFE41'",
            EST,
            "address",
            Quarantined("invalid GBK"),
        ),
        case(
            "NAME_GBK",
            "X'CEDA00C9'",
            EST,
            "address",
            Quarantined("invalid GBK"),
        ),
        case(
            "NAME_GBK",
            "X'CE'",
            EST,
            "address",
            Quarantined("invalid GBK"),
        ),
        case(
            "NAME_GBK",
            "X'41004200'",
            EST,
            "address",
            Quarantined("NUL"),
        ),
        // Bytes and numbers.
        case(
            "BYTES",
            "X'E4B98CE6B5B7'",
            EST,
            "phone",
            Intact(Some("乌海")),
        ),
        case(
            "BYTES",
            "X'C0FF00'",
            EST,
            "phone",
            Quarantined("not valid UTF-8"),
        ),
        case(
            "AMOUNT",
            "123456789012345678901234567890.1234567891",
            EST,
            "postcode",
            Intact(Some("123456789012345678901234567890.1234567891")),
        ),
        case(
            "AMOUNT",
            "-0.0000000001",
            EST,
            "postcode",
            Intact(Some("-0.0000000001")),
        ),
        // Dates MySQL accepts that are no dates.
        case(
            "D",
            "'0000-00-00'",
            EST,
            "established_on",
            Quarantined("not a date"),
        ),
        case(
            "D",
            "'2006-02-30'",
            EST,
            "established_on",
            Quarantined("not a date"),
        ),
        case(
            "D",
            "'0000-01-01'",
            EST,
            "established_on",
            Quarantined("outside the years 1 to 9999"),
        ),
        case(
            "D",
            "'9999-12-31'",
            EST,
            "established_on",
            Intact(Some("9999-12-31")),
        ),
        case(
            "D",
            "'1000-01-01'",
            EST,
            "established_on",
            Intact(Some("1000-01-01")),
        ),
        case(
            "DT",
            "'0000-00-00 00:00:00'",
            "aic_deregistration",
            "deregistered_on",
            Quarantined("not a date"),
        ),
        case(
            "DT",
            "'2006-08-01 00:30:00'",
            "aic_deregistration",
            "deregistered_on",
            Intact(Some("2006-08-01")),
        ),
        case(
            "DT",
            "'9999-12-31 23:59:59.999999'",
            "aic_deregistration",
            "deregistered_on",
            Intact(Some("9999-12-31")),
        ),
        // Every temporal type keeps its wall clock on a +08:00 server.
        case(
            "TS",
            "'2006-08-01 00:30:00'",
            "aic_revocation",
            "revoked_on",
            Intact(Some("2006-08-01")),
        ),
        case(
            "TS",
            "'2006-07-31 23:59:59'",
            "aic_revocation",
            "revoked_on",
            Intact(Some("2006-07-31")),
        ),
        case(
            "TS",
            "'1970-01-01 08:00:01'",
            "aic_revocation",
            "revoked_on",
            Intact(Some("1970-01-01")),
        ),
        case(
            "TS",
            "'2038-01-19 11:14:07'",
            "aic_revocation",
            "revoked_on",
            Intact(Some("2038-01-19")),
        ),
        case(
            "TM",
            "'838:59:59'",
            "aic_amendment",
            "change_item",
            Intact(Some("838:59:59")),
        ),
        case(
            "TM",
            "'-12:00:00'",
            "aic_amendment",
            "change_item",
            Intact(Some("-12:00:00")),
        ),
        case(
            "YMD",
            "'20061332'",
            "aic_amendment",
            "approved_on",
            Quarantined("not a date"),
        ),
        case(
            "YMD",
            "'2006-8-1'",
            "aic_amendment",
            "approved_on",
            Quarantined("not a date"),
        ),
        case(
            "YMD",
            "'00000000'",
            "aic_amendment",
            "approved_on",
            Intact(None),
        ),
        case("YMD", "'   '", "aic_amendment", "approved_on", Intact(None)),
        case(
            "YMD",
            "'20060801'",
            "aic_amendment",
            "approved_on",
            Intact(Some("2006-08-01")),
        ),
        case(
            "YR",
            "0",
            "aic_annual_inspection",
            "inspection_year",
            Quarantined("not a year"),
        ),
        case(
            "YR",
            "2155",
            "aic_annual_inspection",
            "inspection_year",
            Quarantined("not a year"),
        ),
        case(
            "YR",
            "1901",
            "aic_annual_inspection",
            "inspection_year",
            Intact(Some("1901")),
        ),
    ]
}

/// An ordinary row: every column a plain value.
fn ordinary(id: u64) -> String {
    format!(
        "INSERT INTO HOSTILE (ID, REGNO, NAME, NAME_GBK, SCOPE, BYTES, AMOUNT, D, DT, TS, TM, YR, YMD)
         VALUES ({id}, '150302{id:09}', '乌海市宏达商贸有限公司', {}, '日用百货', 'ok', 1.5, '2006-03-01',
                 '2006-03-01 08:00:00', '2006-03-01 08:00:00', '08:00:00', 2006, '20060301')",
        gbk("乌海市")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_hostile_values_arrive_intact_or_in_quarantine_and_no_source_stops() {
    let servers = TempDir::new("ebis_tz");
    let server = PrivateMariadb::start(
        &servers.path().join("mariadb"),
        &["--default-time-zone=+08:00"],
    )
    .await
    .expect("a private MariaDB at +08:00");
    let admin = ConnectionConfig {
        url: server.url(),
        password_env: None,
        password_file: None,
        tls: Default::default(),
    };
    let db = MyDb::create_on(&admin, &[TABLE.to_owned()]).await;
    let mut c = db.conn().await;
    use mysql_async::prelude::Queryable;
    let zone: String = c
        .query_first("SELECT @@time_zone")
        .await
        .expect("zone")
        .expect("a row");
    assert_eq!(zone, "+08:00", "the bureau server must run at +08:00");
    c.query_drop("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
        .await
        .expect("sql_mode");
    let cases = cases();
    // Half before the first snapshot, half streamed; ordinary rows around each.
    let insert = |id: u64, cs: &Case| {
        format!(
            "{}; UPDATE HOSTILE SET {} = {} WHERE ID = {id}",
            ordinary(id),
            cs.column,
            cs.value
        )
    };
    let half = cases.len() / 2;
    for (i, cs) in cases.iter().enumerate().take(half) {
        c.query_drop(insert(100 + i as u64, cs))
            .await
            .expect("insert");
        c.query_drop(ordinary(1000 + i as u64))
            .await
            .expect("ordinary");
    }

    let mappings = TempDir::new("ebis_hostile_mappings");
    for (file, text) in MAPPINGS {
        std::fs::write(mappings.path().join(file), text).expect("mapping");
    }
    let env = Env::custom(vec![SourceDef {
        name: "aic_tz".to_owned(),
        bureau: "aic".to_owned(),
        division: "150302".to_owned(),
        capture: "mode: changelog\ngap_timeout: 30s".to_owned(),
        connection: db.conn.clone(),
        mappings: mappings.path().to_owned(),
    }])
    .await;
    let run = env.start();
    // The first half arrives by the snapshot; the second is streamed.
    env.wait_count(
        "select (select count(*) from exchange.aic_revocation where deleted_at is null)
              + (select count(*) from ebis.quarantine where record_kind = 'aic_revocation')",
        2 * half as i64,
        T,
    )
    .await;
    env.wait_count(
        "select count(*) from ebis.source_status where state = 'streaming'",
        1,
        T,
    )
    .await;
    for (i, cs) in cases.iter().enumerate().skip(half) {
        c.query_drop(insert(100 + i as u64, cs))
            .await
            .expect("insert");
        c.query_drop(ordinary(1000 + i as u64))
            .await
            .expect("ordinary");
    }
    let rows = 2 * cases.len() as i64;
    let quarantined_est = cases
        .iter()
        .filter(|c| c.kind == "aic_establishment" && matches!(c.expect, Expect::Quarantined(_)))
        .count() as i64;
    // Every row arrives somewhere: the kind's table or its quarantine.
    for (file, _) in MAPPINGS {
        let kind = file.trim_end_matches(".yaml");
        env.wait_count(
            &format!(
                "select (select count(*) from exchange.{kind} where deleted_at is null)
                      + (select count(*) from ebis.quarantine where record_kind = '{kind}' and resolved_at is null)"
            ),
            rows,
            T,
        )
        .await;
    }
    let pg = env.pg().await;
    let mut problems = Vec::new();
    for (i, cs) in cases.iter().enumerate() {
        let key = (100 + i).to_string();
        let stored: Option<Option<String>> = pg
            .query_opt(
                &format!(
                    "select {}::text from exchange.{} where source_key = $1 and deleted_at is null",
                    cs.field, cs.kind
                ),
                &[&key],
            )
            .await
            .expect("stored")
            .map(|r| r.get(0));
        let rejected: Option<(String, String, Option<String>)> = pg
            .query_opt(
                "select field, reason, raw_value from ebis.quarantine
                 where record_kind = $1 and source_key = $2 and resolved_at is null",
                &[&cs.kind, &key],
            )
            .await
            .expect("quarantine")
            .map(|r| (r.get(0), r.get(1), r.get(2)));
        let what = format!("{} = {:.40}", cs.column, cs.value);
        match (&cs.expect, &stored, &rejected) {
            (Expect::Intact(want), Some(got), None) => {
                if let Some(want) = want
                    && got.as_deref() != Some(*want)
                {
                    problems.push(format!("{what}: arrived as {got:?}, want {want:?}"));
                }
            }
            (Expect::Chars(n), Some(Some(got)), None) if got.chars().count() == *n => {}
            (Expect::Quarantined(why), None, Some((field, reason, raw))) => {
                // The warehouse names a column only for some errors (not for an index).
                let field_ok = field == cs.field
                    || (field == "(row)" && reason.contains("the warehouse refused"));
                if !field_ok || !reason.contains(why) {
                    problems.push(format!("{what}: quarantined as {field}: {reason}"));
                }
                if raw.as_deref().is_some_and(|r| r.contains('\0')) {
                    problems.push(format!("{what}: raw value holds a NUL"));
                }
            }
            _ => problems.push(format!(
                "{what}: stored {:?}, quarantined {rejected:?}",
                stored.map(|s| s.map(|t| t.chars().take(40).collect::<String>()))
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The enterprise base took every record in, the megabyte name too.
    env.wh.settle_base().await.expect("settle the base");
    let long: i64 = pg
        .query_one(
            "select count(*) from core.enterprise where length(name) = 350000",
            &[],
        )
        .await
        .expect("base")
        .get(0);
    assert_eq!(long, 1, "the megabyte name is in the enterprise base");
    // The ordinary rows of every batch arrived in every kind.
    for (file, _) in MAPPINGS {
        let kind = file.trim_end_matches(".yaml");
        let n: i64 = pg
            .query_one(
                &format!("select count(*) from exchange.{kind} where source_key::bigint >= 1000"),
                &[],
            )
            .await
            .expect("ordinary")
            .get(0);
        assert_eq!(n, cases.len() as i64, "{kind}: ordinary rows");
    }
    assert!(quarantined_est >= 8);
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].state, "streaming", "{status:?}");
    // The commit times of streamed changes are real instants, not shifted by +08:00.
    let newest: Option<chrono::DateTime<chrono::Utc>> = pg
        .query_one(
            "select max(source_commit_time) from exchange.aic_revocation",
            &[],
        )
        .await
        .expect("commit time")
        .get(0);
    let skew = (chrono::Utc::now() - newest.expect("a commit time"))
        .num_seconds()
        .abs();
    assert!(skew < 600, "source commit time is {skew} s off");
    assert_eq!(run.stop().await, Vec::<(String, String)>::new());
    drop(env);
    drop(db);
    drop(server);
}
