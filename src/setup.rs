//! `ebis setup-source`: what a bureau DBA runs so ebis can capture a source — printed for
//! review, or applied with a privileged account.

use crate::config::{CaptureMode, Dialect, SourceConfig};
use crate::mapping::MappingSet;
use crate::pipeline::plans;

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

/// Builds the setup of a source from its config and mappings.
pub fn setup_script(cfg: &SourceConfig, mappings: &MappingSet) -> Result<SetupScript, String> {
    if cfg.dialect != Dialect::Mysql {
        return Err(format!(
            "dialect {} has no setup script in this build yet (only mysql)",
            cfg.dialect.name()
        ));
    }
    let plans = plans(cfg, mappings);
    let reader = cfg
        .connection
        .url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .filter(|u| !u.contains('/'))
        .unwrap_or("ebis_reader");
    let mut script = format!(
        "-- ebis capture setup for source {} ({} {}), {} mode\n-- tables: {}\n\n",
        cfg.name,
        cfg.bureau.code(),
        cfg.bureau.label(),
        cfg.capture.name(),
        plans
            .iter()
            .map(|p| p.table.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let statements = match &cfg.capture {
        CaptureMode::Changelog { purge_every, .. } => {
            let stmts = ebis_mysql::changelog_statements(&plans)?;
            for s in &stmts {
                script.push_str(s);
                script.push_str(";\n\n");
            }
            script.push_str(&format!(
                "-- The account ebis reads with needs SELECT on the tables and on ebis_change:\n-- GRANT SELECT ON <database>.* TO '{reader}'@'<ebis host>';\n"
            ));
            script.push_str(&match purge_every {
                Some(every) => format!(
                    "\n-- capture.purge_every is {}: ebis deletes the ebis_change rows the warehouse has\n-- stored, so the account also needs:\n-- GRANT DELETE ON <database>.ebis_change TO '{reader}'@'<ebis host>';\n",
                    crate::status::human_seconds(every.as_secs_f64())
                ),
                None => "\n-- ebis does not delete from ebis_change (capture.purge_every is not set). Never purge\n-- it by age: changes ebis has not read yet would be lost while it is stopped. Delete\n-- only below the position `ebis status` shows (seq N, and below the first open gap).\n".to_owned(),
            });
            stmts
        }
        CaptureMode::Timestamp { .. } => {
            script.push_str(
                "-- Timestamp capture installs nothing. ebis polls each table's modified column:\n",
            );
            for p in &plans {
                script.push_str(&format!(
                    "--   {}: {}  (an index on ({}, {}) keeps polls cheap)\n",
                    p.table,
                    p.modified_column
                        .as_deref()
                        .unwrap_or("(none: set modified_column!)"),
                    p.modified_column.as_deref().unwrap_or("?"),
                    p.key.join(", ")
                ));
            }
            script.push_str(&format!(
                "-- The account needs SELECT on these tables:\n-- GRANT SELECT ON <database>.* TO '{reader}'@'<ebis host>';\n-- Deletes are found by comparing keys every capture.key_scan_every.\n"
            ));
            Vec::new()
        }
    };
    Ok(SetupScript {
        statements,
        script,
        plans,
    })
}

/// For a changelog source: what the printed script must add to move capture off ebis
/// triggers a rename left on a captured table (found with the source's own account; an
/// account that may not see triggers finds none, and the script says how to look).
pub async fn stale_capture_note(cfg: &SourceConfig, setup: &SetupScript) -> String {
    if !matches!(cfg.capture, CaptureMode::Changelog { .. }) || cfg.dialect != Dialect::Mysql {
        return String::new();
    }
    let password = match cfg.connection.password() {
        Ok(p) => p.map(|s| s.expose().to_owned()),
        Err(e) => return format!("\n-- Could not look for triggers a rename left: {e}\n"),
    };
    match ebis_mysql::find_stale_triggers(&cfg.connection.url, password.as_deref(), &setup.plans)
        .await
    {
        Ok(stale) if stale.is_empty() => format!(
            "\n-- No ebis triggers of other tables were found on the captured tables (an account\n-- without the TRIGGER privilege sees none; `--apply` looks again with {ADMIN_URL_ENV}).\n"
        ),
        Ok(stale) => {
            let mut out = String::from(
                "\n-- Captured tables carry ebis triggers of another name (a table was renamed with\n-- its triggers): after the statements above, drop them and relabel the changes\n-- they logged, so ebis reads those under the new name and loses none of them.\n",
            );
            for s in ebis_mysql::repair_statements(&stale) {
                out.push_str(&s);
                out.push_str(";\n");
            }
            out
        }
        Err(e) => format!("\n-- Could not look for triggers a rename left: {e}\n"),
    }
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
    let denied = ["denied", "(1142)", "(1044)", "(1227)", "(1419)"]
        .iter()
        .any(|m| error.contains(m));
    if !denied {
        return error;
    }
    if admin {
        format!(
            "{error}: the account in {ADMIN_URL_ENV} may not create tables or triggers in this database"
        )
    } else {
        format!(
            "{error}: source {}'s own account (a reader) may not create the change table or triggers. Run it as a DBA: {ADMIN_URL_ENV}='mysql://dba:password@host:3306/' ebis setup-source {} --apply (a URL without a database uses the source's; the variable is read only here and may carry the password), or give the DBA the script `ebis setup-source {}` prints",
            cfg.name, cfg.name, cfg.name
        )
    }
}

/// Runs a setup's statements on the source: with the privileged URL in
/// `EBIS_SOURCE_ADMIN_URL` when set, else with the source's own connection. Then moves
/// capture off ebis triggers a rename left on a captured table (dropped, and the changes
/// they logged relabeled); says which, one line each.
pub async fn apply_setup(cfg: &SourceConfig, setup: &SetupScript) -> Result<Vec<String>, String> {
    let (url, password, admin) = setup_account(cfg)?;
    match cfg.dialect {
        Dialect::Mysql => ebis_mysql::run_statements(
            &url,
            password.as_deref(),
            &setup.statements,
            &setup.plans,
        )
        .await
        .map(|stale| {
            stale
                .iter()
                .map(|s| {
                    format!(
                        "dropped trigger {} on {} (it logged changes as {}); its logged changes now read as {}",
                        s.trigger,
                        s.table,
                        s.logs_as.as_deref().unwrap_or("?"),
                        s.table
                    )
                })
                .collect()
        })
        .map_err(|e| explain_denied(cfg, e.to_string(), admin)),
        other => Err(format!(
            "dialect {} has no setup in this build yet",
            other.name()
        )),
    }
}

/// The statements that remove a changelog source's capture (its triggers, then the change
/// table), as a script to show, or run with [`apply_removal`].
pub fn removal_script(cfg: &SourceConfig, mappings: &MappingSet) -> Result<SetupScript, String> {
    if cfg.dialect != Dialect::Mysql {
        return Err(format!(
            "dialect {} has no setup script in this build yet (only mysql)",
            cfg.dialect.name()
        ));
    }
    let plans = plans(cfg, mappings);
    let statements = ebis_mysql::removal_statements(&plans)?;
    let mut script = format!(
        "-- Removing ebis capture from source {} ({}): the triggers of {} table(s), then the\n-- change table. Changes ebis has not read yet are lost with it: stop `ebis run` first,\n-- and remove the source from the config (or its checkpoint, to capture it anew).\n\n",
        cfg.name,
        cfg.bureau.code(),
        plans.len()
    );
    for s in &statements {
        script.push_str(s);
        script.push_str(";\n");
    }
    Ok(SetupScript {
        statements,
        script,
        plans,
    })
}

/// Runs a removal (with the same account rules as [`apply_setup`]).
pub async fn apply_removal(cfg: &SourceConfig, removal: &SetupScript) -> Result<(), String> {
    let (url, password, admin) = setup_account(cfg)?;
    ebis_mysql::run_statements(&url, password.as_deref(), &removal.statements, &[])
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
