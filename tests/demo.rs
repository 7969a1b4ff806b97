//! `ebis demo` as a newcomer runs it: private servers from the machine's binaries, the
//! simulated bureaus, the live pipeline, and a summary that says the warehouse equals
//! the sources; the ground truth is written.

use crate::support::{Ran, TempDir, ebis, root, run};

/// A 4-second demo of 150 enterprises in `dir`, with `extra` options.
fn short_demo(dir: &TempDir, extra: &[&str]) -> Ran {
    run(ebis(&root())
        .args([
            "demo",
            "--enterprises",
            "150",
            "--rate",
            "30",
            "--duration",
            "4s",
        ])
        .args(extra)
        .arg("--dir")
        .arg(dir.path()))
}

#[test]
fn a_short_demo_on_private_servers_ends_with_the_warehouse_equal_to_the_sources() {
    let dir = TempDir::new("ebis_demo");
    let out = short_demo(&dir, &["--seed", "9"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("22/22 record kinds agree"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("warehouse:  psql 'postgres://postgres@127.0.0.1:"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("servers stopped"), "{}", out.stdout);
    let truth =
        std::fs::read_to_string(dir.path().join("ground_truth.csv")).expect("ground truth written");
    let mut lines = truth.lines();
    assert_eq!(lines.next(), Some("rule,org_code,reg_no,name,injected"));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() > 5, "{truth}");
    assert!(rows.iter().any(|r| r.starts_with("unlicensed_business,")));
    // The config and mappings it ran with are left for the user to read.
    assert!(dir.path().join("pipeline.yaml").exists());
    assert!(
        dir.path()
            .join("mappings/ltax/tax_registration.yaml")
            .exists()
    );
    let check = run(ebis(dir.path()).arg("check"));
    assert_eq!(check.code, 0, "{}", check.stderr);
}

/// `ebis demo --capture binlog`: every bureau read from the server's binary log, nothing
/// installed on the bureaus' databases, and the warehouse still equals the sources.
#[test]
fn the_demo_in_binlog_mode_installs_nothing_on_the_bureaus_and_ends_equal() {
    let dir = TempDir::new("ebis_demo_binlog");
    let out = short_demo(&dir, &["--capture", "binlog", "--seed", "11"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("22/22 record kinds agree"),
        "{}",
        out.stdout
    );
    let config = std::fs::read_to_string(dir.path().join("pipeline.yaml")).expect("config");
    assert_eq!(config.matches("mode: binlog").count(), 4, "{config}");
    assert!(!config.contains("mode: changelog"), "{config}");
}
