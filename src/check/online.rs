//! `ebis check --online`: what the offline check cannot see. Each enabled source is
//! reached with its own account and checked as `ebis run` would before capturing — every
//! mapped table and column present, capture installed for its mode — and its head read;
//! the warehouse is reached, its migrations compared with this build, and its server's
//! settings printed with what an operator could change in them for speed.
//!
//! Reads only: it installs, migrates and applies nothing.

use crate::config::{self, PipelineConfig};
use crate::mapping::{Input, MappingSet, expression};
use crate::pipeline::{AnySource, plans};
use crate::warehouse::{self, Warehouse};
use ebis_source::Source;

/// One thing checked against a server.
#[derive(Debug)]
pub struct Probe {
    /// `source <name>` or `warehouse`.
    pub what: String,
    /// What was found, or what is wrong.
    pub outcome: Result<String, String>,
    /// What a reviewer should know either way (expressions that read other tables).
    pub notes: Vec<String>,
}

/// Date fields read from text columns without a `date` transform: only `YYYY-MM-DD` text
/// converts, so a bureau's `YYYYMMDD` or `2006/3/1` would all go to quarantine.
async fn dates_read_as_text(source: &mut AnySource, mappings: &MappingSet) -> Vec<String> {
    let mut notes = Vec::new();
    for m in &mappings.mappings {
        let Ok(types) = source.column_types(&m.table).await else {
            continue;
        };
        for (field, spec) in m.kind.fields.iter().zip(&m.fields) {
            let Some(spec) = spec else { continue };
            let Input::Column(column) = &spec.input else {
                continue;
            };
            if field.ty != crate::indicators::FieldType::Date
                || spec
                    .transforms
                    .iter()
                    .any(|t| matches!(t, crate::mapping::Transform::Date(_)))
            {
                continue;
            }
            let ty = types
                .iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(column))
                .map(|(_, t)| t.to_ascii_lowercase());
            if let Some(ty) = ty
                && matches!(
                    ty.as_str(),
                    "char" | "varchar" | "text" | "tinytext" | "mediumtext" | "longtext"
                )
            {
                notes.push(format!(
                    "warning: {} field `{}` reads column {column} ({ty}) as a date without a `date` transform: only YYYY-MM-DD text converts, other rows go to quarantine (add e.g. `{{date: YYYYMMDD}}`)",
                    m.path.display(),
                    field.name
                ));
            }
        }
    }
    notes
}

/// For reviewers: every expression field that reads a table other than its mapping's own,
/// as `<file> field `<field>` (expression) reads <tables>`.
pub fn expression_reach(mappings: &MappingSet) -> Vec<String> {
    let mut notes = Vec::new();
    for m in &mappings.mappings {
        let file = m
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let named = m
            .kind
            .fields
            .iter()
            .zip(&m.fields)
            .filter_map(|(f, spec)| spec.as_ref().map(|s| (f.name, s)))
            .chain(m.division.as_ref().map(|s| ("division", s)));
        for (field, spec) in named {
            let Input::Expression { sql, .. } = &spec.input else {
                continue;
            };
            let others: Vec<String> = expression::tables_read(sql)
                .into_iter()
                .filter(|t| !t.eq_ignore_ascii_case(&m.table))
                .collect();
            if !others.is_empty() {
                notes.push(format!(
                    "{file} field `{field}` (expression) reads {}",
                    others.join(", ")
                ));
            }
        }
    }
    notes
}

/// Checks every enabled source and the warehouse (the config has passed the offline check).
pub async fn check_online(config: &PipelineConfig) -> Vec<Probe> {
    let mut probes = Vec::new();
    for cfg in config.sources.iter().filter(|s| s.enabled) {
        let mut notes = Vec::new();
        let outcome = match MappingSet::load_dir(&cfg.mappings_dir, Some(cfg.bureau)) {
            Err(d) => Err(d.to_string()),
            Ok(mappings) => {
                notes = expression_reach(&mappings);
                let plans = plans(cfg, &mappings);
                let tables = plans.len();
                // A check reads only: it makes nothing at the source (a missing
                // replication slot is reported, not made).
                match AnySource::open(cfg, plans).map(AnySource::reading_only) {
                    Err(e) => Err(e.to_string()),
                    Ok(mut source) => {
                        let checked = source.check().await;
                        if checked.is_ok() {
                            notes.extend(dates_read_as_text(&mut source, &mappings).await);
                            match source.capture_notes().await {
                                Ok(n) => notes.extend(n),
                                Err(e) => notes.push(format!(
                                    "warning: how the server serves {} capture could not be read: {e}",
                                    cfg.capture.name()
                                )),
                            }
                        }
                        let result = match checked {
                            Ok(()) => source.head().await.map(|head| {
                                format!(
                                    "{tables} table(s) readable with every mapped column, {} capture installed; head: {}",
                                    cfg.capture.name(),
                                    head.summary()
                                )
                            }),
                            Err(e) => Err(e),
                        };
                        source.close().await;
                        result.map_err(|e| e.to_string())
                    }
                }
            }
        };
        probes.push(Probe {
            what: format!("source {}", cfg.name),
            outcome,
            notes,
        });
    }
    let mut notes = Vec::new();
    let outcome = match config::resolve_warehouse(Some(config)) {
        Err(e) => Err(e),
        Ok(conn) => match Warehouse::new(&conn, 1) {
            Err(e) => Err(e.to_string()),
            Ok(wh) => match warehouse::pending(&wh).await {
                Err(e) => Err(e.to_string()),
                Ok(p) => {
                    notes = server_advice(&wh).await;
                    Ok(if p.is_empty() {
                        format!(
                            "{} reachable, all {} migrations applied",
                            conn.display_url(),
                            warehouse::MIGRATIONS.len()
                        )
                    } else {
                        format!(
                            "{} reachable, {} migration(s) pending ({}): `ebis migrate` or `ebis run` applies them",
                            conn.display_url(),
                            p.len(),
                            p.join(", ")
                        )
                    })
                }
            },
        },
    };
    probes.push(Probe {
        what: "warehouse".to_owned(),
        outcome,
        notes,
    });
    probes
}

/// The warehouse server's settings, and what an operator could change in them for speed
/// (`warehouse::ServerSettings::advice`); a failure to read them is a note, not an error.
async fn server_advice(wh: &Warehouse) -> Vec<String> {
    let read = async { warehouse::ServerSettings::read(&*wh.client().await?).await };
    match read.await {
        Ok(settings) => std::iter::once(format!("server: {}", settings.summary()))
            .chain(settings.advice())
            .collect(),
        Err(e) => vec![format!("the server's settings could not be read: {e}")],
    }
}
