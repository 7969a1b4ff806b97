//! The shape of `pipeline.yaml` as written (serde, unknown keys refused, spans kept) and
//! its validation into a [`PipelineConfig`]: every problem found, each with its
//! `file:line:column` and key, before any is reported. No I/O beyond what the caller read.

use super::{CaptureMode, ConnectionConfig, Dialect, PipelineConfig, SourceConfig, parse_duration};
use crate::diagnostic::Diagnostics;
use crate::indicators::Bureau;
use crate::secret::url_has_password;
use crate::yaml::{Spanned, at};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    warehouse: Option<RawConnection>,
    poll_interval: Option<Spanned<String>>,
    batch_size: Option<Spanned<u64>>,
    compare: Option<RawCompare>,
    metrics: Option<RawMetrics>,
    time_zone: Option<Spanned<String>>,
    lease_ttl: Option<Spanned<String>>,
    #[serde(default)]
    sources: Vec<Spanned<RawSource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    url: Spanned<String>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    mode: Spanned<String>,
    ca_file: Option<Spanned<String>>,
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompare {
    every: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    bureau: Spanned<String>,
    division: Spanned<String>,
    covers: Option<Vec<Spanned<String>>>,
    dialect: Spanned<String>,
    connection: RawConnection,
    capture: RawCapture,
    mappings: Spanned<String>,
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    mode: Spanned<String>,
    gap_timeout: Option<Spanned<String>>,
    gap_watch: Option<Spanned<String>>,
    overlap: Option<Spanned<String>>,
    key_scan_every: Option<Spanned<String>>,
    modified_column: Option<Spanned<String>>,
    purge_every: Option<Spanned<String>>,
    server_id: Option<Spanned<u64>>,
    slot: Option<Spanned<String>>,
    publication: Option<Spanned<String>>,
}

struct Checker<'a> {
    path: &'a Path,
    found: Diagnostics,
    /// The config's folder: relative paths in it are read from there.
    base: &'a Path,
}

impl Checker<'_> {
    fn error<T>(&mut self, value: &Spanned<T>, message: impl Into<String>) {
        self.found.push(at(self.path, value, message));
    }

    fn duration(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(v) = value else { return default };
        match parse_duration(&v.value) {
            Some(d) if !d.is_zero() => d,
            _ => {
                self.error(
                    v,
                    format!(
                        "`{key}`: `{}` is not a duration (write e.g. 500ms, 5s, 1m30s, 10m, 1h)",
                        v.value
                    ),
                );
                default
            }
        }
    }

    fn connection(&mut self, raw: RawConnection, what: &str) -> ConnectionConfig {
        if url_has_password(&raw.url.value) {
            self.error(
                &raw.url,
                format!("`{what}.url` contains a password: remove it and name the environment variable that holds it in `{what}.password_env`"),
            );
        }
        if let Some(env) = &raw.password_env
            && !is_env_name(&env.value)
        {
            self.error(
                env,
                format!(
                    "`{what}.password_env`: `{}` is not an environment variable name",
                    env.value
                ),
            );
        }
        if let (Some(_), Some(file)) = (&raw.password_env, &raw.password_file) {
            self.error(
                file,
                format!("`{what}.password_file` and `{what}.password_env` both name a password: keep one"),
            );
        }
        if let Some(file) = &raw.password_file
            && file.value.trim().is_empty()
        {
            self.error(file, format!("`{what}.password_file` is empty"));
        }
        let tls = raw.tls.map(|t| self.tls(t, what)).unwrap_or_default();
        ConnectionConfig {
            url: raw.url.value,
            password_env: raw.password_env.map(|e| e.value),
            password_file: raw.password_file.map(|f| self.base.join(f.value)),
            tls,
        }
    }

    fn tls(&mut self, raw: RawTls, what: &str) -> ebis_source::tls::Tls {
        use ebis_source::tls::{Tls, TlsMode};
        let mode = TlsMode::from_name(&raw.mode.value).unwrap_or_else(|| {
            self.error(
                &raw.mode,
                format!(
                    "`{what}.tls.mode`: `{}` is not a TLS mode (disable, require, verify-ca or verify-full)",
                    raw.mode.value
                ),
            );
            TlsMode::Disable
        });
        if matches!(mode, TlsMode::VerifyCa | TlsMode::VerifyFull) && raw.ca_file.is_none() {
            self.error(
                &raw.mode,
                format!(
                    "`{what}.tls.mode` {} checks the server's certificate: name the CA that signs it in `{what}.tls.ca_file`",
                    mode.name()
                ),
            );
        }
        if raw.cert_file.is_some() != raw.key_file.is_some() {
            let place = raw
                .cert_file
                .as_ref()
                .or(raw.key_file.as_ref())
                .unwrap_or(&raw.mode);
            self.error(
                place,
                format!("`{what}.tls`: a client certificate needs both `cert_file` and `key_file`"),
            );
        }
        let file = |f: Option<Spanned<String>>| f.map(|f| self.base.join(f.value));
        Tls {
            mode,
            ca_file: file(raw.ca_file),
            cert_file: file(raw.cert_file),
            key_file: file(raw.key_file),
        }
    }

    fn division(&mut self, value: &Spanned<String>, key: &str) {
        if !is_division(&value.value) {
            self.error(
                value,
                format!(
                    "`{key}`: `{}` is not a 6-digit administrative division code (e.g. 150302)",
                    value.value
                ),
            );
        }
    }
}

