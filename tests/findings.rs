//! Findings a bureau can trust, end to end (bureau tables → pipeline → findings): what
//! completeness holds back is said, a clean stop leaves nothing held back, rejected rows
//! are named by the findings they may have caused, resolutions are counted, and an
//! org-code conflict lands on the bureaus that hold the codes.

use crate::support::city::City;
use crate::support::{ebis, root, run};
use chrono::Days;
use ebis::demo::world::{Options, World};
use mysql_async::prelude::Queryable;
use std::time::Duration;

fn quiet(seed: u64) -> World {
    World::empty(Options {
        discrepancy_rate: 0.0,
        noise_rate: 0.0,
        ..Options::new(0, seed)
    })
}

/// An enterprise registered at AIC long ago and at no other bureau (its index).
fn aic_only(w: &mut World) -> usize {
    let old = w.options.as_of - Days::new(400);
    let i = w.establish_in(old, "150303");
    let e = &mut w.enterprises[i];
    e.ntax = None;
    e.ltax = None;
    e.qts = None;
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_completeness_holds_back_is_said_and_a_clean_stop_holds_back_nothing() {
    let mut w = quiet(11);
    let old = w.options.as_of - Days::new(400);
    w.establish_in(old, "150303");
    let mut city = City::new(w).await;
    // Caught-up sources poll once a minute: nothing polls unless the test makes it.
    city.poll_interval = Duration::from_secs(60);
    city.start(&[]);
    city.wait_caught_up().await;
    assert!(city.compare().await.is_empty());

    // AIC registers an enterprise that no tax bureau has; AIC applies it (restarted, it
    // polls at once) while national tax last polled before it was written.
    city.stop("aic_city").await;
    let i = aic_only(&mut city.world);
    let reg = city.world.enterprises[i].reg_no.clone();
    let rows = ebis::demo::native::enterprise_rows(&city.world.enterprises[i]);
    city.write(&rows, &[]).await;
    city.start(&["aic_city"]);
    city.wait_caught_up().await;
    let run = city.wh.compare().await.expect("compare");
    let rule = run
        .rules
        .iter()
        .find(|r| r.rule == "registered_not_tax_registered")
        .expect("rule");
    assert_eq!(
        rule.open, 0,
        "national tax is not complete past the evidence"
    );
    assert_eq!(
        run.held_back.get("ntax"),
        Some(&1),
        "the run says what national tax holds back: {:?}",
        run.held_back
    );
    assert!(
        run.render()
            .contains("held back until their bureaus are complete"),
        "{}",
        run.render()
    );

    // A clean stop polls each source once more: nothing committed before it is held back.
    city.stop_all().await;
    let found = city.compare().await;
    assert!(
        found.contains(&("registered_not_tax_registered".to_owned(), reg.clone())),
        "after a clean stop the finding must be reported: {found:?}"
    );
    let run = city.wh.compare().await.expect("compare");
    assert!(run.held_back.is_empty(), "{:?}", run.held_back);
    city.drop_sources().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_rows_are_named_by_the_findings_they_may_have_caused() {
    let mut w = quiet(12);
    let old = w.options.as_of - Days::new(400);
    w.establish_in(old, "150303");
    let i = w.establish_in(old, "150303");
    w.enterprises[i].ltax = None;
    let mut city = City::new(w).await;
    // National tax's registration of enterprise i cannot be mapped: its tax office code
    // is garbled, so the division is no division.
    let key = city.world.enterprises[i]
        .ntax
        .as_ref()
        .expect("registered at national tax")
        .key;
    let reg = city.world.enterprises[i].reg_no.clone();
    let account = city
        .bureaus
        .as_ref()
        .expect("bureaus")
        .conn(ebis::indicators::Bureau::Ntax)
        .clone();
    let pool = crate::support::mysql::pool(&account);
    let mut c = pool.get_conn().await.expect("national tax");
    c.query_drop(format!(
        "UPDATE DJ_NSRXX SET ZGSWJ_DM = '1XXXXXX0000' WHERE DJXH = {key}"
    ))
    .await
    .expect("garble");
    drop(c);
    let _ = pool.disconnect().await;
    city.start(&[]);
    city.wait_caught_up().await;
    let run = city.wh.compare().await.expect("compare");
    assert_eq!(
        run.rejections
            .get("ntax")
            .and_then(|k| k.get("tax_registration")),
        Some(&1),
        "{:?}",
        run.rejections
    );
    assert!(
        run.render().contains("unresolved rejected rows"),
        "{}",
        run.render()
    );
    // The finding the rejection caused says so.
    let pg = city.pg.client().await;
    let detail: serde_json::Value = pg
        .query_one(
            "select detail from compare.finding where rule = 'registered_not_tax_registered' and reg_no = $1",
            &[&reg],
        )
        .await
        .expect("the finding")
        .get(0);
    assert_eq!(
        detail["unresolved_rejections"],
        serde_json::json!(["ntax"]),
        "{detail}"
    );
    // verify does not say ok while rows are rejected.
    let out = run_verify(&city);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("REJECTED"), "{}", out.stdout);
    city.drop_sources().await;
}

fn run_verify(city: &City) -> crate::support::Ran {
    run(ebis(&root())
        .arg("--config")
        .arg(city.dir.path().join("pipeline.yaml"))
        .args(["verify", "ntax_city"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflict_only_tax_holds_lands_on_its_list_resolutions_are_counted_and_a_reopened_one_keeps_its_history()
 {
    let mut w = quiet(13);
    let old = w.options.as_of - Days::new(400);
    // National tax holds another valid org code than QTS issued.
    let i = w.establish_in(old, "150303");
    w.enterprises[i].ltax = None;
    let fresh = ebis::demo::people::org_code(99_999_123);
    w.enterprises[i]
        .ntax
        .as_mut()
        .expect("national tax")
        .org_code = Some(fresh.clone());
    let reg = w.enterprises[i].reg_no.clone();
    let mut city = City::new(w).await;
    city.start(&[]);
    city.wait_caught_up().await;
    let found = city.compare().await;
    assert!(
        found.contains(&("org_code_conflict".to_owned(), reg.clone())),
        "{found:?}"
    );
    let pg = city.pg.client().await;
    let bureaus: Vec<String> = pg
        .query_one(
            "select bureaus from compare.finding where rule = 'org_code_conflict' and reg_no = $1",
            &[&reg],
        )
        .await
        .expect("finding")
        .get(0);
    assert_eq!(
        bureaus,
        ["ntax"],
        "only national tax holds a code QTS did not issue"
    );
    // National tax corrects it: the next run resolves the finding and says so.
    city.change(i, |w, i| {
        let code = w.enterprises[i].org_code.clone();
        w.enterprises[i].ntax.as_mut().expect("ntax").org_code = Some(code);
    })
    .await;
    city.wait_caught_up().await;
    let run = city.wh.compare().await.expect("compare");
    let rule = run
        .rules
        .iter()
        .find(|r| r.rule == "org_code_conflict")
        .expect("rule");
    assert_eq!((rule.open, rule.resolved), (0, 1), "{}", run.render());

    // National tax goes back to the code QTS did not issue: the finding is found again,
    // and the day's report counts both of its episodes, the resolution between them kept.
    city.change(i, |w, i| {
        w.enterprises[i].ntax.as_mut().expect("ntax").org_code = Some(fresh.clone());
    })
    .await;
    city.wait_caught_up().await;
    let found = city.compare().await;
    assert!(
        found.contains(&("org_code_conflict".to_owned(), reg.clone())),
        "{found:?}"
    );
    let day = pg
        .query_one(
            "select opened, resolved, open_at_end from report.finding_daily
             where day = current_date and rule = 'org_code_conflict' and bureau = 'ntax'",
            &[],
        )
        .await
        .expect("today's row");
    let counts: (i64, i64, i64) = (day.get(0), day.get(1), day.get(2));
    assert_eq!(counts, (2, 1, 1), "opened twice, resolved once, open now");
    city.drop_sources().await;
}

#[test]
fn a_ground_truth_of_another_shape_is_refused_before_anything_runs() {
    let dir = crate::support::TempDir::new("ebis_truth");
    let file = dir.path().join("truth.csv");
    std::fs::write(&file, "enterprise,finding\nE1,missing\n").expect("truth");
    let out = run(ebis(&root())
        .env("EBIS_WAREHOUSE_URL", "postgres://nobody@127.0.0.1:1/none")
        .args(["compare", "--truth"])
        .arg(&file));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("line 1: the header is `enterprise,finding`"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("unreachable"),
        "refused before connecting: {}",
        out.stderr
    );
}
