//! `ebis check`: the example config and all bureau mappings compile; malformed mappings and
//! configs give compiler-style `file:line:column` errors and exit 1.

use crate::support::{TempDir, copy_dir, ebis, root, run};
use std::time::Duration;

#[test]
fn the_example_config_and_every_bureau_mapping_check_clean() {
    let out = run(ebis(&root()).args(["--config", "pipeline.example.yaml", "check"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("ok: 22 mapping file(s) checked"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_sql_server_example_checks_clean_and_its_setup_is_t_sql() {
    let dir = root().join("examples/sqlserver");
    let out = run(ebis(&dir).args(["--config", "pipeline.yaml", "check"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("ok: 2 mapping file(s) checked"),
        "{}",
        out.stdout
    );
    let out = run(ebis(&dir).args(["--config", "pipeline.yaml", "setup-source", "ntax_city"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for line in [
        "ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON",
        "ALTER TABLE [dbo].[DJ_NSRXX] ENABLE CHANGE_TRACKING",
        "ALTER TABLE [dbo].[DJ_ZXDJ] ENABLE CHANGE_TRACKING",
        "GRANT SELECT, VIEW CHANGE TRACKING ON [dbo].[DJ_NSRXX] TO [ebis_reader];",
    ] {
        assert!(out.stdout.contains(line), "{line} in:\n{}", out.stdout);
    }
    // change_tracking belongs to SQL Server: a MySQL source asking for it is refused at
    // its line.
    let tmp = TempDir::new("ebis_ct");
    let text = std::fs::read_to_string(root().join("pipeline.example.yaml")).expect("example");
    let bad = text.replacen("mode: changelog", "mode: change_tracking", 1);
    assert_ne!(bad, text);
    std::fs::write(tmp.path().join("pipeline.yaml"), bad).expect("write");
    copy_dir(&root().join("mappings"), &tmp.path().join("mappings"));
    let out = run(ebis(tmp.path()).arg("check"));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("change_tracking is SQL Server's Change Tracking; a mysql source"),
        "{}",
        out.stderr
    );
}

/// A project folder with the example config and a copy of the mappings to break.
fn project() -> TempDir {
    let dir = TempDir::new("ebis_check");
    copy_dir(&root().join("mappings"), &dir.path().join("mappings"));
    std::fs::copy(
        root().join("pipeline.example.yaml"),
        dir.path().join("pipeline.yaml"),
    )
    .expect("copy");
    dir
}

fn edit(dir: &TempDir, file: &str, from: &str, to: &str) {
    let p = dir.path().join(file);
    let text = std::fs::read_to_string(&p).expect("read");
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(&p, text.replacen(from, to, 1)).expect("write");
}

fn line_col(dir: &TempDir, file: &str, needle: &str) -> (usize, usize) {
    let text = std::fs::read_to_string(dir.path().join(file)).expect("read");
    text.lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, l[..c].chars().count() + 1)))
        .expect("needle present")
}

#[test]
fn a_misspelled_canonical_field_is_reported_at_its_place() {
    let dir = project();
    edit(
        &dir,
        "mappings/ntax/tax_registration.yaml",
        "  taxpayer_name:",
        "  taxpayer_nmae:",
    );
    let (line, col) = line_col(&dir, "mappings/ntax/tax_registration.yaml", "taxpayer_nmae");
    let out = run(ebis(dir.path()).arg("check"));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let want = format!(
        "mappings/ntax/tax_registration.yaml:{line}:{col}: error: unknown field `taxpayer_nmae` for record kind tax_registration (did you mean `taxpayer_name`?)"
    );
    assert!(
        out.stderr.lines().any(|l| l == want),
        "want {want}\ngot:\n{}",
        out.stderr
    );
    assert!(out.stdout.contains("1 error(s)"), "{}", out.stdout);
}

#[test]
fn problems_in_several_files_are_all_reported() {
    let dir = project();
    edit(
        &dir,
        "mappings/aic/aic_revocation.yaml",
        "record_kind: aic_revocation",
        "record_kind: aic_revokation",
    );
    edit(
        &dir,
        "mappings/ltax/tax_penalty.yaml",
        "[{decode: gbk}, trim]",
        "[{decode: big5}, trim]",
    );
    edit(
        &dir,
        "mappings/qts/qts_code_voided.yaml",
        "    transforms: [trim]",
        "    transforms: [trim, squash]",
    );
    edit(
        &dir,
        "mappings/ntax/tax_revocation_request.yaml",
        "record_kind: tax_revocation_request",
        "record_kind: aic_revocation",
    );
    let out = run(ebis(dir.path()).arg("check"));
    assert_eq!(out.code, 1);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(": error: "))
        .collect();
    assert_eq!(errors.len(), 5, "{}", out.stderr);
    let expect = [
        (
            "mappings/aic/aic_revocation.yaml",
            "aic_revokation",
            "unknown record kind `aic_revokation` (did you mean `aic_revocation`?)",
        ),
        (
            "mappings/ltax/tax_penalty.yaml",
            "{decode: big5}",
            "field `taxpayer_name`: cannot decode `big5`",
        ),
        (
            "mappings/qts/qts_code_voided.yaml",
            "squash",
            "unknown variant `squash`",
        ),
        (
            "mappings/ntax/tax_revocation_request.yaml",
            "aic_revocation",
            "record kind `aic_revocation` cannot come from bureau ntax (it belongs to aic)",
        ),
        (
            "mappings/ntax/tax_revocation_request.yaml",
            "requested_on",
            "unknown field `requested_on` for record kind aic_revocation",
        ),
    ];
    for (file, needle, message) in expect {
        let (line, col) = line_col(&dir, file, needle);
        let prefix = format!("{file}:{line}:{col}: error: {message}");
        assert!(
            errors.iter().any(|e| e.starts_with(&prefix)),
            "want {prefix}\ngot:\n{}",
            out.stderr
        );
    }
}

#[test]
fn broken_yaml_and_config_errors_name_their_place() {
    let dir = project();
    edit(
        &dir,
        "mappings/qts/qts_code_change.yaml",
        "  key: [BGXH]",
        "  key: [BGXH",
    );
    edit(
        &dir,
        "pipeline.yaml",
        "url: mysql://ebis_reader@",
        "url: mysql://ebis_reader:s3cret@",
    );
    let out = run(ebis(dir.path()).arg("check"));
    assert_eq!(out.code, 1);
    assert!(
        !out.stderr.contains("s3cret"),
        "a password was echoed: {}",
        out.stderr
    );
    let (line, col) = line_col(&dir, "pipeline.yaml", "mysql://ebis_reader:");
    let want = format!("pipeline.yaml:{line}:{col}: error: `connection.url` contains a password");
    assert!(
        out.stderr.lines().any(|l| l.starts_with(&want)),
        "want {want}\ngot:\n{}",
        out.stderr
    );
    // A config error stops before the mappings are read.
    assert!(
        !out.stderr.contains("qts_code_change.yaml"),
        "{}",
        out.stderr
    );
    edit(
        &dir,
        "pipeline.yaml",
        "url: mysql://ebis_reader:s3cret@",
        "url: mysql://ebis_reader@",
    );
    let out = run(ebis(dir.path()).arg("check"));
    assert_eq!(out.code, 1);
    let syntax: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("mappings/qts/qts_code_change.yaml:"))
        .collect();
    assert_eq!(syntax.len(), 1, "{}", out.stderr);
}

#[test]
fn mapping_files_can_be_checked_without_a_config() {
    let dir = project();
    edit(
        &dir,
        "mappings/aic/aic_establishment.yaml",
        "    column: REGNO\n",
        "    column: REGNO\n    expression: REGNO\n",
    );
    let out = run(ebis(dir.path()).args([
        "check",
        "mappings/aic",
        "mappings/qts/qts_code_issuance.yaml",
    ]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("mappings/aic/aic_establishment.yaml:")
            && out
                .stderr
                .contains("field `reg_no` needs exactly one of column, expression, value"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("5 mapping file(s) without errors"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_reaches_every_source_and_the_warehouse() {
    use crate::support::harness::{AIC_CHANGELOG, Env, LTAX_TIMESTAMP};
    let env = Env::new(&[&AIC_CHANGELOG, &LTAX_TIMESTAMP]).await;
    let check = || check_online(&env.config_path());
    let out = check();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("source aic_city: ok: 3 table(s) readable with every mapped column, changelog capture installed; head: seq 0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("source ltax_hbw: ok: ")
            && out.stdout.contains("timestamp capture installed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "reachable, all {} migrations applied",
            ebis::warehouse::MIGRATIONS.len()
        )),
        "{}",
        out.stdout
    );

    // An operator sees the warehouse server's settings the speed depends on, as the
    // server has them.
    let shared_buffers: String = env
        .pg()
        .await
        .query_one("show shared_buffers", &[])
        .await
        .expect("shared_buffers")
        .get(0);
    assert!(
        out.stdout.contains("warehouse: note: server: PostgreSQL ")
            && out.stdout.contains(&format!(
                ", shared_buffers {shared_buffers}, wal_compression "
            )),
        "{}",
        out.stdout
    );

    // A reviewer sees which other tables expressions read.
    assert!(
        out.stdout.contains(
            "source aic_city: note: aic_annual_inspection.yaml field `reg_no` (expression) reads E_BASEINFO"
        ),
        "{}",
        out.stdout
    );

    // A DBA drops a column a mapping reads: the check names the table and column.
    env.db("aic_city")
        .exec("ALTER TABLE E_BASEINFO DROP COLUMN DOM")
        .await;
    let out = check();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("source aic_city: error: source table E_BASEINFO has no column DOM"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("source ltax_hbw: ok: "),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_anywhere_in_a_url_is_refused_in_files_and_never_printed() {
    // In the config file: user-info, a query parameter, a libpq pair — each refused with
    // its place, none echoed.
    for (written, secret) in [
        (
            "url: mysql://ebis_reader@127.0.0.1:3306/aic?password=qS3cret",
            "qS3cret",
        ),
        (
            "url: mysql://ebis_reader@127.0.0.1:3306/aic?prefer_socket=false&PASS=qS3cret",
            "qS3cret",
        ),
        (
            "url: mysql://ebis_reader:uS3cret@127.0.0.1:3306/aic",
            "uS3cret",
        ),
    ] {
        let dir = project();
        let config = std::fs::read_to_string(dir.path().join("pipeline.yaml")).expect("config");
        let line = config
            .lines()
            .find(|l| l.trim_start().starts_with("url: mysql://"))
            .expect("a source url")
            .trim_start()
            .to_owned();
        edit(&dir, "pipeline.yaml", &line, written);
        let out = run(ebis(dir.path()).arg("check"));
        assert_eq!(out.code, 1, "{written}: {}", out.stderr);
        assert!(
            out.stderr.contains("`connection.url` contains a password"),
            "{written}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains(secret) && !out.stdout.contains(secret),
            "{written}: echoed: {}",
            out.stderr
        );
    }

    // In EBIS_WAREHOUSE_URL (a variable, where a password may live): accepted, and masked
    // in everything `migrate` and `check --online` print.
    use crate::support::harness::{AIC_CHANGELOG, Env};
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let password = std::env::var(crate::support::pg::PASSWORD_ENV)
        .unwrap_or_else(|_| "notUsedByTrustAuth".to_owned());
    let url = format!(
        "{}?application_name=ebis_test&password={password}",
        env.pg.url
    );
    for args in [&["migrate"][..], &["check", "--online"][..]] {
        let out = run(ebis(&root())
            .env("EBIS_WAREHOUSE_URL", &url)
            .arg("--config")
            .arg(env.config_path())
            .args(args));
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("password=***"),
            "{args:?}: {}",
            out.stdout
        );
        assert!(
            !out.stdout.contains(&password) && !out.stderr.contains(&password),
            "{args:?} printed the password: {}{}",
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn a_mapping_cannot_reach_files_or_statements_beyond_its_own() {
    let dir = project();
    // A code table outside the mappings folder: absolute, or climbing out.
    edit(
        &dir,
        "mappings/aic/aic_establishment.yaml",
        "lookup: {file: codes/enttype.yaml, missing: keep}",
        "lookup: {file: /etc/passwd, missing: keep}",
    );
    edit(
        &dir,
        "mappings/aic/aic_establishment.yaml",
        "lookup: {file: codes/regorg.yaml, missing: keep}",
        "lookup: {file: ../../pipeline.yaml, missing: keep}",
    );
    // A comment that would turn the rest of the statement into another table's read.
    edit(
        &dir,
        "mappings/aic/aic_establishment.yaml",
        "concat: [INDUSTRYPHY, INDUSTRYCO]",
        "expression: \"(SELECT GROUP_CONCAT(CERNO) FROM E_BASEINFO) AS x FROM E_BASEINFO #\"",
    );
    edit(
        &dir,
        "mappings/aic/aic_annual_inspection.yaml",
        "expression: (SELECT b.REGNO FROM E_BASEINFO b WHERE b.PRIPID = E_NJ_BASEINFO.PRIPID)",
        "expression: b.REGNO), (SELECT LOAD_FILE('/etc/shadow')",
    );
    let out = run(ebis(dir.path()).arg("check"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        !out.stderr.contains("root:"),
        "a file outside the mappings was read: {}",
        out.stderr
    );
    for (file, needle, message) in [
        (
            "mappings/aic/aic_establishment.yaml",
            "lookup: {file: /etc/passwd",
            "field `enterprise_type`: lookup file `/etc/passwd`: must be a path relative to the mapping file's folder",
        ),
        (
            "mappings/aic/aic_establishment.yaml",
            "lookup: {file: ../../pipeline.yaml",
            "field `registration_authority`: lookup file `../../pipeline.yaml`: must stay inside the mapping file's folder",
        ),
        (
            "mappings/aic/aic_establishment.yaml",
            "\"(SELECT GROUP_CONCAT",
            "field `industry_code`: an expression may not contain a comment (`#`)",
        ),
        (
            "mappings/aic/aic_annual_inspection.yaml",
            "b.REGNO), (SELECT",
            "field `reg_no`: an expression may not close a parenthesis it did not open",
        ),
    ] {
        let (line, col) = line_col(&dir, file, needle);
        let want = format!("{file}:{line}:{col}: error: {message}");
        assert!(
            out.stderr.lines().any(|l| l.starts_with(&want)),
            "want {want}\ngot:\n{}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_expression_is_named_by_its_mapping_file_line_and_field() {
    use crate::support::harness::{Env, Rng, SourceDef, aic_insert};
    use crate::support::mysql::{MyDb, bureau_schema};
    let dir = project();
    let mut schema = bureau_schema("aic");
    schema.push("CREATE TABLE HY_DM (DM CHAR(4) PRIMARY KEY, MC VARCHAR(50))".to_owned());
    let db = MyDb::create(&schema).await;
    // An expression with a typo, and one that reads a helper table.
    edit(
        &dir,
        "mappings/aic/aic_annual_inspection.yaml",
        "expression: (SELECT b.REGNO FROM E_BASEINFO b",
        "expression: (SELECT b.REGNOX FROM E_BASEINFO b",
    );
    let env = Env::custom(vec![SourceDef {
        name: "aic_city".to_owned(),
        bureau: "aic".to_owned(),
        division: "150300".to_owned(),
        capture: "mode: changelog".to_owned(),
        connection: db.conn.clone(),
        mappings: dir.path().join("mappings/aic"),
    }])
    .await;
    let online = || {
        run(ebis(&root())
            .arg("--config")
            .arg(env.config_path())
            .args(["check", "--online"]))
    };
    let out = online();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let file = dir.path().join("mappings/aic/aic_annual_inspection.yaml");
    let (line, col) = line_col(
        &dir,
        "mappings/aic/aic_annual_inspection.yaml",
        "(SELECT b.REGNOX",
    );
    let want = format!(
        "source aic_city: error: {}:{line}:{col} field `reg_no`: the source cannot evaluate this expression",
        file.display()
    );
    assert!(
        out.stdout.contains(&want),
        "want {want}\ngot {}",
        out.stdout
    );

    // Fixed; another expression reads a helper table a DBA later drops. The source stops
    // with the mapping's place, not a bare server error.
    edit(
        &dir,
        "mappings/aic/aic_annual_inspection.yaml",
        "(SELECT b.REGNOX FROM",
        "(SELECT b.REGNO FROM",
    );
    edit(
        &dir,
        "mappings/aic/aic_establishment.yaml",
        "concat: [INDUSTRYPHY, INDUSTRYCO]",
        "expression: (SELECT MAX(h.MC) FROM HY_DM h WHERE h.DM = E_BASEINFO.INDUSTRYCO)",
    );
    assert_eq!(online().code, 0);
    let running = env.start();
    let mut rng = Rng::new(3);
    db.exec(&aic_insert(1, &mut rng)).await;
    env.wait_count(
        "select count(*) from exchange.aic_establishment",
        1,
        Duration::from_secs(30),
    )
    .await;
    db.exec("DROP TABLE HY_DM").await;
    db.exec(&aic_insert(2, &mut rng)).await;
    env.wait_count(
        "select count(*) from ebis.source_status where state = 'failed'",
        1,
        Duration::from_secs(30),
    )
    .await;
    let failed = running.stop().await;
    let (line, col) = line_col(
        &dir,
        "mappings/aic/aic_establishment.yaml",
        "(SELECT MAX(h.MC)",
    );
    let place = format!(
        "{}:{line}:{col} field `industry_code`",
        dir.path()
            .join("mappings/aic/aic_establishment.yaml")
            .display()
    );
    assert!(
        failed.iter().any(|(_, e)| e.contains(&place)),
        "want {place} in {failed:?}"
    );
}

#[test]
fn check_tells_a_dba_what_is_meant_and_what_cannot_run() {
    let dir = project();
    edit(
        &dir,
        "mappings/ntax/tax_penalty.yaml",
        "record_kind: tax_penalty",
        "record_kind: tax_punishment",
    );
    edit(
        &dir,
        "mappings/aic/aic_establishment.yaml",
        "    column: REGNO\n    transforms: [identifier]",
        "    column: REGNO",
    );
    let long = "E_".to_owned() + &"X".repeat(58);
    edit(
        &dir,
        "mappings/qts/qts_code_change.yaml",
        "  table: T_JGDM_BG",
        &format!("  table: {long}"),
    );
    let out = run(ebis(dir.path()).arg("check"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let (line, col) = line_col(&dir, "mappings/ntax/tax_penalty.yaml", "tax_punishment");
    let want = format!(
        "mappings/ntax/tax_penalty.yaml:{line}:{col}: error: unknown record kind `tax_punishment` (did you mean `tax_penalty`?); the record kinds of bureau ntax: tax_registration"
    );
    assert!(
        out.stderr.contains(&want),
        "want {want}\ngot {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "warning: field `reg_no` holds an identifier but has no `identifier` transform"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "error: table name {long} is too long for a trigger name"
        )),
        "{}",
        out.stderr
    );

    // An empty config, and library wording said in the writer's terms.
    std::fs::write(dir.path().join("pipeline.yaml"), "").expect("empty");
    let out = run(ebis(dir.path()).arg("check"));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no sources") && out.stderr.contains("no warehouse"),
        "{}",
        out.stderr
    );
    std::fs::write(
        dir.path().join("pipeline.yaml"),
        "batch_size: lots\npoll_interval: 1s\npoll_interval: 2s\n",
    )
    .expect("config");
    let out = run(ebis(dir.path()).arg("check"));
    assert!(
        !out.stderr.contains("invalid u64") && !out.stderr.contains("DuplicateKeyPolicy"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("`poll_interval` is written twice here")
            || out.stderr.contains("expected a whole number"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_warns_of_a_date_read_from_text_without_its_format() {
    use crate::support::harness::{Env, SourceDef};
    use crate::support::mysql::{MyDb, bureau_schema};
    let dir = project();
    edit(
        &dir,
        "mappings/ltax/tax_registration.yaml",
        "    transforms: [{null_if: ['', '00000000']}, {date: YYYYMMDD}]",
        "    transforms: [{null_if: ['', '00000000']}]",
    );
    let db = MyDb::create(&bureau_schema("ltax")).await;
    let env = Env::custom(vec![SourceDef {
        name: "ltax_hbw".to_owned(),
        bureau: "ltax".to_owned(),
        division: "150302".to_owned(),
        capture: "mode: timestamp".to_owned(),
        connection: db.conn.clone(),
        mappings: dir.path().join("mappings/ltax"),
    }])
    .await;
    let out = run(ebis(&root())
        .arg("--config")
        .arg(env.config_path())
        .args(["check", "--online"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("source ltax_hbw: warning: ")
            && out.stdout.contains(
                "field `registered_on` reads column KYDJRQ (char) as a date without a `date` transform"
            ),
        "{}",
        out.stdout
    );
}

#[test]
fn the_oracle_example_checks_clean_and_its_setup_is_pl_sql() {
    let dir = root().join("examples/oracle");
    let out = run(ebis(&dir).args(["--config", "pipeline.yaml", "check"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("ok: 2 mapping file(s) checked"),
        "{}",
        out.stdout
    );
    let out = run(ebis(&dir).args(["--config", "pipeline.yaml", "setup-source", "ltax_city"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for line in [
        "--   DJDB.DJ_JL_ZXDJ: ORA_ROWSCN",
        "--   GRANT SELECT ON \"DJDB\".\"DJ_JL_JBSJ\" TO \"EBIS_READER\";",
        "--   GRANT FLASHBACK ON \"DJDB\".\"DJ_JL_JBSJ\" TO \"EBIS_READER\";",
    ] {
        assert!(out.stdout.contains(line), "{line} in:\n{}", out.stdout);
    }
    // In changelog mode: the change table, the key package, one trigger per table.
    let tmp = TempDir::new("ebis_ora");
    let text = std::fs::read_to_string(dir.join("pipeline.yaml")).expect("example");
    let changelog = text.replacen("mode: timestamp\n      overlap: 30s", "mode: changelog", 1);
    assert_ne!(changelog, text);
    std::fs::write(tmp.path().join("pipeline.yaml"), changelog).expect("write");
    copy_dir(&dir.join("mappings"), &tmp.path().join("mappings"));
    let mapping = tmp.path().join("mappings/ltax/tax_deregistration.yaml");
    let m = std::fs::read_to_string(&mapping).expect("mapping");
    std::fs::write(&mapping, m.replace("  modified_column: ORA_ROWSCN\n", "")).expect("write");
    let out = run(ebis(tmp.path()).args(["setup-source", "ltax_city"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for line in [
        "EXECUTE IMMEDIATE 'CREATE TABLE \"DJDB\".\"EBIS_CHANGE\" (",
        "CREATE OR REPLACE PACKAGE BODY \"DJDB\".\"EBIS_KEY\" AS",
        "CREATE OR REPLACE TRIGGER \"DJDB\".\"EBIS_DJ_JL_JBSJ_CAP\"",
        "AFTER INSERT OR UPDATE OR DELETE ON \"DJDB\".\"DJ_JL_ZXDJ\"",
        "--   GRANT SELECT ON SYS.GV_$TRANSACTION TO \"EBIS_READER\";",
    ] {
        assert!(out.stdout.contains(line), "{line} in:\n{}", out.stdout);
    }
    let out = run(ebis(tmp.path()).args(["setup-source", "ltax_city", "--remove"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("EXECUTE IMMEDIATE 'DROP TABLE \"DJDB\".\"EBIS_CHANGE\" PURGE';"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_oracle_client_library_every_command_says_what_to_install() {
    use crate::support::harness::{Env, SourceDef};
    let env = Env::custom_in(
        "oracle",
        vec![SourceDef {
            name: "ltax_city".to_owned(),
            bureau: "ltax".to_owned(),
            division: "150300".to_owned(),
            capture: "mode: timestamp".to_owned(),
            connection: ebis::config::ConnectionConfig {
                url: "oracle://ebis_reader@127.0.0.1:1/LTAXPDB".to_owned(),
                password_env: None,
                password_file: None,
                tls: Default::default(),
            },
            mappings: root().join("examples/oracle/mappings/ltax"),
        }],
    )
    .await;
    // An empty directory as the client's: no library, even where one is installed.
    let empty = TempDir::new("ebis_no_client");
    let cmd = |args: &[&str]| {
        let mut c = ebis(&root());
        c.env("EBIS_ORACLE_CLIENT_DIR", empty.path())
            .arg("--config")
            .arg(env.config_path())
            .args(args);
        c
    };
    let says_what_to_install = |text: &str| {
        text.contains("ltax_city")
            && text.contains("Oracle Instant Client 19c or later")
            && text.contains("EBIS_ORACLE_CLIENT_DIR")
    };
    let out = run(&mut cmd(&["check", "--online"]));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(says_what_to_install(&out.stdout), "{}", out.stdout);
    // `run` stops the source with that error, and `status` shows it.
    let out = run(&mut cmd(&["run"]));
    assert!(
        says_what_to_install(&format!("{}{}", out.stdout, out.stderr)),
        "run: {}{}",
        out.stdout,
        out.stderr
    );
    let out = run(&mut cmd(&["status"]));
    assert_eq!(
        out.code, 3,
        "a failed source: exit 3\n{}{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout.contains("failed: ltax_city (exit 3)"),
        "{}",
        out.stdout
    );
    assert!(
        says_what_to_install(&out.stdout),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let out = run(&mut cmd(&["verify"]));
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        says_what_to_install(&out.stderr),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_refuses_an_account_limited_below_the_connections_ebis_holds() {
    use crate::support::harness::{AIC_CHANGELOG, Env};
    let env = Env::new(&[&AIC_CHANGELOG]).await;
    let aic = env.db("aic_city");
    let config = std::fs::read_to_string(env.config_path()).expect("config");
    let check_as = |url: &str| {
        std::fs::write(env.config_path(), config.replace(&aic.url, url)).expect("config");
        check_online(&env.config_path())
    };
    let (_two, two) = aic.reader_limited(Some(2)).await;
    let out = check_as(&two.url);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("source aic_city: error: ")
            && out.stdout.contains(
                "this account may hold only 2 connection(s) at once (MAX_USER_CONNECTIONS)"
            )
            && out
                .stdout
                .contains("raise the account's limit to at least 4"),
        "{}",
        out.stdout
    );
    let (_four, four) = aic.reader_limited(Some(4)).await;
    let out = check_as(&four.url);
    assert_eq!(out.code, 0, "a limit of 4 is enough: {}", out.stdout);
    let (_none, unlimited) = aic.reader().await;
    assert_eq!(check_as(&unlimited.url).code, 0, "no limit");
}

/// `ebis --config <config> check --online`.
pub(crate) fn check_online(config: &std::path::Path) -> crate::support::Ran {
    run(ebis(&root()).args([
        "--config".as_ref(),
        config.as_os_str(),
        "check".as_ref(),
        "--online".as_ref(),
    ]))
}
