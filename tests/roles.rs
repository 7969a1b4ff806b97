//! Confidentiality (严格信息保密): what the restricted roles can read, attacked the way a
//! curious reader would — a cheap function of their own that prints whatever the planner
//! lets it see before a view's row filter.

use crate::support::pg::{PgDb, admin, connect, connect_collecting_notices};
use crate::support::{cleanup, unique_name};
use std::collections::BTreeSet;

/// Roles created for one test, dropped afterwards (roles are cluster-wide).
struct Roles {
    db: String,
    names: Vec<String>,
}

impl Drop for Roles {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.names);
        let db = self.db.clone();
        cleanup(move || async move {
            let c = connect(&admin().with_database(&db)).await;
            for n in names {
                let _ = c
                    .batch_execute(&format!("drop owned by {n}; drop role if exists {n}"))
                    .await;
            }
        });
    }
}

/// Rows of every bureau, so a leak shows another bureau's names.
const SEED: &str = "
insert into compare.run (as_of) values ('2006-12-31');
insert into compare.finding (rule, subject, enterprise_key, org_code, reg_no, enterprise_name, division,
                             bureaus, involved, detail, since, first_seen, last_seen, first_run, last_run)
select r.rule, r.subject, r.subject, null, r.reg_no, r.name, '150302', r.bureaus, r.bureaus, '{}', '2006-01-01',
       now(), now(), 1, 1
from (values
    ('registered_not_tax_registered', 'E1', '150302000000011', '乌海市工商机密甲有限公司', array['aic']),
    ('tax_closed_aic_active', 'E2', '150302000000022', '乌海市国税机密乙有限公司', array['ntax']),
    ('ntax_ltax_mismatch', 'E3', '150302000000033', '乌海市地税机密丙有限公司', array['ltax']),
    ('org_code_voided_active', 'E4', '150302000000044', '乌海市质监机密丁有限公司', array['qts'])
) r(rule, subject, reg_no, name, bureaus);
insert into exchange.tax_registration (org_code, reg_no, taxpayer_id, taxpayer_name, legal_rep, address,
        registered_on, source, bureau, division, source_key, change_position, change_version,
        mapping_version, raw_row)
values ('769538264', '150302000000022', '150302769538264', '国税户机密名称', '王镕', '新华街1号', '2006-03-01',
        'ntax_city', 'ntax', '150302', 'N1', 'p', 1, 'v', '{}'),
       ('716105852', '150302000000033', '150302716105852', '地税户机密名称', '李堃', '新华街2号', '2006-03-02',
        'ltax_hbw', 'ltax', '150302', 'L1', 'p', 1, 'v', '{}');
insert into exchange.aic_establishment (reg_no, name, legal_rep, legal_rep_id_no, address, source, bureau,
        division, source_key, change_position, change_version, mapping_version, raw_row)
values ('150302000000011', '工商户机密名称', '张玥', '11010519491231002X', '新华街3号', 'aic_city', 'aic',
        '150302', 'A1', 'p', 1, 'v', '{}');
insert into exchange.qts_code_issuance (reg_no, org_code, org_name, issued_on, source, bureau, division,
        source_key, change_position, change_version, mapping_version, raw_row)
values ('150302000000044', '769538264', '质监户机密名称', '2006-04-01', 'qts_city', 'qts', '150302', 'Q1',
        'p', 1, 'v', '{}');
";

