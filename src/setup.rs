//! `ebis setup-source`: what a bureau DBA runs so ebis can capture a source — printed for
//! review, or applied with a privileged account.

use crate::config::SourceConfig;
use crate::mapping::MappingSet;
use crate::pipeline::connector::{self, plans};
use ebis_source::SetupRequest;

/// The environment variable holding a privileged URL for `setup-source --apply`.
pub const ADMIN_URL_ENV: &str = "EBIS_SOURCE_ADMIN_URL";

/// The statements to run for a source, and a script to show the DBA.
pub struct SetupScript {
    /// Statements to run, in order (empty for timestamp capture).
    pub statements: Vec<String>,
    /// A commented script: the statements plus grants and advice.
    pub script: String,
    /// The tables captured.
    pub plans: Vec<ebis_source::TablePlan>,
}

/// The account ebis reads a source with, from its URL (for the grants a script shows).
fn reader_of(cfg: &SourceConfig) -> &str {
    cfg.connection
        .url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .filter(|u| !u.contains('/'))
        .unwrap_or("ebis_reader")
}

/// Builds the setup (or, with `remove`, the removal) of a source from its config and
/// mappings: the connector renders its dialect's statements and grants.
fn build(cfg: &SourceConfig, mappings: &MappingSet, remove: bool) -> Result<SetupScript, String> {
    let plans = plans(cfg, mappings);
    let capture = connector::capture(cfg);
    let req = SetupRequest {
        source: &cfg.name,
        plans: &plans,
        capture: &capture,
        reader: reader_of(cfg),
    };
    let rendered = connector::setup::script(cfg, &req, remove)?;
    let header = if remove {
        format!(
            "-- Removing ebis capture from source {} ({} {}, {}).\n",
            cfg.name,
            cfg.bureau.code(),
            cfg.bureau.label(),
            cfg.dialect.name()
        )
    } else {
        format!(
            "-- ebis capture setup for source {} ({} {}, {}), {} mode\n-- tables: {}\n\n",
            cfg.name,
            cfg.bureau.code(),
            cfg.bureau.label(),
            cfg.dialect.name(),
            cfg.capture.name(),
            plans
                .iter()
                .map(|p| p.table.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok(SetupScript {
        statements: rendered.statements,
        script: header + &rendered.script,
        plans,
    })
}

/// Builds the setup of a source from its config and mappings.
pub fn setup_script(cfg: &SourceConfig, mappings: &MappingSet) -> Result<SetupScript, String> {
    build(cfg, mappings, false)
}

/// What the printed script must add, as the source's own account finds it: for a
/// changelog source, moving capture off triggers a rename left on a captured table.
pub async fn stale_capture_note(cfg: &SourceConfig, setup: &SetupScript) -> String {
    let capture = connector::capture(cfg);
    let req = SetupRequest {
        source: &cfg.name,
        plans: &setup.plans,
        capture: &capture,
        reader: reader_of(cfg),
    };
    connector::setup::review_note(cfg, &req).await
}

/// The account a setup runs with: the privileged URL in `EBIS_SOURCE_ADMIN_URL` when set
/// (a URL without a database means the source's), else the source's own connection.
fn setup_account(cfg: &SourceConfig) -> Result<(String, Option<String>, bool), String> {
    match std::env::var(ADMIN_URL_ENV) {
        Ok(u) if !u.trim().is_empty() => {
            let (scheme, rest) = u.split_once("://").unwrap_or(("mysql", u.as_str()));
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let has_db = !path.split('?').next().unwrap_or("").is_empty();
            let url = if has_db {
                u.clone()
            } else {
                let db = cfg
                    .connection
                    .url
                    .split("://")
                    .nth(1)
                    .and_then(|r| r.split_once('/'))
                    .map(|(_, p)| p.split('?').next().unwrap_or(""))
                    .unwrap_or("");
                let query = path.find('?').map(|i| &path[i..]).unwrap_or("");
                format!("{scheme}://{authority}/{db}{query}")
            };
            Ok((url, None, true))
        }
        _ => Ok((
            cfg.connection.url.clone(),
            cfg.connection.password()?.map(|s| s.expose().to_owned()),
            false,
        )),
    }
}

/// Says what to do when the account may not install capture.
fn explain_denied(cfg: &SourceConfig, error: String, admin: bool) -> String {
    if !connector::setup::denied(cfg, &error) {
        return error;
    }
    if admin {
        format!(
            "{error}: the account in {ADMIN_URL_ENV} may not create tables or triggers in this database"
        )
    } else {
        format!(
            "{error}: source {}'s own account (a reader) may not create the change table or triggers. Run it as a DBA: {ADMIN_URL_ENV}='{}' ebis setup-source {} --apply (a URL without a database uses the source's; the variable is read only here and may carry the password), or give the DBA the script `ebis setup-source {}` prints",
            cfg.name,
            connector::setup::admin_url_example(cfg),
            cfg.name,
            cfg.name
        )
    }
}

/// Runs a setup's statements on the source: with the privileged URL in
/// `EBIS_SOURCE_ADMIN_URL` when set, else with the source's own connection. Then moves
/// capture off ebis triggers a rename left on a captured table (dropped, and the changes
/// they logged relabeled); says which, one line each.
pub async fn apply_setup(cfg: &SourceConfig, setup: &SetupScript) -> Result<Vec<String>, String> {
    let (url, password, admin) = setup_account(cfg)?;
    connector::setup::apply(
        cfg,
        &url,
        password.as_deref(),
        &setup.statements,
        &setup.plans,
    )
    .await
    .map_err(|e| explain_denied(cfg, e.to_string(), admin))
}

/// The statements that remove a source's capture (changelog: its triggers, then the
/// change table), as a script to show, or run with [`apply_removal`].
pub fn removal_script(cfg: &SourceConfig, mappings: &MappingSet) -> Result<SetupScript, String> {
    build(cfg, mappings, true)
}

/// Runs a removal (with the same account rules as [`apply_setup`]).
pub async fn apply_removal(cfg: &SourceConfig, removal: &SetupScript) -> Result<(), String> {
    let (url, password, admin) = setup_account(cfg)?;
    connector::setup::apply(cfg, &url, password.as_deref(), &removal.statements, &[])
        .await
        .map(|_| ())
        .map_err(|e| explain_denied(cfg, e.to_string(), admin))
}

/// Installs capture on every enabled source of a config (what the demo, the benchmark and
/// the tests do once, as a DBA would with `setup-source --apply`).
pub async fn install_all(config: &crate::config::PipelineConfig) -> Result<(), String> {
    for s in config.sources.iter().filter(|s| s.enabled) {
        let m = MappingSet::load_dir(&s.mappings_dir, Some(s.bureau)).map_err(|d| d.to_string())?;
        let setup = setup_script(s, &m)?;
        if !setup.statements.is_empty() {
            apply_setup(s, &setup).await?;
        }
    }
    Ok(())
}
