//! How the enterprise base links the bureaus' records, end to end (bureau tables →
//! pipeline → base → findings): a code known only through tax registrations, a code QTS
//! voided and re-issued (followed by every bureau, or not by one), and unified social
//! credit codes standing as registration numbers and taxpayer ids.

use crate::support::city::City;
use chrono::Days;
use ebis::demo::world::{Options, World};
use std::collections::BTreeSet;

fn quiet(seed: u64) -> World {
    World::empty(Options {
        discrepancy_rate: 0.0,
        noise_rate: 0.0,
        ..Options::new(0, seed)
    })
}

/// One enterprise registered long ago in `district` at every bureau that covers it.
fn enterprise(w: &mut World, district: &str) -> usize {
    let old = w.options.as_of - Days::new(400);
    w.establish_in(old, district)
}

async fn base_of(city: &City, reg_no: &str) -> Vec<(String, Option<String>, Option<String>)> {
    city.pg
        .client()
        .await
        .query(
            "select enterprise_key, qts_status, ntax_status from core.enterprise e
             where e.reg_no = $1 or exists (select 1 from core.identifier i
                                            where i.enterprise_key = e.enterprise_key and i.reg_no = $1)
             order by 1",
            &[&reg_no],
        )
        .await
        .expect("base")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_known_only_through_tax_links_the_enterprise_as_one() {
    let mut w = quiet(21);
    let i = enterprise(&mut w, "150303");
    w.code_known_through_tax(i);
    assert!(
        w.enterprises[i]
            .qts
            .as_ref()
            .is_some_and(|q| q.reg_no.is_empty()),
        "QTS did not record the registration number"
    );
    let (reg, code) = (
        w.enterprises[i].reg_no.clone(),
        w.enterprises[i].org_code.clone(),
    );
    let mut city = City::new(w).await;
    city.start(&[]);
    city.wait_caught_up().await;
    assert_eq!(city.compare().await, BTreeSet::new(), "nothing to report");
    assert_eq!(
        base_of(&city, &reg).await,
        [(code, Some("issued".to_owned()), Some("active".to_owned()))],
        "one enterprise, keyed by the code national tax holds"
    );
    crate::compare::same_base_by_every_path(&city).await;
    city.drop_sources().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reissued_code_every_bureau_followed_is_clean_and_a_lagging_bureau_is_the_conflict() {
    let mut w = quiet(22);
    // Followed by national and local tax (海勃湾区: both connected).
    let all = enterprise(&mut w, "150302");
    assert!(w.reissue_code(all, true));
    // National or local tax keeps the voided code.
    let some = enterprise(&mut w, "150302");
    assert!(w.reissue_code(some, false));
    let lagging: Vec<&str> = [
        ("ntax", w.enterprises[some].ntax.as_ref()),
        ("ltax", w.enterprises[some].ltax.as_ref()),
    ]
    .into_iter()
    .filter(|(_, t)| {
        t.and_then(|t| t.org_code.as_deref()) != Some(w.enterprises[some].org_code.as_str())
    })
    .map(|(b, _)| b)
    .collect();
    assert_eq!(lagging.len(), 1);
    let (reg_all, code_all) = (
        w.enterprises[all].reg_no.clone(),
        w.enterprises[all].org_code.clone(),
    );
    let reg_some = w.enterprises[some].reg_no.clone();
    // Re-issued, followed, and then the new code voided too: its void, not a conflict.
    let twice = enterprise(&mut w, "150302");
    assert!(w.reissue_code(twice, true));
    let void_id = w.id();
    let as_of = w.options.as_of;
    if let Some(q) = w.enterprises[twice].qts.as_mut() {
        q.voided = Some((void_id, as_of - Days::new(5)));
    }
    let reg_twice = w.enterprises[twice].reg_no.clone();
    let mut city = City::new(w).await;
    city.start(&[]);
    city.wait_caught_up().await;
    assert_eq!(
        city.compare().await,
        BTreeSet::from([
            ("org_code_conflict".to_owned(), reg_some.clone()),
            ("org_code_voided_active".to_owned(), reg_twice),
        ]),
        "the lagging bureau's conflict, the void of the current code, and nothing else"
    );
    let bureaus: Vec<String> = city
        .pg
        .client()
        .await
        .query_one(
            "select bureaus from compare.finding where reg_no = $1 and rule = 'org_code_conflict'",
            &[&reg_some],
        )
        .await
        .expect("finding")
        .get(0);
    assert_eq!(bureaus, lagging);
    // The enterprise stays with its current code; the voided one stands alone, voided.
    let base = base_of(&city, &reg_all).await;
    assert!(
        base.contains(&(
            code_all.clone(),
            Some("issued".to_owned()),
            Some("active".to_owned())
        )),
        "{base:?}"
    );
    assert!(
        base.iter()
            .all(|(k, q, _)| *k == code_all || q.as_deref() == Some("voided")),
        "{base:?}"
    );
    crate::compare::same_base_by_every_path(&city).await;
    city.drop_sources().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credit_codes_are_valid_identifiers_and_link_to_the_code_they_embed() {
    let mut w = quiet(23);
    let i = enterprise(&mut w, "150302");
    w.credit_code(i);
    let e = &w.enterprises[i];
    assert_eq!(e.reg_no.len(), 18, "a unified social credit code");
    assert!(
        e.ntax
            .as_ref()
            .is_some_and(|t| t.taxpayer_id == e.reg_no && t.reg_no.as_deref() == Some(&e.reg_no))
    );
    let (reg, code) = (e.reg_no.clone(), e.org_code.clone());
    assert_eq!(&reg[8..17], code, "the credit code embeds the org code");
    let mut city = City::new(w).await;
    city.start(&[]);
    city.wait_caught_up().await;
    assert_eq!(
        city.compare().await,
        BTreeSet::new(),
        "no invalid identifier, nothing missing"
    );
    assert_eq!(
        base_of(&city, &reg).await,
        [(code, Some("issued".to_owned()), Some("active".to_owned()))]
    );
    crate::compare::same_base_by_every_path(&city).await;
    city.drop_sources().await;
}