/// Every seeded value: names, registration numbers, org codes, taxpayer ids, the ID-card
/// number.
const SEEDED: [&str; 17] = [
    "乌海市工商机密甲有限公司",
    "乌海市国税机密乙有限公司",
    "乌海市地税机密丙有限公司",
    "乌海市质监机密丁有限公司",
    "国税户机密名称",
    "地税户机密名称",
    "工商户机密名称",
    "质监户机密名称",
    "150302000000011",
    "150302000000022",
    "150302000000033",
    "150302000000044",
    "769538264",
    "716105852",
    "150302769538264",
    "150302716105852",
    "11010519491231002X",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_restricted_role_can_leak_rows_through_a_function_of_its_own() {
    let db = PgDb::create().await;
    let wh = ebis::warehouse::Warehouse::new(&db.conn, 2).expect("warehouse");
    ebis::warehouse::migrate(&wh).await.expect("migrate");
    let setup = db.client().await;
    setup.batch_execute(SEED).await.expect("seed");

    let mut roles = Roles {
        db: db.name.clone(),
        names: Vec::new(),
    };
    let mut attacked = 0;
    for granted in [
        "ebis_reader_aic",
        "ebis_reader_ntax",
        "ebis_reader_ltax",
        "ebis_reader_qts",
        "ebis_analyst",
    ] {
        let probe = unique_name("ebis_t_probe");
        roles.names.push(probe.clone());
        setup
            .batch_execute(&format!(
                "create role {probe} nologin; grant {granted} to {probe}"
            ))
            .await
            .expect("probe role");
        let (c, notices) = connect_collecting_notices(&db.conn).await;
        c.batch_execute(&format!(
            "set role {probe};
             create function pg_temp.leak(t text) returns boolean language plpgsql cost 0.0000001 as
               $$ begin raise notice 'LEAK:%', t; return true; end $$;"
        ))
        .await
        .expect("a reader may create a temporary function");
        // Every column the role can read, of every relation.
        let readable = c
            .query(
                "select format('%I.%I', n.nspname, cl.relname), array_agg(format('%I', a.attname) order by a.attnum)
                 from pg_class cl
                 join pg_namespace n on n.oid = cl.relnamespace
                 join pg_attribute a on a.attrelid = cl.oid and a.attnum > 0 and not a.attisdropped
                 where n.nspname in ('exchange', 'core', 'compare', 'ebis')
                   and cl.relkind in ('r', 'v', 'm', 'p')
                   and has_column_privilege(cl.oid, a.attnum, 'SELECT')
                 group by 1 order by 1",
                &[],
            )
            .await
            .expect("readable relations");
        assert!(!readable.is_empty(), "{granted} can read nothing");
        let probes: Vec<(String, String)> = readable
            .iter()
            .flat_map(|r| {
                let relation: String = r.get(0);
                let columns: Vec<String> = r.get(1);
                columns
                    .into_iter()
                    .map(move |c| (relation.clone(), format!("{c}::text")))
            })
            .collect();
        // Everything the role may read, through any relation: what it sees is no leak.
        let mut visible = BTreeSet::new();
        for (relation, expr) in &probes {
            for row in c
                .query(&format!("select {expr} from {relation}"), &[])
                .await
                .unwrap_or_else(|e| panic!("{granted} reading {relation}: {e:?}"))
            {
                if let Some(v) = row.get::<_, Option<String>>(0) {
                    visible.insert(v);
                }
            }
        }
        // Each column attacked alone: a function of one column is what a planner pushes
        // below a view's filter.
        for (relation, expr) in &probes {
            notices.lock().expect("notices").clear();
            c.query(
                &format!("select count(*) from {relation} where pg_temp.leak({expr})"),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{granted} attacking {relation}: {e}"));
            // A seeded value the role cannot read anywhere, in what the function saw.
            let leaked: Vec<&str> = notices
                .lock()
                .expect("notices")
                .iter()
                .filter_map(|n| n.strip_prefix("LEAK:"))
                .flat_map(|seen| SEEDED.iter().filter(move |v| seen.contains(**v)))
                .filter(|v| !visible.iter().any(|r| r.contains(**v)))
                .copied()
                .collect();
            assert!(
                leaked.is_empty(),
                "{granted} saw values of {relation} ({expr}) it may not read: {leaked:?}"
            );
            attacked += 1;
        }
    }
    assert!(attacked >= 200, "only {attacked} probes ran");

    // The work list still shows each bureau its own findings.
    let probe = roles.names[2].clone();
    let c = db.client().await;
    c.batch_execute(&format!("set role {probe}"))
        .await
        .expect("role");
    let names: Vec<String> = c
        .query("select enterprise_name from compare.my_worklist", &[])
        .await
        .expect("worklist")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["乌海市地税机密丙有限公司"]);
}