pub(super) fn validate(path: &Path, raw: RawConfig) -> Result<PipelineConfig, Diagnostics> {
    let base = path.parent().unwrap_or(Path::new(""));
    let mut c = Checker {
        path,
        found: Diagnostics::default(),
        base,
    };
    let warehouse = raw.warehouse.map(|w| c.connection(w, "warehouse"));
    let poll_interval = c.duration(
        raw.poll_interval.as_ref(),
        "poll_interval",
        Duration::from_secs(1),
    );
    let batch_size = match &raw.batch_size {
        None => 1000,
        Some(b) if (1..=100_000).contains(&b.value) => b.value as usize,
        Some(b) => {
            c.error(b, "`batch_size` must be between 1 and 100000");
            1000
        }
    };
    let compare_every = raw
        .compare
        .as_ref()
        .and_then(|cmp| cmp.every.as_ref())
        .map(|e| c.duration(Some(e), "compare.every", Duration::from_secs(3600)));
    let metrics_listen = raw.metrics.map(|m| {
        if m.listen.value.parse::<std::net::SocketAddr>().is_err() {
            c.error(
                &m.listen,
                format!(
                    "`metrics.listen`: `{}` is not an address like 127.0.0.1:9187",
                    m.listen.value
                ),
            );
        }
        m.listen.value
    });
    let time_zone = match &raw.time_zone {
        None => crate::zone::Zone::Local,
        Some(z) => crate::zone::Zone::parse(&z.value).unwrap_or_else(|| {
            c.error(
                z,
                format!(
                    "`time_zone`: `{}` is not a time zone ebis knows: write `local` (the machine's), `UTC`, or an offset such as +08:00",
                    z.value
                ),
            );
            crate::zone::Zone::Local
        }),
    };
    let lease_ttl = c.duration(raw.lease_ttl.as_ref(), "lease_ttl", Duration::from_secs(5));
    if let Some(l) = &raw.lease_ttl
        && lease_ttl < Duration::from_secs(2)
    {
        c.error(
            l,
            "`lease_ttl` must be at least 2s (a lease is renewed every fifth of it)",
        );
    }
    let mut sources: Vec<SourceConfig> = Vec::new();
    for spanned in raw.sources {
        let s = spanned.value;
        if !is_source_name(&s.name.value) {
            c.error(&s.name, format!("source name `{}` must be lower-case letters, digits and _ (start with a letter, at most 63)", s.name.value));
        } else if sources.iter().any(|o| o.name == s.name.value) {
            c.error(
                &s.name,
                format!("source name `{}` is used twice", s.name.value),
            );
        }
        let bureau = Bureau::from_code(&s.bureau.value).unwrap_or_else(|| {
            c.error(
                &s.bureau,
                format!(
                    "`bureau`: unknown bureau `{}` (expected aic, ntax, ltax or qts)",
                    s.bureau.value
                ),
            );
            Bureau::Aic
        });
        c.division(&s.division, "division");
        let covers = match &s.covers {
            None => vec![s.division.value.clone()],
            Some(list) => {
                if list.is_empty() {
                    c.error(
                        &s.name,
                        "`covers` is empty: list the divisions this source holds records for",
                    );
                }
                for d in list {
                    c.division(d, "covers");
                }
                list.iter().map(|d| d.value.clone()).collect()
            }
        };
        let dialect = Dialect::NAMES
            .iter()
            .find(|(n, _)| *n == s.dialect.value)
            .map(|(_, d)| *d)
            .unwrap_or_else(|| {
                c.error(&s.dialect, format!("`dialect`: unknown dialect `{}` (expected mysql, sqlserver, oracle or postgres)", s.dialect.value));
                Dialect::Mysql
            });
        let tls_place = s.connection.tls.as_ref().map(|t| t.mode.clone());
        let connection = c.connection(s.connection, "connection");
        if let Some(place) = &tls_place
            && matches!(dialect, Dialect::Sqlserver | Dialect::Oracle)
        {
            c.error(
                place,
                match dialect {
                    Dialect::Sqlserver => "`connection.tls`: SQL Server's TLS is set in its URL (`encrypt=true`, `ca=/path/to/ca.pem` or `trust_cert=true`)",
                    _ => "`connection.tls`: Oracle's TLS is set in its Oracle Net configuration (a TCPS address and a wallet), not here",
                },
            );
        }
        let capture = capture_mode(&mut c, &s.capture);
        if matches!(capture, CaptureMode::Binlog { .. }) && dialect != Dialect::Mysql {
            c.error(
                &s.capture.mode,
                format!(
                    "`capture.mode`: binlog is MySQL/MariaDB's binary log; a {} source captures with {}",
                    dialect.name(),
                    match dialect {
                        Dialect::Sqlserver => "changelog (triggers), timestamp or change_tracking",
                        Dialect::Postgres => "changelog (triggers), timestamp or logical",
                        _ => "changelog (triggers) or timestamp",
                    }
                ),
            );
        }
        if matches!(capture, CaptureMode::Logical { .. }) && dialect != Dialect::Postgres {
            c.error(
                &s.capture.mode,
                format!(
                    "`capture.mode`: logical is PostgreSQL's logical decoding; a {} source captures with {}",
                    dialect.name(),
                    match dialect {
                        Dialect::Sqlserver => "changelog (triggers), timestamp or change_tracking",
                        Dialect::Mysql => "changelog (triggers), timestamp or binlog",
                        _ => "changelog (triggers) or timestamp",
                    }
                ),
            );
        }
        if capture == CaptureMode::ChangeTracking && dialect != Dialect::Sqlserver {
            c.error(
                &s.capture.mode,
                format!(
                    "`capture.mode`: change_tracking is SQL Server's Change Tracking; a {} source captures with changelog (triggers) or timestamp",
                    dialect.name()
                ),
            );
        }
        let mappings_dir = base.join(&s.mappings.value);
        if !mappings_dir.is_dir() {
            c.error(
                &s.mappings,
                format!(
                    "`mappings`: folder `{}` does not exist",
                    mappings_dir.display()
                ),
            );
        }
        sources.push(SourceConfig {
            name: s.name.value.clone(),
            bureau,
            division: s.division.value.clone(),
            covers,
            dialect,
            connection,
            capture,
            mappings_dir,
            enabled: s.enabled.unwrap_or(true),
            mappings_place: (s.mappings.referenced.line(), s.mappings.referenced.column()),
        });
    }
    c.found.into_result(PipelineConfig {
        path: path.to_owned(),
        warehouse,
        poll_interval,
        batch_size,
        compare_every,
        metrics_listen,
        time_zone,
        lease_ttl,
        sources,
    })
}

