//! Capture end to end on real MariaDB and PostgreSQL: both modes, every field and type,
//! Chinese text in UTF-8, GBK and latin1-held GBK, deletes as tombstones, quarantine,
//! restarts.

use crate::support::harness::{AIC_CHANGELOG, Env, LTAX_TIMESTAMP, Rng, aic_insert};
use crate::support::mysql::gbk;
use crate::support::pg::texts;
use chrono::NaiveDate;
use ebis_source::Source;
use mysql_async::prelude::Queryable;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changelog_capture_brings_inserts_updates_and_deletes_with_every_field() {
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let run = env.start();
    aic.exec(
        "INSERT INTO E_BASEINFO (PRIPID, REGNO, ENTNAME, ENTTYPE, INDUSTRYPHY, INDUSTRYCO, NAME, CERTYPE, CERNO, DOM, DOMDISTRICT, POSTALCODE, TEL, ABUITEM, CBUITEM, REGCAP, ESTDATE, REGORG, REGSTATE)
         VALUES (1, '150302000123452', '乌海市（海勃湾）宏达商贸有限公司', '1100', 'F', '5211', '王镕', '1', '11010519491231002x', '内蒙古乌海市海勃湾区新华街１号', '150302', '016000', '0473-3921234', '', '日用百货、五金交电', 50.5, '2006-03-01', '150302', '1'),
                (2, '150303000000019', '乌海市海南区喆誉煤焦有限责任公司', '9999', 'B', '0610', '李堃', '1', '150303197001011234', '乌海市海南区拉僧庙镇', '150303', NULL, NULL, '煤炭开采', '煤炭', NULL, '2005-07-15', '150303', '1')",
    )
    .await;
    aic.exec("INSERT INTO E_NJ_BASEINFO (NJ_ID, PRIPID, NJND, NJJG, NJRQ) VALUES (10, 1, '2006', '1', '2007-03-01'), (11, 2, '2006', '3', NULL)").await;
    aic.exec("INSERT INTO E_ALTER_RECODER (ALT_ID, PRIPID, ALTITEM, ALTBE, ALTAF, ALTDATE) VALUES (100, 1, '住所', '旧址', '内蒙古乌海市海勃湾区新华街１号', '2006-05-20')").await;
    env.wait_count("select count(*) from exchange.aic_annual_inspection", 2, T)
        .await;
    env.wait_count("select count(*) from exchange.aic_amendment", 1, T)
        .await;
    // The rows may straddle the first snapshot and the stream after it: wait for all.
    env.wait_count("select count(*) from exchange.aic_establishment", 2, T)
        .await;

    let pg = env.pg().await;
    let r = pg
        .query_one(
            "select reg_no, name, legal_rep, legal_rep_id_no, address, postcode, phone, licensed_scope, general_scope,
                    industry_code, enterprise_type, established_on, registration_authority, division, bureau, deleted_at is null
             from exchange.aic_establishment where source = 'aic_city' and source_key = '1'",
            &[],
        )
        .await
        .expect("row 1");
    assert_eq!(r.get::<_, String>(0), "150302000123452");
    assert_eq!(
        r.get::<_, String>(1),
        "乌海市（海勃湾）宏达商贸有限公司",
        "names keep their width: normalization is the comparison's job"
    );
    assert_eq!(r.get::<_, String>(2), "王镕");
    assert_eq!(
        r.get::<_, String>(3),
        "11010519491231002X",
        "identifier transform upper-cases"
    );
    assert_eq!(r.get::<_, String>(4), "内蒙古乌海市海勃湾区新华街１号");
    assert_eq!(r.get::<_, Option<String>>(5).as_deref(), Some("016000"));
    assert_eq!(
        r.get::<_, Option<String>>(6).as_deref(),
        Some("0473-3921234")
    );
    assert_eq!(r.get::<_, Option<String>>(7), None, "null_if blank");
    assert_eq!(r.get::<_, String>(8), "日用百货、五金交电");
    assert_eq!(r.get::<_, String>(9), "F5211", "source-side expression");
    assert_eq!(r.get::<_, String>(10), "有限责任公司", "code lookup");
    assert_eq!(
        r.get::<_, NaiveDate>(11),
        NaiveDate::from_ymd_opt(2006, 3, 1).expect("d")
    );
    assert_eq!(r.get::<_, String>(12), "乌海市工商行政管理局海勃湾分局");
    assert_eq!(
        r.get::<_, String>(13),
        "150302",
        "division from DOMDISTRICT"
    );
    assert_eq!(r.get::<_, String>(14), "aic");
    assert!(r.get::<_, bool>(15));
    let unknown_type: String = pg
        .query_one(
            "select enterprise_type from exchange.aic_establishment where source_key = '2'",
            &[],
        )
        .await
        .expect("row 2")
        .get(0);
    assert_eq!(unknown_type, "9999", "missing: keep passes unknown codes");
    let (year, result): (i16, String) = pg
        .query_one("select inspection_year, result from exchange.aic_annual_inspection where source_key = '11'", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .expect("inspection");
    assert_eq!((year, result.as_str()), (2006, "不合格"));
    let amend: (String, String, String) = pg
        .query_one(
            "select reg_no, name, new_value from exchange.aic_amendment where source_key = '100'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .expect("amendment");
    assert_eq!(
        amend.0, "150302000123452",
        "reg_no read from E_BASEINFO by expression"
    );
    assert_eq!(amend.1, "乌海市（海勃湾）宏达商贸有限公司");

    // Updates: a rename; a revocation appears in aic_revocation, then leaves it.
    aic.exec("UPDATE E_BASEINFO SET ENTNAME = '乌海市宏达商贸有限公司' WHERE PRIPID = 1")
        .await;
    aic.exec("UPDATE E_BASEINFO SET REGSTATE = '2', REVDATE = '2006-10-01', REVREA = '未按规定年检' WHERE PRIPID = 2").await;
    env.wait_count(
        "select count(*) from exchange.aic_revocation where deleted_at is null",
        1,
        T,
    )
    .await;
    env.wait_count(
        "select count(*) from exchange.aic_establishment where name = '乌海市宏达商贸有限公司'",
        1,
        T,
    )
    .await;
    let revoked_on: NaiveDate = pg
        .query_one(
            "select revoked_on from exchange.aic_revocation where source_key = '2'",
            &[],
        )
        .await
        .expect("revocation")
        .get(0);
    assert_eq!(revoked_on, NaiveDate::from_ymd_opt(2006, 10, 1).expect("d"));
    aic.exec("UPDATE E_BASEINFO SET REGSTATE = '1', REVDATE = NULL WHERE PRIPID = 2")
        .await;
    env.wait_count(
        "select count(*) from exchange.aic_revocation where deleted_at is not null",
        1,
        T,
    )
    .await;

    // A delete is a tombstone that keeps the last values.
    aic.exec("DELETE FROM E_NJ_BASEINFO WHERE NJ_ID = 10").await;
    env.wait_count(
        "select count(*) from exchange.aic_annual_inspection where deleted_at is not null",
        1,
        T,
    )
    .await;
    let kept: String = pg
        .query_one(
            "select result from exchange.aic_annual_inspection where source_key = '10'",
            &[],
        )
        .await
        .expect("tombstone")
        .get(0);
    assert_eq!(kept, "合格");
    // A key change is a delete of the old key and an insert of the new one.
    aic.exec("UPDATE E_ALTER_RECODER SET ALT_ID = 101 WHERE ALT_ID = 100")
        .await;
    env.wait_count("select count(*) from exchange.aic_amendment where source_key = '101' and deleted_at is null", 1, T).await;
    env.wait_count("select count(*) from exchange.aic_amendment where source_key = '100' and deleted_at is not null", 1, T).await;

    env.wait_verified(T).await;
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].state, "streaming");
    assert!(status[0].rows_applied >= 8, "{status:?}");
    assert!(
        status[0].lag_seconds.is_some_and(|l| l < 30.0),
        "{status:?}"
    );
    assert!(status[0].last_change_at.is_some());
    assert_eq!(run.stop().await, Vec::<(String, String)>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_capture_decodes_gbk_in_latin1_and_finds_deletes_by_key_comparison() {
    let env = Env::new(&[&LTAX_TIMESTAMP]).await;
    let ltax = env.db("ltax_hbw");
    ltax.exec(&format!(
        "INSERT INTO DJ_JL_JBSJ (JSJDM, SWDJZH, NSRMC, ZZJGDM, YYZZH, FDDBR, ZCDZ, KYDJRQ, SWJGZZJGDM, NSRZT) VALUES
         ('L0001', '150302769538264', {}, '76953826-4', '150302000123452', {}, {}, '20060320', '21503020000', '01'),
         ('L0002', '150303716105852', {}, '71610585-2', '150303000000019', {}, {}, '00000000', '21503030000', '01')",
        gbk("乌海市（海勃湾）宏达商贸有限公司"),
        gbk("王镕"),
        gbk("内蒙古乌海市海勃湾区新华街1号"),
        gbk("乌海市海南区犇腾运输有限公司"),
        gbk("杨犇"),
        gbk("乌海市海南区公乌素镇")
    ))
    .await;
    let run = env.start();
    env.wait_count("select count(*) from exchange.tax_registration", 2, T)
        .await;
    let pg = env.pg().await;
    let r = pg
        .query_one(
            "select org_code, reg_no, taxpayer_id, taxpayer_name, legal_rep, address, registered_on, tax_authority, bureau,
                    ebis.raw_row(raw_layout, raw_row)->>'NSRMC'
             from exchange.tax_registration where source_key = 'L0001'",
            &[],
        )
        .await
        .expect("row");
    assert_eq!(r.get::<_, String>(0), "769538264");
    assert_eq!(r.get::<_, String>(1), "150302000123452");
    assert_eq!(r.get::<_, String>(2), "150302769538264");
    assert_eq!(r.get::<_, String>(3), "乌海市（海勃湾）宏达商贸有限公司");
    assert_eq!(r.get::<_, String>(4), "王镕");
    assert_eq!(r.get::<_, String>(5), "内蒙古乌海市海勃湾区新华街1号");
    assert_eq!(
        r.get::<_, NaiveDate>(6),
        NaiveDate::from_ymd_opt(2006, 3, 20).expect("d")
    );
    assert_eq!(r.get::<_, String>(7), "乌海市海勃湾区地方税务局");
    assert_eq!(r.get::<_, String>(8), "ltax");
    assert!(
        r.get::<_, String>(9).starts_with("\\xceda"),
        "raw row keeps the GBK bytes"
    );
    // The raw row is the source row as read: the table's columns, in the table's order,
    // their names kept once for the table's rows.
    let mut c = ltax.conn().await;
    let columns: Vec<String> = c
        .query(
            "SELECT column_name FROM information_schema.columns
             WHERE table_schema = DATABASE() AND table_name = 'DJ_JL_JBSJ' ORDER BY ordinal_position",
        )
        .await
        .expect("columns");
    let keys =
        "select json_object_keys(ebis.raw_row(raw_layout, raw_row)) from exchange.tax_registration
                where source_key = 'L0001'";
    assert_eq!(texts(&pg, keys).await, columns);
    let lists = "select distinct l.columns::text from exchange.tax_registration t
                 join ebis.raw_layout l on l.layout = t.raw_layout";
    assert_eq!(
        texts(&pg, lists).await,
        [format!("{{{}}}", columns.join(","))],
        "one list for the table's rows"
    );
    let values: i32 = pg
        .query_one(
            "select json_array_length(raw_row) from exchange.tax_registration where source_key = 'L0001'",
            &[],
        )
        .await
        .expect("raw row")
        .get(0);
    assert_eq!(values, i32::try_from(columns.len()).expect("columns"));
    let zero_date: Option<NaiveDate> = pg
        .query_one(
            "select registered_on from exchange.tax_registration where source_key = 'L0002'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(zero_date, None, "00000000 is no date");

    ltax.exec(&format!(
        "UPDATE DJ_JL_JBSJ SET NSRMC = {} WHERE JSJDM = 'L0002'",
        gbk("乌海市海南区犇腾物流有限公司")
    ))
    .await;
    env.wait_count("select count(*) from exchange.tax_registration where taxpayer_name = '乌海市海南区犇腾物流有限公司'", 1, T).await;
    ltax.exec("DELETE FROM DJ_JL_JBSJ WHERE JSJDM = 'L0001'")
        .await;
    env.wait_count(
        "select count(*) from exchange.tax_registration where deleted_at is not null",
        1,
        T,
    )
    .await;
    ltax.exec(&format!(
        "INSERT INTO DJ_JL_JBSJ (JSJDM, SWDJZH, NSRMC, KYDJRQ, NSRZT) VALUES ('L0001', '150302769538264', {}, '20070101', '01')",
        gbk("乌海市宏达商贸有限公司")
    ))
    .await;
    env.wait_count(
        "select count(*) from exchange.tax_registration where deleted_at is null",
        2,
        T,
    )
    .await;
    env.wait_verified(T).await;
    assert_eq!(run.stop().await, Vec::<(String, String)>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_goes_to_quarantine_and_the_rest_of_the_batch_applies() {
    let env = Env::new(&[&LTAX_TIMESTAMP]).await;
    let ltax = env.db("ltax_hbw");
    let run = env.start();
    // One transaction, three rows: a bad date, invalid GBK bytes, and a good row.
    ltax.exec(&format!(
        "INSERT INTO ZS_FZCHGL (FZXH, JSJDM, SWDJZH, NSRMC, RDRQ, JCRQ) VALUES
         (1, 'L1', '150302769538264', {}, '20061301', ''),
         (2, 'L2', '150302716105852', X'CEDAFFFF', '20061101', ''),
         (3, 'L3', '150304709876543', {}, '20061115', '20070110')",
        gbk("乌海市宏达商贸有限公司"),
        gbk("乌海市乌达区金泰化工有限公司")
    ))
    .await;
    env.wait_count(
        "select count(*) from ebis.quarantine where resolved_at is null",
        2,
        T,
    )
    .await;
    env.wait_count("select count(*) from exchange.tax_abnormal", 1, T)
        .await;
    let pg = env.pg().await;
    let rows = pg
        .query(
            "select source_table, record_kind, source_key, field, reason, raw_value from ebis.quarantine order by source_key",
            &[],
        )
        .await
        .expect("quarantine");
    let q: Vec<(String, String, String, String, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(
        q,
        [
            (
                "ZS_FZCHGL".into(),
                "tax_abnormal".into(),
                "1".into(),
                "identified_on".into(),
                "not a date in format YYYYMMDD".into(),
                Some("20061301".into())
            ),
            (
                "ZS_FZCHGL".into(),
                "tax_abnormal".into(),
                "2".into(),
                "taxpayer_name".into(),
                "invalid GBK/GB18030 byte sequence at byte 2".into(),
                Some("\\xcedaffff".into())
            ),
        ]
    );
    // Each keeps its source row whole, as an object of the source's columns.
    let raw = "select concat_ws(' ', raw_row->>'FZXH', raw_row->>'JSJDM', raw_row->>'RDRQ')
               from ebis.quarantine order by source_key";
    assert_eq!(texts(&pg, raw).await, ["1 L1 20061301", "2 L2 20061101"]);
    let lifted: NaiveDate = pg
        .query_one(
            "select lifted_on from exchange.tax_abnormal where source_key = '3'",
            &[],
        )
        .await
        .expect("good row")
        .get(0);
    assert_eq!(lifted, NaiveDate::from_ymd_opt(2007, 1, 10).expect("d"));
    let status = env.wh.status().await.expect("status");
    assert_eq!(status[0].quarantined_open, 2);

    // The bureau fixes the date: the row applies and its quarantine entry is resolved.
    ltax.exec("UPDATE ZS_FZCHGL SET RDRQ = '20061201' WHERE FZXH = 1")
        .await;
    env.wait_count("select count(*) from exchange.tax_abnormal", 2, T)
        .await;
    env.wait_count(
        "select count(*) from ebis.quarantine where resolved_at is null",
        1,
        T,
    )
    .await;
    env.wait_verified(T).await;
    assert_eq!(run.stop().await, Vec::<(String, String)>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_and_restarting_mid_stream_loses_and_doubles_nothing() {
    let env = Env::new(&[&AIC_CHANGELOG, &LTAX_TIMESTAMP]).await;
    let aic = env.db("aic_city");
    let ltax = env.db("ltax_hbw");
    let mut rng = Rng::new(7);
    let mut run = env.start();
    for round in 0..6u64 {
        for i in 0..40u64 {
            let id = round * 1000 + i;
            aic.exec(&aic_insert(id, &mut rng)).await;
            if i % 3 == 0 {
                aic.exec(&format!(
                    "UPDATE E_BASEINFO SET TEL = '0473-{id}' WHERE PRIPID = {}",
                    id / 2
                ))
                .await;
            }
            if i % 7 == 0 {
                aic.exec(&format!(
                    "DELETE FROM E_BASEINFO WHERE PRIPID = {}",
                    id.saturating_sub(5)
                ))
                .await;
            }
            ltax.exec(&format!(
                "INSERT INTO WF_WZJYHU (WZXH, QYMC, JYDZ, FXRQ) VALUES ({id}, {}, {}, '20061010')",
                gbk(&crate::support::harness::company_name(&mut rng)),
                gbk("乌海市海勃湾区滨河路")
            ))
            .await;
        }
        // Stop while changes are still arriving, then start again.
        assert!(run.stop().await.is_empty());
        run = env.start();
    }
    let reports = env.wait_verified(Duration::from_secs(60)).await;
    let est = reports
        .iter()
        .find(|r| r.kind == "aic_establishment")
        .expect("establishment");
    assert_eq!(est.source_rows, aic.count("E_BASEINFO").await);
    let unlicensed = reports
        .iter()
        .find(|r| r.kind == "tax_unlicensed")
        .expect("unlicensed");
    assert_eq!(unlicensed.warehouse_rows, 240);
    assert!(run.stop().await.is_empty());
}

/// A batch that never reached the warehouse (the apply failed) is read again from the
/// stored position: the timestamp connector's memory of rows it returned in the overlap
/// window must not hide them the second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_changes_reread_from_a_stored_position_return_the_rows_again() {
    let env = Env::new(&[&LTAX_TIMESTAMP]).await;
    let config = env.config();
    let cfg = &config.sources[0];
    let mappings =
        ebis::mapping::MappingSet::load_dir(&cfg.mappings_dir, Some(cfg.bureau)).expect("maps");
    let mut source = ebis::pipeline::AnySource::open(cfg, ebis::pipeline::plans(cfg, &mappings))
        .expect("source");
    source.check().await.expect("check");
    let stored = source.head().await.expect("head");
    let ltax = env.db("ltax_hbw");
    for id in 0..5 {
        ltax.exec(&format!(
            "INSERT INTO WF_WZJYHU (WZXH, QYMC, JYDZ, FXRQ) VALUES ({id}, {}, NULL, '20061010')",
            gbk("乌海市海勃湾区无照商店")
        ))
        .await;
    }
    let keys = |b: &ebis_source::Batch| {
        let mut k: Vec<String> = b
            .changes
            .iter()
            .map(|c| ebis_source::key_text(&c.key))
            .collect();
        k.sort();
        k
    };
    let first = source.changes(&stored, 1000).await.expect("changes");
    assert_eq!(keys(&first).len(), 5, "{:?}", keys(&first));
    // The apply of `first` failed: the pipeline resumes from the stored position.
    let again = source.changes(&stored, 1000).await.expect("changes");
    assert_eq!(keys(&again), keys(&first));
    // Continuing from the position just returned needs nothing twice.
    let next = source
        .changes(&again.position, 1000)
        .await
        .expect("changes");
    assert!(next.changes.is_empty(), "{:?}", keys(&next));
    source.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catch_up_batch_of_thousands_of_keys_is_fetched_over_several_connections_and_lands_whole()
{
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    // Batches large enough that their rows are fetched over several connections.
    let path = env.config_path();
    let yaml = std::fs::read_to_string(&path).expect("config");
    std::fs::write(&path, yaml.replace("batch_size: 500", "batch_size: 5000")).expect("config");
    let aic = env.db("aic_city");
    let mut rng = Rng::new(29);
    for id in 1..=1500 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    let run = env.start();
    env.wait_verified(T).await;
    assert!(run.stop().await.is_empty());
    // While ebis is stopped: every row renamed, as many registered, a few deleted.
    aic.exec("UPDATE E_BASEINFO SET ENTNAME = CONCAT(ENTNAME, '（改）')")
        .await;
    for id in 1501..=3000 {
        aic.exec(&aic_insert(id, &mut rng)).await;
    }
    aic.exec("DELETE FROM E_BASEINFO WHERE PRIPID BETWEEN 100 AND 109")
        .await;
    let run = env.start();
    env.wait_verified(T).await;
    env.wait_count(
        "select count(*) from exchange.aic_establishment where name like '%（改）' and deleted_at is null",
        1490,
        T,
    )
    .await;
    assert!(run.stop().await.is_empty());
}
