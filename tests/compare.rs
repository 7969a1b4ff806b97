//! The consistency comparison end to end: bureau source tables → pipeline → enterprise
//! base → rule views → findings. Never by writing into the warehouse directly.

use crate::support::city::City;
use crate::support::pg::{PgDb, base_rows, texts};
use chrono::Days;
use ebis::demo::people::widened;
use ebis::demo::world::{AicState, Options, World};
use ebis::indicators::Bureau;
use ebis::rules::Rule;
use std::collections::{BTreeMap, BTreeSet};

fn quiet(seed: u64) -> World {
    World::empty(Options {
        discrepancy_rate: 0.0,
        noise_rate: 0.0,
        ..Options::new(0, seed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rule_reports_its_positive_and_none_of_the_negatives() {
    let mut w = quiet(42);
    let as_of = w.options.as_of;
    let old = as_of - Days::new(400);
    // (enterprise index, rules it must have, what it is)
    let mut expect: Vec<(usize, BTreeSet<&'static str>, String)> = Vec::new();

    for rule in Rule::ALL {
        if rule == Rule::UnlicensedBusiness {
            continue;
        }
        let district = if rule == Rule::NtaxLtaxMismatch {
            "150302"
        } else {
            "150303"
        };
        let mut done = false;
        for _ in 0..40 {
            let i = w.establish_in(old, district);
            if w.inject(i, rule) {
                expect.push((
                    i,
                    BTreeSet::from([rule.name()]),
                    format!("positive {}", rule.name()),
                ));
                done = true;
                break;
            }
            expect.push((i, BTreeSet::new(), "a clean enterprise".into()));
        }
        assert!(done, "could not build a positive for {}", rule.name());
    }
    // An invalid ID-card number at AIC (for the masking checks below).
    let bad_id = w.establish_in(old, "150303");
    {
        let e = &mut w.enterprises[bad_id];
        let last = if e.aic_rep_id.ends_with('1') {
            '2'
        } else {
            '1'
        };
        e.aic_rep_id = format!("{}{last}", &e.aic_rep_id[..17]);
        e.injected.push(Rule::InvalidIdentifier);
    }
    expect.push((
        bad_id,
        BTreeSet::from(["invalid_identifier"]),
        "bad AIC ID-card number".into(),
    ));

    // Negatives: legitimate states and harmless noise.
    let negative = |w: &mut World, what: &str, district: &str, f: &dyn Fn(&mut World, usize)| {
        let i = w.establish_in(old, district);
        f(w, i);
        (i, BTreeSet::new(), what.to_owned())
    };
    let recent = w.establish_in(as_of - Days::new(10), "150302");
    {
        let e = &mut w.enterprises[recent];
        e.qts = None;
        e.ntax = None;
        e.ltax = None;
    }
    expect.push((
        recent,
        BTreeSet::new(),
        "established 10 days ago, not yet at QTS or tax".into(),
    ));
    expect.push(negative(
        &mut w,
        "150303: local tax not connected there",
        "150303",
        &|_, _| {},
    ));
    expect.push(negative(
        &mut w,
        "150302: at both tax bureaus",
        "150302",
        &|_, _| {},
    ));
    expect.push(negative(
        &mut w,
        "AIC closed 5 days ago, tax still active (grace)",
        "150303",
        &|w, i| {
            w.enterprises[i].aic = AicState::Deregistered(as_of - Days::new(5), "决议解散".into());
        },
    ));
    expect.push(negative(
        &mut w,
        "tax deregistered 10 days ago (grace)",
        "150303",
        &|w, i| {
            if let Some(t) = w.enterprises[i].ntax.as_mut() {
                t.dereg = Some((9_999_001, as_of - Days::new(10), "迁出".into()));
            }
        },
    ));
    expect.push(negative(
        &mut w,
        "width, bracket and space noise",
        "150302",
        &|w, i| {
            let e = &mut w.enterprises[i];
            e.name = format!("乌海市（海勃湾）{}", e.name.trim_start_matches("乌海市"));
            let (name, address, rep) = (e.name.clone(), e.address.clone(), e.rep.name.clone());
            if let Some(t) = e.ntax.as_mut() {
                t.name = widened(&name.replace('（', "(").replace('）', ")"));
                t.address = format!("  {}\u{3000}", widened(&address));
                t.rep = format!("{} ", rep);
            }
            if let Some(t) = e.ltax.as_mut() {
                t.name = name.replace("有限", "有限 ");
            }
            if let Some(q) = e.qts.as_mut() {
                q.name = name.replace('（', "(").replace('）', ")");
            }
        },
    ));
    expect.push(negative(
        &mut w,
        "a rename every bureau followed",
        "150302",
        &|w, i| w.rename_followed(i),
    ));
    expect.push(negative(
        &mut w,
        "a move every bureau followed",
        "150302",
        &|w, i| w.move_followed(i),
    ));
    expect.push(negative(
        &mut w,
        "a proper deregistration",
        "150303",
        &|w, i| w.deregister(i),
    ));
    expect.push(negative(
        &mut w,
        "a proper revocation",
        "150302",
        &|w, i| w.revoke(i),
    ));
    expect.push(negative(
        &mut w,
        "an abnormal episode that was lifted",
        "150303",
        &|w, i| w.abnormal_lifted(i),
    ));
    expect.push(negative(
        &mut w,
        "a revocation request 20 days old",
        "150303",
        &|w, i| {
            if let Some(t) = w.enterprises[i].ntax.as_mut() {
                t.requests
                    .push((9_999_002, as_of - Days::new(20), "逾期未申报".into()));
            }
        },
    ));
    let parent = w.establish_in(old, "150302");
    // The report below names it: that report's finding carries its registration number.
    expect.push((
        parent,
        BTreeSet::from(["unlicensed_business"]),
        "a parent company named in a report".into(),
    ));
    expect.push(negative(
        &mut w,
        "a branch named like its parent",
        "150303",
        &|w, i| {
            let name = format!("{}海南分公司", w.enterprises[parent].name);
            let e = &mut w.enterprises[i];
            e.name = name.clone();
            e.enttype = "2100";
            if let Some(q) = e.qts.as_mut() {
                q.name = name.clone();
            }
            if let Some(t) = e.ntax.as_mut() {
                t.name = name.clone();
            }
        },
    ));
    // Unlicensed-business reports: one names a registered enterprise (width noise), one not.
    let named = w.enterprises[parent].name.clone();
    let named_address = w.enterprises[parent].address.clone();
    w.report_named(Bureau::Ntax, &widened(&named), &named_address);
    w.report_named(
        Bureau::Ltax,
        "乌海市海勃湾区老王烧烤店",
        "内蒙古乌海市海勃湾区滨河路8号",
    );

    let reg_of: Vec<String> = expect
        .iter()
        .map(|(i, _, _)| w.enterprises[*i].reg_no.clone())
        .collect();
    let mut city = City::new(w).await;
    city.start(&[]);
    city.wait_caught_up().await;
    let found = city.compare().await;

    let mut by_reg: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (rule, reg) in &found {
        by_reg
            .entry(reg.as_str())
            .or_default()
            .insert(rule.as_str());
    }
    let mut failures = Vec::new();
    for ((_, want, what), reg) in expect.iter().zip(&reg_of) {
        let got = by_reg.get(reg.as_str()).cloned().unwrap_or_default();
        if &got != want {
            failures.push(format!("{what} ({reg}): want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for rule in Rule::ALL {
        assert!(
            found.iter().any(|(r, _)| r == rule.name()),
            "{} found nothing",
            rule.name()
        );
    }
    in_parallel_workers_a_full_run_finds_the_same(
        &city,
        &city.world.enterprises[bad_id].aic_rep_id,
    )
    .await;
    same_base_by_every_path(&city).await;
    // (A rebuilt base counts as every enterprise changed: one run takes that in.)
    assert_eq!(
        city.compare().await,
        found,
        "the rebuilt base finds the same"
    );

    // Unlicensed reports: both are findings; only the first matches the registry.
    let pg = city.pg.client().await;
    let reports: Vec<(bool, String)> = pg
        .query(
            "select (detail->>'matched')::bool, detail->>'reported_by' from compare.finding
             where rule = 'unlicensed_business' order by 1",
            &[],
        )
        .await
        .expect("reports")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        reports,
        [(false, "ltax".to_owned()), (true, "ntax".to_owned())]
    );

    // Fixing the data at the source resolves the finding on the next run.
    let (name_case, _, _) = expect
        .iter()
        .find(|(_, w, _)| w.contains("name_mismatch"))
        .expect("name case");
    let name_reg = city.world.enterprises[*name_case].reg_no.clone();
    city.change(*name_case, |w, i| {
        let name = w.enterprises[i].name.clone();
        let e = &mut w.enterprises[i];
        for t in [e.ntax.as_mut(), e.ltax.as_mut()].into_iter().flatten() {
            t.name = name.clone();
        }
        if let Some(q) = e.qts.as_mut() {
            q.name = name.clone();
        }
    })
    .await;
    city.wait_caught_up().await;
    let after = city.compare().await;
    assert!(
        !after.contains(&("name_mismatch".to_owned(), name_reg.clone())),
        "still open"
    );
    let resolved: Option<chrono::DateTime<chrono::Utc>> = pg
        .query_one(
            "select resolved_at from compare.finding where rule = 'name_mismatch' and reg_no = $1",
            &[&name_reg],
        )
        .await
        .expect("finding kept with its history")
        .get(0);
    assert!(resolved.is_some());
    assert_eq!(after.len(), found.len() - 1, "nothing else changed");

    // That run looked again only at what changed, and found what a full run finds.
    let (kind, evaluated): (String, Option<i64>) = pg
        .query_one(
            "select kind, evaluated from compare.run order by id desc limit 1",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .expect("last run");
    let enterprises: i64 = pg
        .query_one("select count(*) from core.enterprise", &[])
        .await
        .expect("base")
        .get(0);
    assert_eq!(kind, "incremental");
    let evaluated = evaluated.expect("incremental runs count what they looked at");
    assert!(
        (1..enterprises / 4).contains(&evaluated),
        "{evaluated} of {enterprises} enterprises re-evaluated"
    );
    let full = city.wh.compare_full().await.expect("full run");
    assert_eq!(full.kind, "full");
    let new: i64 = full.rules.iter().map(|r| r.new).sum();
    let gone: i64 = full.rules.iter().map(|r| r.resolved).sum();
    assert_eq!((new, gone), (0, 0), "a full run disagrees: {full:?}");
    // A new as-of date (a new day's due dates) makes the next run full.
    city.wh
        .set_as_of(Some(as_of + Days::new(1)))
        .await
        .expect("as of");
    assert_eq!(city.wh.compare().await.expect("run").kind, "full");

    // Work lists: the AIC workbook, read back.
    let out = crate::support::TempDir::new("ebis_export");
    let files = ebis::compare::export_worklists(
        &city.wh,
        out.path(),
        ebis::compare::ExportOptions {
            format: ebis::compare::ExportFormat::Xlsx,
            bureau: Some(Bureau::Aic),
            division: None,
            zone: Default::default(),
        },
    )
    .await
    .expect("export");
    assert_eq!(files.len(), 1);
    let (path, rows) = &files[0];
    assert!(
        path.to_string_lossy().ends_with("aic_工商局.xlsx"),
        "{}",
        path.display()
    );
    let aic_open: i64 = pg
        .query_one(
            "select count(*) from compare.worklist where bureau = 'aic'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(*rows as i64, aic_open);
    use calamine::{DataType, Reader, Xlsx, open_workbook};
    let mut book: Xlsx<_> = open_workbook(path).expect("open xlsx");
    let sheets = book.sheet_names().to_vec();
    assert_eq!(sheets[0], "汇总");
    assert!(
        sheets.iter().any(|s| s == "税务已注销、工商仍在营"),
        "{sheets:?}"
    );
    let sheet = book
        .worksheet_range("税务已注销、工商仍在营")
        .expect("sheet");
    // (Rows 0–2 name the rule and say what to check; analyst.rs reads every cell.)
    let header: Vec<String> = sheet
        .rows()
        .nth(3)
        .expect("header")
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(header[..4], ["编号", "组织机构代码", "注册号", "企业名称"]);
    let data: Vec<Vec<String>> = sheet
        .rows()
        .skip(4)
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    let (closed_case, _, _) = expect
        .iter()
        .find(|(_, w, _)| w.contains("tax_closed_aic_active"))
        .expect("case");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0][2], city.world.enterprises[*closed_case].reg_no);
    assert_eq!(data[0][3], city.world.enterprises[*closed_case].name);
    let summary = book.worksheet_range("汇总").expect("summary");
    let total: f64 = summary
        .rows()
        .find(|r| r.iter().any(|c| *c == "合计"))
        .and_then(|r| r.get(3).and_then(|c| c.get_float()))
        .expect("total row");
    assert_eq!(total as i64, aic_open);

    // The same as CSV, for local tax only (a UTF-8 BOM, Chinese headers, one line a finding).
    let csv = ebis::compare::export_worklists(
        &city.wh,
        out.path(),
        ebis::compare::ExportOptions {
            format: ebis::compare::ExportFormat::Csv,
            bureau: Some(Bureau::Ltax),
            division: None,
            zone: Default::default(),
        },
    )
    .await
    .expect("csv export");
    let text = std::fs::read_to_string(&csv[0].0).expect("csv");
    assert!(
        text.starts_with("\u{feff}规则,编号,组织机构代码,注册号,企业名称"),
        "{text}"
    );
    assert_eq!(text.lines().count(), csv[0].1 + 1);
    assert!(csv[0].1 > 0, "local tax has findings to act on");

    // An analyst reads the views but never a whole ID-card number.
    let login = crate::support::unique_name("ebis_t_analyst");
    // A login with a password, so it works whatever authentication the server asks.
    pg.batch_execute(&format!(
        "create role {login} login password '{login}'; grant ebis_analyst to {login}"
    ))
    .await
    .expect("role");
    let (scheme, rest) = city.pg.url.split_once("://").expect("url");
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let analyst = crate::support::pg::connect(&ebis::config::ConnectionConfig {
        url: format!("{scheme}://{login}:{login}@{host}"),
        password_env: None,
        password_file: None,
        tls: Default::default(),
    })
    .await;
    let full_id = city.world.enterprises[bad_id].aic_rep_id.clone();
    let shown: String = analyst
        .query_one(
            "select detail->'invalid'->0->>'value' from compare.invalid_identifier where reg_no = $1",
            &[&city.world.enterprises[bad_id].reg_no],
        )
        .await
        .expect("analyst reads compare views")
        .get(0);
    assert_eq!(
        shown,
        format!("{}********{}", &full_id[..6], &full_id[14..])
    );
    let base: String = analyst
        .query_one(
            "select legal_rep_id_no from core.enterprise_view where reg_no = $1",
            &[&city.world.enterprises[bad_id].reg_no],
        )
        .await
        .expect("enterprise view")
        .get(0);
    assert!(base.contains("********") && base != full_id);
    let denied = analyst
        .query(
            "select legal_rep_id_no from exchange.aic_establishment limit 1",
            &[],
        )
        .await;
    assert!(
        denied.is_err(),
        "analysts may not read ID-card numbers from the exchange tables"
    );
    let raw = analyst
        .query("select raw_row from exchange.tax_registration limit 1", &[])
        .await;
    assert!(raw.is_err(), "nor raw source rows");
    let names: i64 = analyst
        .query_one(
            "select count(*) from exchange.aic_establishment where name is not null",
            &[],
        )
        .await
        .expect("other columns are readable")
        .get(0);
    assert!(names > 0);
    // The owner sees the number whole.
    let owner: String = pg
        .query_one(
            "select detail->'invalid'->0->>'value' from compare.invalid_identifier where reg_no = $1",
            &[&city.world.enterprises[bad_id].reg_no],
        )
        .await
        .expect("owner")
        .get(0);
    assert_eq!(owner, full_id);
    drop(analyst);
    let _ = pg
        .batch_execute(&format!("drop owned by {login}; drop role {login}"))
        .await;
    city.drop_sources().await;
}

/// A city of three clean enterprises registered 400 days before the as-of date, captured
/// and compared (nothing found); and that date.
async fn three_clean_enterprises(seed: u64) -> (City, chrono::NaiveDate) {
    let mut w = quiet(seed);
    let old = w.options.as_of - Days::new(400);
    for _ in 0..3 {
        w.establish_in(old, "150303");
    }
    let mut city = City::new(w).await;
    city.start(&[]);
    city.wait_caught_up().await;
    assert!(city.compare().await.is_empty());
    (city, old)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_source_makes_no_finding_until_it_has_caught_up() {
    let (mut city, old) = three_clean_enterprises(7).await;

    // National tax falls behind; meanwhile an old enterprise is registered at AIC and,
    // correctly, at national tax too — but that registration is still in flight.
    city.stop("ntax_city").await;
    let i = city.world.establish_in(old, "150303");
    let reg = city.world.enterprises[i].reg_no.clone();
    assert!(city.world.enterprises[i].ntax.is_some());
    let rows = ebis::demo::native::enterprise_rows(&city.world.enterprises[i]);
    city.write(&rows, &[]).await;
    city.wait_caught_up().await;
    let pg = city.pg.client().await;
    let ntax_seen: Option<String> = pg
        .query_one(
            "select ntax_status from core.enterprise where reg_no = $1",
            &[&reg],
        )
        .await
        .expect("the base has the AIC side")
        .get(0);
    assert_eq!(
        ntax_seen, None,
        "the warehouse has not seen the tax registration yet"
    );
    let found = city.compare().await;
    assert!(
        !found.contains(&("registered_not_tax_registered".to_owned(), reg.clone())),
        "a registration in flight must not be reported missing: {found:?}"
    );
    // Once national tax catches up there is nothing to report either.
    city.start(&["ntax_city"]);
    city.wait_caught_up().await;
    assert!(city.compare().await.is_empty());
    let ntax_now: Option<String> = pg
        .query_one(
            "select ntax_status from core.enterprise where reg_no = $1",
            &[&reg],
        )
        .await
        .expect("base")
        .get(0);
    assert_eq!(ntax_now.as_deref(), Some("active"));
    city.drop_sources().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_back_finding_is_reported_once_its_bureau_catches_up_without_changing_again() {
    let (mut city, old) = three_clean_enterprises(11).await;

    // National tax is stopped when an enterprise that never registered for tax appears
    // at AIC: the finding rests on national tax, which is not complete up to it.
    city.stop("ntax_city").await;
    let mut found = None;
    for _ in 0..40 {
        let i = city.world.establish_in(old, "150303");
        if city.world.inject(i, Rule::RegisteredNotTaxRegistered) {
            found = Some(i);
            break;
        }
    }
    let i = found.expect("an enterprise without tax registrations");
    let reg = city.world.enterprises[i].reg_no.clone();
    let rows = ebis::demo::native::enterprise_rows(&city.world.enterprises[i]);
    city.write(&rows, &[]).await;
    city.wait_caught_up().await;
    let finding = ("registered_not_tax_registered".to_owned(), reg.clone());
    assert!(!city.compare().await.contains(&finding), "held back");
    let pg = city.pg.client().await;
    let held: i64 = pg
        .query_one(
            "select count(*) from compare.held h join core.enterprise e using (enterprise_key)
             where h.rule = 'registered_not_tax_registered' and e.reg_no = $1",
            &[&reg],
        )
        .await
        .expect("held")
        .get(0);
    assert_eq!(held, 1, "kept for the next run");

    // National tax catches up with nothing new for that enterprise: the next run, an
    // incremental one, reports it.
    city.start(&["ntax_city"]);
    city.wait_caught_up().await;
    // Wait until national tax is complete past the AIC record.
    let start = std::time::Instant::now();
    loop {
        let found = city.compare().await;
        let kind: String = pg
            .query_one("select kind from compare.run order by id desc limit 1", &[])
            .await
            .expect("run")
            .get(0);
        assert_eq!(kind, "incremental");
        if found.contains(&finding) {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never reported: {found:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    city.drop_sources().await;
}

/// The two rules that start from tax reports follow what changed, like the others: after
/// each change to a revocation request, to an unlicensed-business report or to the
/// enterprise a report names, an incremental run finds what a full run finds. And a
/// finding fixed while a bureau it rests on is behind is resolved once that bureau has
/// caught up, though nothing changes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_report_rules_follow_what_changed_between_full_runs() {
    let (mut city, _) = three_clean_enterprises(13).await;
    let as_of = city.world.options.as_of;
    let pg = city.pg.client().await;
    let reg = |city: &City, i: usize| city.world.enterprises[i].reg_no.clone();
    let pending = |r: String| ("revocation_request_pending".to_owned(), r);
    assert!(
        city.world.enterprises[0].ntax.is_some(),
        "registered at national tax"
    );

    // National tax asks AIC to revoke enterprise 0, 90 days ago (past the 60 days allowed).
    city.change(0, |w, i| {
        let t = w.enterprises[i].ntax.as_mut().expect("ntax");
        t.requests
            .push((9_999_101, as_of - Days::new(90), "逾期未申报".into()));
    })
    .await;
    city.wait_caught_up().await;
    let open = incremental_agrees_with_full(&city, &pg).await;
    assert!(open.contains(&pending(reg(&city, 0))), "{open:?}");

    // A report names enterprise 1 as registered.
    let (name1, address1) = {
        let e = &city.world.enterprises[1];
        (e.name.clone(), e.address.clone())
    };
    city.world
        .report_named(Bureau::Ntax, &widened(&name1), &address1);
    let report = city.world.unlicensed.last().expect("report").clone();
    city.write(&ebis::demo::native::unlicensed_rows(&report), &[])
        .await;
    city.wait_caught_up().await;
    incremental_agrees_with_full(&city, &pg).await;
    let matched = "select coalesce(detail->>'matched_reg_no', '-') from compare.finding
                   where rule = 'unlicensed_business' and resolved_at is null";
    assert_eq!(texts(&pg, matched).await, [reg(&city, 1)]);

    // Enterprise 1 renames at AIC: the report matches nothing. Enterprise 2 takes the
    // reported name: the report now names it.
    city.change(1, |w, i| w.enterprises[i].name.push_str("二部"))
        .await;
    city.wait_caught_up().await;
    incremental_agrees_with_full(&city, &pg).await;
    assert_eq!(texts(&pg, matched).await, ["-"]);
    city.change(2, |w, i| w.enterprises[i].name = name1.clone())
        .await;
    city.wait_caught_up().await;
    incremental_agrees_with_full(&city, &pg).await;
    assert_eq!(texts(&pg, matched).await, [reg(&city, 2)]);

    // The report is withdrawn: its finding is resolved.
    city.write(
        &Default::default(),
        &[("WF_WZJY", mysql_async::Value::UInt(report.id))],
    )
    .await;
    city.wait_caught_up().await;
    incremental_agrees_with_full(&city, &pg).await;
    assert!(texts(&pg, matched).await.is_empty());

    // National tax falls behind, and a full run sees the request's finding again (later
    // than national tax is complete). AIC then revokes enterprise 0: the finding is gone,
    // but it rests on national tax too, so it stays open and is kept for the next run.
    city.stop("ntax_city").await;
    city.wh.compare_full().await.expect("full run");
    city.change(0, |w, i| {
        w.enterprises[i].aic = AicState::Revoked(as_of - Days::new(5), "提请吊销".into())
    })
    .await;
    city.wait_caught_up().await;
    assert!(city.compare().await.contains(&pending(reg(&city, 0))));
    let kept = "select count(*)::text from compare.held where rule = 'revocation_request_pending'";
    assert_eq!(texts(&pg, kept).await, ["1"], "kept for the next run");
    // National tax catches up with nothing new: an incremental run resolves it.
    city.start(&["ntax_city"]);
    city.wait_caught_up().await;
    let start = std::time::Instant::now();
    while city.compare().await.contains(&pending(reg(&city, 0))) {
        let kind = texts(&pg, "select kind from compare.run order by id desc limit 1").await;
        assert_eq!(kind, ["incremental"]);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never resolved"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    city.drop_sources().await;
}

/// Runs the comparison, which must be incremental; then a full run, which must find
/// nothing new, resolve nothing and leave every finding as it was. The open findings.
async fn incremental_agrees_with_full(
    city: &City,
    pg: &tokio_postgres::Client,
) -> BTreeSet<(String, String)> {
    let rows =
        "select concat_ws(' ', rule, subject, enterprise_key, detail::text, resolved_at is null)
                from compare.finding order by rule, subject";
    let open = city.compare().await;
    let kind = texts(pg, "select kind from compare.run order by id desc limit 1").await;
    assert_eq!(kind, ["incremental"]);
    let incremental = texts(pg, rows).await;
    let full = city.wh.compare_full().await.expect("full run");
    let new: i64 = full.rules.iter().map(|r| r.new).sum();
    let gone: i64 = full.rules.iter().map(|r| r.resolved).sum();
    assert_eq!((new, gone), (0, 0), "a full run disagrees: {full:?}");
    assert_eq!(texts(pg, rows).await, incremental, "a full run disagrees");
    open
}

/// Two comparison runs at once — two `ebis run` processes each comparing every
/// `compare.every`, or `ebis compare` beside one — take turns (each settles the base
/// first, and `core.settle` holds the base's lock until its run commits): neither fails
/// on the other's findings, their runs do not overlap, and what both see stays open,
/// reported once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_comparison_runs_at_once_take_turns() {
    let w = World::generate(Options {
        discrepancy_rate: 0.3,
        noise_rate: 0.0,
        ..Options::new(60, 23)
    });
    let mut city = City::new(w).await;
    city.start(&[]);
    city.wait_caught_up().await;
    let found = city.compare().await;
    assert!(found.len() >= 5, "a city with findings: {found:?}");
    for round in 0..6 {
        let (a, b) = if round % 2 == 0 {
            tokio::join!(city.wh.compare_full(), city.wh.compare_full())
        } else {
            tokio::join!(city.wh.compare(), city.wh.compare_full())
        };
        a.expect("the first of two runs at once");
        b.expect("the second of two runs at once");
    }
    let pg = city.pg.client().await;
    let overlapping: i64 = pg
        .query_one(
            "select count(*) from compare.run a join compare.run b
               on a.id < b.id and b.started_at < a.finished_at",
            &[],
        )
        .await
        .expect("runs")
        .get(0);
    assert_eq!(
        overlapping, 0,
        "no run starts before the one before it ended"
    );
    assert_eq!(city.compare().await, found, "the same findings, still open");
    let resolved: i64 = pg
        .query_one(
            "select count(*) from compare.finding where resolved_at is not null",
            &[],
        )
        .await
        .expect("findings")
        .get(0);
    assert_eq!(resolved, 0, "nothing the data still shows was resolved");
    city.drop_sources().await;
}

/// A fresh warehouse with every migration applied, and a client of it (the database is
/// dropped with the `PgDb`).
async fn migrated_warehouse() -> (PgDb, tokio_postgres::Client) {
    let db = PgDb::create().await;
    let wh = ebis::warehouse::Warehouse::new(&db.conn, 1).expect("warehouse");
    ebis::warehouse::migrate(&wh).await.expect("migrate");
    let c = db.client().await;
    (db, c)
}

#[tokio::test]
async fn the_sql_identifier_functions_agree_with_the_shared_vectors() {
    let (_db, c) = migrated_warehouse().await;
    let text = std::fs::read_to_string(crate::support::root().join("testdata/identifiers.csv"))
        .expect("vectors");
    let mut n = 0;
    for line in text
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let cols: Vec<&str> = line.split(',').collect();
        let function = match cols[0] {
            "org_code" => "core.is_org_code",
            "reg_no" => "core.is_reg_no",
            "uscc" => "core.is_uscc",
            "id_card" => "core.is_id_card",
            "taxpayer_id" => "core.is_taxpayer_id",
            other => panic!("unknown kind {other}"),
        };
        let got: bool = c
            .query_one(&format!("select {function}($1)"), &[&cols[1]])
            .await
            .expect("call")
            .get(0);
        assert_eq!(got, cols[2] == "true", "{function}({})", cols[1]);
        n += 1;
    }
    assert!(n > 30);
    let upgraded: String = c
        .query_one("select core.id_card_18('110105491231002')", &[])
        .await
        .expect("18")
        .get(0);
    assert_eq!(upgraded, "11010519491231002X");
    let same: bool = c
        .query_one("select core.norm_text('乌海市（海勃湾） 宏达\u{3000}商贸') = core.norm_text('乌海市(海勃湾)宏达商贸')", &[])
        .await
        .expect("norm")
        .get(0);
    assert!(same);
}

/// The SQL checks give what src/identifiers.rs gives on thousands of generated codes (with
/// impossible birth dates among the ID-card numbers), valid and with one character
/// changed: migration 0035 rewrote them for speed, and an indexed immutable function must
/// not change a single result.
#[tokio::test]
async fn the_sql_identifier_functions_agree_with_the_rust_ones_on_generated_codes() {
    use ebis::identifiers as id;
    let (_db, c) = migrated_warehouse().await;
    const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const USCC: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut codes = Vec::new();
    for i in 0..4000 {
        let org_body: String = (0..8).map(|_| ALNUM[next(36)] as char).collect();
        let org = format!(
            "{org_body}{}",
            id::org_code_check(&org_body).expect("check")
        );
        let reg_body: String = (0..14).map(|_| (b'0' + next(10) as u8) as char).collect();
        let reg = format!("{reg_body}{}", id::reg_no_check(&reg_body).expect("check"));
        let division: String = (0..6).map(|_| (b'0' + next(10) as u8) as char).collect();
        let uscc = id::uscc_of(&division, &org).unwrap_or_else(|| format!("91{division}{org}0"));
        let birth = format!("{}{:02}{:02}", 1890 + next(140), next(14), next(33));
        let card_body = format!("{division}{birth}{:03}", next(1000));
        let card = format!(
            "{card_body}{}",
            id::id_card_check(&card_body).expect("check")
        );
        let old_card = format!("{division}{}{:03}", &birth[2..], next(1000));
        let taxpayer = match i % 3 {
            0 => format!("{division}{org}"),
            1 => format!("{card}{:02}", next(100)),
            _ => format!("{old_card}{:02}", next(100)),
        };
        for code in [org, reg, uscc, card, old_card, taxpayer] {
            // Valid as made, and with one character changed (often invalid, at times not).
            let mut changed = code.clone().into_bytes();
            let at = next(changed.len());
            changed[at] = if i % 2 == 0 {
                USCC[next(31)]
            } else {
                ALNUM[next(36)]
            };
            codes.push(String::from_utf8(changed).expect("ascii"));
            codes.push(code);
        }
    }
    codes.extend(
        [
            "",
            "1503021234567",
            "150302123456789 ",
            "X1503021234567",
            "12345678-9",
        ]
        .map(String::from),
    );
    let rows = c
        .query(
            "select core.is_org_code(x), core.is_reg_no(x), core.is_uscc(x), core.is_id_card(x),
                    core.is_taxpayer_id(x)
             from unnest($1::text[]) with ordinality as t(x, i) order by i",
            &[&codes],
        )
        .await
        .expect("checks");
    assert_eq!(rows.len(), codes.len());
    let mut valid = [0; 5];
    for (code, row) in codes.iter().zip(&rows) {
        let sql: [bool; 5] = [row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)];
        let rust = [
            id::is_org_code(code),
            id::is_reg_no(code),
            id::is_uscc(code),
            id::is_id_card(code),
            id::is_taxpayer_id(code),
        ];
        assert_eq!(
            sql, rust,
            "org code, registration number, credit code, ID card, taxpayer id checks of {code:?}"
        );
        for (n, v) in valid.iter_mut().zip(rust) {
            *n += usize::from(v);
        }
    }
    // Both outcomes occur for every kind.
    assert!(
        valid.iter().all(|&n| n > 1000 && n < codes.len() - 1000),
        "{valid:?}"
    );
}

/// core.norm_text gives what it gave before migration 0036 skipped normalizing what is
/// already normalized, on texts already in NFKC and texts that are not (widths, circled
/// digits, ligatures, half-width katakana, combining accents, every kind of white space),
/// and NULL for NULL; and what src/mapping/text.rs's norm_text gives where no letter
/// beyond ASCII has an upper case (SQL's upper follows the database's character type).
#[tokio::test]
async fn the_sql_text_normalization_agrees_with_the_rust_one() {
    let (_db, c) = migrated_warehouse().await;
    let pieces = [
        "乌海市",
        "海勃湾区",
        "（",
        "）",
        "(",
        ")",
        "\u{3000}",
        " ",
        "\t",
        "\n",
        "\r",
        "\u{0B}",
        "\u{0C}",
        "ＡＢＣ",
        "abc",
        "１２３",
        "①",
        "ﬁ",
        "ｶﾞ",
        "e\u{301}",
        "é",
        "ß",
        "Ⅻ",
        "㈱",
        "\u{A0}",
        "有限公司",
        "-",
        "·",
        "ǅ",
    ];
    let mut rng = ebis::demo::rng::Rng::new(36);
    let mut texts: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
    for _ in 0..3000 {
        let n = rng.range(1, 6);
        texts.push((0..n).map(|_| *rng.pick(&pieces)).collect());
    }
    let rows = c
        .query(
            "select t, core.norm_text(t), upper(regexp_replace(normalize(t, NFKC), '[ \\t\\n\\r\\f\\v]', '', 'g')) \
             from unnest($1::text[]) t",
            &[&texts],
        )
        .await
        .expect("norm_text");
    assert_eq!(rows.len(), texts.len());
    let (mut normalized_already, mut like_rust) = (0, 0);
    for row in rows {
        let (t, sql, before): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(sql, before, "core.norm_text({t:?})");
        let rust = ebis::mapping::text::norm_text(&t);
        if rust == rust.to_uppercase() {
            assert_eq!(sql, rust, "core.norm_text({t:?})");
            like_rust += 1;
        }
        normalized_already += usize::from(ebis::mapping::text::nfkc(&t) == t.as_str());
    }
    assert!(normalized_already > 100 && normalized_already < texts.len() / 2);
    assert!(like_rust > texts.len() / 2);
    let null: Option<String> = c
        .query_one("select core.norm_text(null)", &[])
        .await
        .expect("null")
        .get(0);
    assert_eq!(null, None);
}

/// The crosswalk as a text per row.
async fn identifier_rows(pg: &tokio_postgres::Client) -> Vec<String> {
    texts(
        pg,
        "select (to_jsonb(i))::text from core.identifier i order by record_kind, source, source_key",
    )
    .await
}

/// A full run's rules run in parallel workers (the functions they call are parallel
/// safe) and find there what they find in one backend, with ID-card numbers masked as
/// the run asks (a worker takes the settings the session made).
async fn in_parallel_workers_a_full_run_finds_the_same(city: &City, full_id: &str) {
    let pg = city.pg.client().await;
    // Every plan that may run in workers does (PostgreSQL 16 renamed the setting).
    if pg
        .batch_execute("set debug_parallel_query = on")
        .await
        .is_err()
    {
        pg.batch_execute("set force_parallel_mode = on")
            .await
            .expect("force parallel plans");
    }
    pg.batch_execute(
        "set parallel_setup_cost = 0; set parallel_tuple_cost = 0;
         set min_parallel_table_scan_size = 0; set min_parallel_index_scan_size = 0",
    )
    .await
    .expect("parallel plans whatever the size");
    let plan = |sql: &'static str| {
        let pg = &pg;
        async move {
            pg.query(&format!("explain (costs off) {sql}"), &[])
                .await
                .expect("plan")
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    // The masking, whole in a worker.
    let masked = "select compare.visible_id(legal_rep_id_no) from core.enterprise
                  where legal_rep_id_no is not null";
    let p = plan(masked).await;
    assert!(p[0].starts_with("Gather"), "{}", p.join("\n"));
    pg.batch_execute("set ebis.mask_ids = on")
        .await
        .expect("mask");
    let shown = pg.query(masked, &[]).await.expect("masked in a worker");
    assert!(!shown.is_empty());
    for r in shown {
        let id: String = r.get(0);
        assert!(
            id.contains("********"),
            "a worker showed an ID-card number whole"
        );
    }
    pg.batch_execute("reset ebis.mask_ids")
        .await
        .expect("reset");
    let p = plan("select * from compare.current").await;
    assert!(
        p.iter().any(|l| l.contains("Gather")),
        "no rule runs in workers:\n{}",
        p.join("\n")
    );
    let run: i64 = pg
        .query_one("select compare.refresh_full()", &[])
        .await
        .expect("full run in workers")
        .get(0);
    let (new, resolved): (i32, i32) = pg
        .query_one(
            "select new_findings, resolved_findings from compare.run where id = $1",
            &[&run],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .expect("the run");
    assert_eq!((new, resolved), (0, 0), "workers find something else");
    let stored: String = pg
        .query_one(
            "select detail->'invalid'->0->>'value' from compare.finding
             where rule = 'invalid_identifier' and detail->'invalid'->0->>'field' = 'legal_rep_id_no'",
            &[],
        )
        .await
        .expect("the bad ID-card number's finding")
        .get(0);
    assert_eq!(
        stored,
        format!("{}********{}", &full_id[..6], &full_id[14..])
    );
}

/// The base built record by record as capture went (drained in small batches) equals
/// the base the bulk refresh computes set-wise, and the one a full rebuild (the set-wise
/// resolve) computes, on a city with every rule's positive and negative cases.
pub(crate) async fn same_base_by_every_path(city: &City) {
    let pg = city.pg.client().await;
    pg.execute("select core.settle()", &[])
        .await
        .expect("settle");
    let incremental = base_rows(&pg).await;
    assert!(!incremental.is_empty(), "a base to compare");
    let identifiers = identifier_rows(&pg).await;
    // The set-wise computation of every enterprise's row, beside what the refreshes by
    // key built.
    pg.batch_execute(
        "begin;
         create temp table ebis_refreshed (like core.enterprise) on commit drop;
         select core.refresh_enterprises_bulk(array(select enterprise_key from core.enterprise));
         create temp table ebis_t_bulk as select * from ebis_refreshed;
         commit;",
    )
    .await
    .expect("bulk refresh");
    let bulk = texts(
        &pg,
        "select (to_jsonb(e) - 'updated_at')::text from ebis_t_bulk e order by enterprise_key",
    )
    .await;
    assert_eq!(bulk, incremental, "the bulk refresh");
    pg.batch_execute("select core.rebuild()")
        .await
        .expect("rebuild");
    assert_eq!(
        identifier_rows(&pg).await,
        identifiers,
        "the rebuilt crosswalk"
    );
    assert_eq!(base_rows(&pg).await, incremental, "the rebuilt base");
}