fn capture_mode(c: &mut Checker<'_>, raw: &RawCapture) -> CaptureMode {
    if raw.mode.value != "binlog"
        && let Some(v) = &raw.server_id
    {
        c.error(v, "`capture.server_id` applies to binlog mode only");
    }
    if raw.mode.value != "logical" {
        for (v, key) in [(&raw.slot, "slot"), (&raw.publication, "publication")] {
            if let Some(v) = v {
                c.error(v, format!("`capture.{key}` applies to logical mode only"));
            }
        }
    }
    match raw.mode.value.as_str() {
        "changelog" => {
            for (v, key) in [
                (&raw.overlap, "overlap"),
                (&raw.key_scan_every, "key_scan_every"),
            ] {
                if let Some(v) = v {
                    c.error(v, format!("`capture.{key}` applies to timestamp mode only"));
                }
            }
            if let Some(v) = &raw.modified_column {
                c.error(
                    v,
                    "`capture.modified_column` applies to timestamp mode only",
                );
            }
            CaptureMode::Changelog {
                gap_timeout: c.duration(
                    raw.gap_timeout.as_ref(),
                    "capture.gap_timeout",
                    Duration::from_secs(600),
                ),
                gap_watch: c.duration(
                    raw.gap_watch.as_ref(),
                    "capture.gap_watch",
                    Duration::from_secs(3600),
                ),
                purge_every: raw
                    .purge_every
                    .as_ref()
                    .map(|v| c.duration(Some(v), "capture.purge_every", Duration::ZERO)),
            }
        }
        "timestamp" => {
            for (v, key) in [
                (&raw.gap_timeout, "gap_timeout"),
                (&raw.gap_watch, "gap_watch"),
                (&raw.purge_every, "purge_every"),
            ] {
                if let Some(v) = v {
                    c.error(v, format!("`capture.{key}` applies to changelog mode only"));
                }
            }
            if let Some(col) = &raw.modified_column
                && !crate::mapping::is_identifier(&col.value)
            {
                c.error(
                    col,
                    format!(
                        "`capture.modified_column`: `{}` is not a valid column name",
                        col.value
                    ),
                );
            }
            CaptureMode::Timestamp {
                overlap: c.duration(
                    raw.overlap.as_ref(),
                    "capture.overlap",
                    Duration::from_secs(5),
                ),
                key_scan_every: c.duration(
                    raw.key_scan_every.as_ref(),
                    "capture.key_scan_every",
                    Duration::from_secs(600),
                ),
                modified_column: raw.modified_column.as_ref().map(|m| m.value.clone()),
            }
        }
        "change_tracking" => {
            refuse_polling_keys(
                c,
                raw,
                "change_tracking mode (the server tracks changes itself)",
            );
            CaptureMode::ChangeTracking
        }
        "binlog" => {
            refuse_polling_keys(
                c,
                raw,
                "binlog mode (the server's binary log orders every change; it expires its own files)",
            );
            let server_id = raw.server_id.as_ref().and_then(|v| {
                match u32::try_from(v.value).ok().filter(|n| *n > 0) {
                    Some(n) => Some(n),
                    None => {
                        c.error(
                            v,
                            "`capture.server_id`: a replica id from 1 to 4294967295, unique among the server's replicas",
                        );
                        None
                    }
                }
            });
            CaptureMode::Binlog { server_id }
        }
        "logical" => {
            refuse_polling_keys(
                c,
                raw,
                "logical mode (the server's WAL orders every change; the slot keeps what ebis has not confirmed)",
            );
            let mut name = |v: &Option<Spanned<String>>, key: &str| {
                v.as_ref().and_then(|v| {
                    if is_source_name(&v.value) {
                        Some(v.value.clone())
                    } else {
                        c.error(
                            v,
                            format!(
                                "`capture.{key}`: `{}` is not a valid name (lower-case letters, digits and _, starting with a letter, at most 63)",
                                v.value
                            ),
                        );
                        None
                    }
                })
            };
            CaptureMode::Logical {
                slot: name(&raw.slot, "slot"),
                publication: name(&raw.publication, "publication"),
            }
        }
        other => {
            c.error(
                &raw.mode,
                format!("`capture.mode`: unknown mode `{other}` (expected changelog, timestamp, change_tracking, binlog or logical)"),
            );
            CaptureMode::Changelog {
                gap_timeout: Duration::from_secs(600),
                gap_watch: Duration::from_secs(3600),
                purge_every: None,
            }
        }
    }
}

/// A mode that keeps no change table and no modified-column mark refuses the keys of the
/// modes that do, each at its line, saying `why` it has no use for them.
fn refuse_polling_keys(c: &mut Checker<'_>, raw: &RawCapture, why: &str) {
    for (v, key) in [
        (&raw.gap_timeout, "gap_timeout"),
        (&raw.gap_watch, "gap_watch"),
        (&raw.purge_every, "purge_every"),
        (&raw.overlap, "overlap"),
        (&raw.key_scan_every, "key_scan_every"),
        (&raw.modified_column, "modified_column"),
    ] {
        if let Some(v) = v {
            c.error(v, format!("`capture.{key}` does not apply to {why}"));
        }
    }
}

fn is_source_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_division(s: &str) -> bool {
    s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
