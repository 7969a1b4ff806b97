//! `ebis check`: the offline check of a pipeline config and every mapping it uses, or of
//! mapping files and folders named directly; `online` adds what only the servers can tell.
//!
//! This module reads files and the environment only; it opens no connection.

mod online;

pub use online::{Probe, check_online};

use crate::config::PipelineConfig;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::indicators::Bureau;
use crate::mapping::{MappingSet, check_together, compile_file, mapping_files, unmapped_kinds};
use std::path::{Path, PathBuf};

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Errors: the check fails when there is any.
    pub errors: Diagnostics,
    /// Notes and warnings that do not fail the check.
    pub notes: Vec<String>,
    /// Mapping files compiled without error.
    pub mappings_ok: usize,
    /// The config, when one was checked and it loaded.
    pub config: Option<PipelineConfig>,
}

/// Checks a config file and the mapping folders of all its sources.
pub fn check_config(path: &Path) -> CheckReport {
    let mut report = CheckReport::default();
    let config = match PipelineConfig::load(path) {
        Ok(c) => c,
        Err(d) => {
            report.errors.extend(d);
            return report;
        }
    };
    if config.sources.is_empty() {
        report.errors.push(Diagnostic::file(
            path,
            "no sources: add a `sources:` list with at least one bureau database",
        ));
    }
    let warehouse_env = std::env::var(crate::config::WAREHOUSE_URL_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty());
    if config.warehouse.is_none() && warehouse_env.is_none() {
        report.errors.push(Diagnostic::file(
            path,
            format!(
                "no warehouse: add `warehouse: {{url: postgres://user@host/db, password_env: …}}`, or set {}",
                crate::config::WAREHOUSE_URL_ENV
            ),
        ));
    }
    for s in &config.sources {
        if let Err(e) = s.connection.password() {
            report
                .notes
                .push(format!("source {}: warning: {e}", s.name));
        }
        if !s.mappings_dir.is_dir() {
            continue; // already reported by the config check
        }
        match MappingSet::load_dir(&s.mappings_dir, Some(s.bureau)) {
            Ok(set) => {
                report.mappings_ok += set.mappings.len();
                for m in &set.mappings {
                    report
                        .notes
                        .extend(m.warnings.iter().map(Diagnostic::as_warning));
                }
                report.errors.extend(capture_scripts(s, &set));
                let missing = unmapped_kinds(s.bureau, &set.mappings);
                if !missing.is_empty() {
                    report.notes.push(format!(
                        "source {}: note: not mapped (no data will arrive for): {}",
                        s.name,
                        missing
                            .iter()
                            .map(|k| k.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            Err(d) => {
                let bad =
                    d.0.iter()
                        .map(|x| &x.path)
                        .collect::<std::collections::BTreeSet<_>>()
                        .len();
                if let Ok(files) = mapping_files(&s.mappings_dir) {
                    report.mappings_ok += files.len().saturating_sub(bad);
                }
                report.errors.extend(d);
            }
        }
    }
    report.config = Some(config);
    report
}

/// What the source's connector refuses to set up, at the mapping that asks for it: a
/// table whose trigger name would be too long, a key wider than the change table logs.
fn capture_scripts(cfg: &crate::config::SourceConfig, set: &MappingSet) -> Diagnostics {
    use crate::pipeline::connector;
    let mut found = Diagnostics::default();
    let plans = connector::plans(cfg, set);
    let capture = connector::capture(cfg);
    let mut seen = std::collections::BTreeSet::new();
    for m in &set.mappings {
        let Some(plan) = plans.iter().find(|p| p.table == m.table) else {
            continue;
        };
        if !seen.insert(plan.table.clone()) {
            continue;
        }
        let req = ebis_source::SetupRequest {
            source: &cfg.name,
            plans: std::slice::from_ref(plan),
            capture: &capture,
            reader: "ebis",
        };
        if let Err(e) = connector::setup::script(cfg, &req, false) {
            found.push(Diagnostic::file(
                &m.path,
                format!(
                    "{e}: {} capture cannot be installed on it",
                    cfg.capture.name()
                ),
            ));
        }
    }
    found
}

/// Checks mapping files and folders named on the command line. The bureau is taken from
/// the folder name when it is a bureau code (`mappings/ntax/…`).
pub fn check_paths(paths: &[PathBuf]) -> CheckReport {
    let mut report = CheckReport::default();
    for p in paths {
        let files = if p.is_dir() {
            match mapping_files(p) {
                Ok(f) => f,
                Err(d) => {
                    report.errors.push(d);
                    continue;
                }
            }
        } else if p.is_file() {
            vec![p.clone()]
        } else {
            report
                .errors
                .push(Diagnostic::file(p, "no such file or folder"));
            continue;
        };
        let mut compiled = Vec::new();
        for f in files {
            let bureau = f
                .parent()
                .and_then(|d| d.file_name())
                .and_then(|n| n.to_str())
                .and_then(Bureau::from_code);
            match compile_file(&f, bureau) {
                Ok(m) => {
                    report
                        .notes
                        .extend(m.warnings.iter().map(Diagnostic::as_warning));
                    compiled.push(m);
                }
                Err(d) => report.errors.extend(d),
            }
        }
        report.mappings_ok += compiled.len();
        report.errors.extend(check_together(&compiled));
    }
    report
}
