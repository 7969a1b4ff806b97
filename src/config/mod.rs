//! The pipeline configuration (`pipeline.yaml`): parsed, then validated into a value the
//! rest of the program can trust.
//!
//! Validation is complete before anything runs: every problem is reported with its
//! `file:line:column` and key. Passwords are never in this file — a source names the
//! environment variable that holds its password, and a URL with a password is refused.
//! This module reads files and the environment only; it opens no connection. The file's
//! shape and its checks live in `validate`.

mod validate;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::indicators::Bureau;
use crate::secret::{Secret, redact_url, url_has_password};
use crate::yaml;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that overrides the configured warehouse URL.
pub const WAREHOUSE_URL_ENV: &str = "EBIS_WAREHOUSE_URL";

/// The validated pipeline configuration.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The warehouse connection, when configured (see [`resolve_warehouse`]).
    pub warehouse: Option<ConnectionConfig>,
    /// How long a source waits between polls when it is caught up.
    pub poll_interval: Duration,
    /// Most changes read and applied in one warehouse transaction.
    pub batch_size: usize,
    /// How often `ebis run` refreshes the consistency findings; `None`: only on demand.
    pub compare_every: Option<Duration>,
    /// Where to serve `/metrics` and `/healthz`; `None`: not served.
    pub metrics_listen: Option<String>,
    /// The time zone `status` and other output show times in (the machine's by default).
    pub time_zone: crate::zone::Zone,
    /// How long a process's lease of a source lasts unless renewed: a standby `ebis run`
    /// takes a source over this long after its holder died or lost the warehouse.
    pub lease_ttl: Duration,
    /// The sources, in file order.
    pub sources: Vec<SourceConfig>,
}

/// A database connection: a URL without password, and where the password is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The URL (never carries a password).
    pub url: String,
    /// The environment variable holding the password, if the account has one.
    pub password_env: Option<String>,
    /// The file holding the password (instead of `password_env`): read at start and at
    /// every new connection, so a rotated password is picked up without a restart.
    pub password_file: Option<PathBuf>,
    /// TLS (`tls:`; off by default).
    pub tls: ebis_source::tls::Tls,
}

impl ConnectionConfig {
    /// The password, read now from its environment variable or file.
    pub fn password(&self) -> Result<Option<Secret>, String> {
        if let Some(file) = &self.password_file {
            return Secret::from_file(file).map(Some);
        }
        match &self.password_env {
            None => Ok(None),
            Some(var) => Secret::from_env(var)
                .map(Some)
                .ok_or_else(|| format!("environment variable {var} (the password) is not set")),
        }
    }

    /// The URL as it may be shown.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// An account given outside a config file (a command-line flag, a test variable):
    /// `url` must not carry the password — command lines are visible to every user of
    /// the machine — which comes from `password_env` when that variable is set.
    pub fn from_url(url: &str, password_env: &str, what: &str) -> Result<Self, String> {
        if url_has_password(url) {
            return Err(format!(
                "{what} {}: remove the password from the URL and put it in the environment variable {password_env}",
                redact_url(url)
            ));
        }
        Ok(ConnectionConfig {
            url: url.to_owned(),
            password_env: std::env::var_os(password_env).map(|_| password_env.to_owned()),
            password_file: None,
            tls: Default::default(),
        })
    }

    /// The same account on database `db` (`scheme://authority/db?query`).
    pub fn with_database(&self, db: &str) -> ConnectionConfig {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("", &self.url));
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let query = rest.find('?').map(|i| &rest[i..]).unwrap_or("");
        ConnectionConfig {
            url: format!("{scheme}://{authority}/{db}{query}"),
            ..self.clone()
        }
    }

    /// As a pipeline config writes it: `url:` and, when there is one, `password_env:`,
    /// each line indented by `indent`.
    pub fn to_yaml(&self, indent: &str) -> String {
        let mut out = format!("{indent}url: {}\n", self.url);
        if let Some(var) = &self.password_env {
            out.push_str(&format!("{indent}password_env: {var}\n"));
        }
        if let Some(file) = &self.password_file {
            out.push_str(&format!("{indent}password_file: '{}'\n", file.display()));
        }
        if self.tls != ebis_source::tls::Tls::default() {
            out.push_str(&format!(
                "{indent}tls:\n{indent}  mode: {}\n",
                self.tls.mode.name()
            ));
            for (key, file) in [
                ("ca_file", &self.tls.ca_file),
                ("cert_file", &self.tls.cert_file),
                ("key_file", &self.tls.key_file),
            ] {
                if let Some(f) = file {
                    out.push_str(&format!("{indent}  {key}: '{}'\n", f.display()));
                }
            }
        }
        out
    }
}

/// The database product of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// MySQL or MariaDB (and MySQL-compatible products).
    Mysql,
    /// Microsoft SQL Server.
    Sqlserver,
    /// Oracle.
    Oracle,
    /// PostgreSQL and derivatives.
    Postgres,
}

impl Dialect {
    const NAMES: [(&'static str, Dialect); 4] = [
        ("mysql", Dialect::Mysql),
        ("sqlserver", Dialect::Sqlserver),
        ("oracle", Dialect::Oracle),
        ("postgres", Dialect::Postgres),
    ];

    /// The name used in the config.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, d)| *d == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// How a source's changes are captured.
#[derive(Clone, Debug, PartialEq)]
pub enum CaptureMode {
    /// A change table filled by triggers; gaps are awaited up to `gap_timeout`.
    Changelog {
        /// How long a skipped sequence number is awaited before it is given up (stops
        /// holding lag back).
        gap_timeout: Duration,
        /// How long a given-up gap is still watched: a transaction that commits within
        /// it is read then (a late fill).
        gap_watch: Duration,
        /// How often ebis deletes the change-table rows the warehouse has confirmed;
        /// `None`: never (the DBA purges).
        purge_every: Option<Duration>,
    },
    /// A last-modified column, re-read with an overlap; deletes found by key comparison.
    Timestamp {
        /// How far back each poll re-reads, for transactions that commit late.
        overlap: Duration,
        /// How often all keys are compared with the warehouse to find deletes.
        key_scan_every: Duration,
        /// The last-modified column when a mapping does not name its own.
        modified_column: Option<String>,
    },
    /// SQL Server Change Tracking: the server records which rows changed.
    ChangeTracking,
    /// MySQL/MariaDB's row-based binary log, read as a replica reads it.
    Binlog {
        /// The replica id ebis registers with; `None`: derived from the source's name.
        server_id: Option<u32>,
    },
    /// PostgreSQL's logical decoding: a publication and a replication slot.
    Logical {
        /// The slot's name; `None`: `ebis_<source>`.
        slot: Option<String>,
        /// The publication's name; `None`: `ebis_<source>`.
        publication: Option<String>,
    },
}

impl CaptureMode {
    /// `changelog`, `timestamp`, `change_tracking`, `binlog` or `logical`.
    pub fn name(&self) -> &'static str {
        match self {
            CaptureMode::Changelog { .. } => "changelog",
            CaptureMode::Timestamp { .. } => "timestamp",
            CaptureMode::ChangeTracking => "change_tracking",
            CaptureMode::Binlog { .. } => "binlog",
            CaptureMode::Logical { .. } => "logical",
        }
    }
}

/// One bureau database.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Unique name; also the warehouse's `source` column.
    pub name: String,
    /// The bureau it belongs to.
    pub bureau: Bureau,
    /// The administrative division its records are tagged with.
    pub division: String,
    /// The divisions whose records it holds (coverage); defaults to `[division]`.
    pub covers: Vec<String>,
    /// Database product.
    pub dialect: Dialect,
    /// Connection.
    pub connection: ConnectionConfig,
    /// Capture mode.
    pub capture: CaptureMode,
    /// The folder of its mappings.
    pub mappings_dir: PathBuf,
    /// False: configured but not run.
    pub enabled: bool,
    /// Where `mappings:` was written, for diagnostics about the folder.
    pub mappings_place: (u64, u64),
}

impl PipelineConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<PipelineConfig, Diagnostics> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Diagnostic::file(path, format!("cannot read the config: {e}")))?;
        let raw: validate::RawConfig = yaml::parse(path, &text)?;
        validate::validate(path, raw)
    }

    /// A source by name.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// The warehouse connection to use: `EBIS_WAREHOUSE_URL` when set, else the config's.
pub fn resolve_warehouse(config: Option<&PipelineConfig>) -> Result<ConnectionConfig, String> {
    if let Ok(url) = std::env::var(WAREHOUSE_URL_ENV)
        && !url.trim().is_empty()
    {
        let configured = config.and_then(|c| c.warehouse.as_ref());
        return Ok(ConnectionConfig {
            url,
            password_env: configured.and_then(|w| w.password_env.clone()),
            password_file: configured.and_then(|w| w.password_file.clone()),
            tls: configured.map(|w| w.tls.clone()).unwrap_or_default(),
        });
    }
    config.and_then(|c| c.warehouse.clone()).ok_or_else(|| {
        format!(
            "no warehouse: set {WAREHOUSE_URL_ENV} or add `warehouse: {{url: …}}` to the config"
        )
    })
}

/// Parses a duration as people write it: `500ms`, `5s`, `1m30s`, `10m`, `1h 30m`, `2d`
/// (humantime's units; no bare numbers).
pub fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<PipelineConfig, Diagnostics> {
        let dir = std::env::temp_dir().join(format!("ebis-config-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("mappings/aic")).expect("dir");
        // A file of its own per call: tests run in parallel.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("p{n}.yaml"));
        std::fs::write(&path, text).expect("write");
        PipelineConfig::load(&path)
    }

    const GOOD: &str = "\
warehouse:
  url: postgres://ebis@127.0.0.1:5432/ebis
poll_interval: 500ms
batch_size: 2000
compare:
  every: 15m
sources:
  - name: aic_city
    bureau: aic
    division: 150300
    covers: [150302, 150303]
    dialect: mysql
    connection:
      url: mysql://ebis@127.0.0.1:3306/aic
      password_env: EBIS_AIC_PASSWORD
    capture:
      mode: changelog
      gap_timeout: 2m
    mappings: mappings/aic
";

    #[test]
    fn a_good_config_validates() {
        let cfg = load_text(GOOD).expect("valid");
        assert_eq!(cfg.poll_interval, Duration::from_millis(500));
        assert_eq!(cfg.batch_size, 2000);
        assert_eq!(cfg.compare_every, Some(Duration::from_secs(900)));
        let s = &cfg.sources[0];
        assert_eq!(s.division, "150300");
        assert_eq!(s.covers, ["150302", "150303"]);
        assert_eq!(
            s.capture,
            CaptureMode::Changelog {
                gap_timeout: Duration::from_secs(120),
                gap_watch: Duration::from_secs(3600),
                purge_every: None,
            }
        );
        assert!(s.enabled);
    }

    #[test]
    fn binlog_is_a_mysql_mode_with_an_optional_replica_id() {
        let binlog = |extra: &str| {
            GOOD.replace(
                "mode: changelog\n      gap_timeout: 2m",
                &format!("mode: binlog{extra}"),
            )
        };
        let cfg = load_text(&binlog("")).expect("valid");
        assert_eq!(
            cfg.sources[0].capture,
            CaptureMode::Binlog { server_id: None }
        );
        let cfg = load_text(&binlog("\n      server_id: 4711")).expect("valid");
        assert_eq!(
            cfg.sources[0].capture,
            CaptureMode::Binlog {
                server_id: Some(4711)
            }
        );
        let text = load_text(&binlog("\n      server_id: 0"))
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("`capture.server_id`: a replica id from 1"),
            "{text}"
        );
        let text = load_text(&binlog("\n      gap_timeout: 2m"))
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("`capture.gap_timeout` does not apply to binlog mode"),
            "{text}"
        );
        let text = load_text(&binlog("").replace("dialect: mysql", "dialect: oracle"))
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("binlog is MySQL/MariaDB's binary log; a oracle source"),
            "{text}"
        );
        let text = load_text(&GOOD.replace("gap_timeout: 2m", "server_id: 7"))
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("`capture.server_id` applies to binlog mode only"),
            "{text}"
        );
        // The id ebis takes when none is set: stable, in its own range, per source and URL.
        let id = crate::pipeline::binlog_server_id;
        let a = id("aic_city", "mysql://ebis@10.0.0.1:3306/aic");
        assert_eq!(a, id("aic_city", "mysql://ebis@10.0.0.1:3306/aic"));
        assert_ne!(a, id("aic_city2", "mysql://ebis@10.0.0.1:3306/aic"));
        assert_ne!(a, id("aic_city", "mysql://ebis@10.0.0.2:3306/aic"));
        assert_eq!(a & 0xff00_0000, 0x4500_0000);
    }

    #[test]
    fn purging_is_a_changelog_setting() {
        let purged =
            load_text(&GOOD.replace("gap_timeout: 2m", "gap_timeout: 2m\n      purge_every: 1m"))
                .expect("valid");
        assert_eq!(
            purged.sources[0].capture,
            CaptureMode::Changelog {
                gap_timeout: Duration::from_secs(120),
                gap_watch: Duration::from_secs(3600),
                purge_every: Some(Duration::from_secs(60)),
            }
        );
        let err = load_text(&GOOD.replace(
            "mode: changelog\n      gap_timeout: 2m",
            "mode: timestamp\n      purge_every: 1m",
        ))
        .expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains(":18:20: error: `capture.purge_every` applies to changelog mode only"),
            "{text}"
        );
        let err = load_text(&GOOD.replace(
            "gap_timeout: 2m",
            "gap_timeout: 2m\n      purge_every: often",
        ))
        .expect_err("invalid");
        assert!(
            err.to_string()
                .contains("`capture.purge_every`: `often` is not a duration"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let bad = GOOD
            .replace("bureau: aic", "bureau: tax")
            .replace("division: 150300", "division: 1503")
            .replace("mode: changelog", "mode: logminer")
            .replace("postgres://ebis@", "postgres://ebis:secret@");
        let err = load_text(&bad).expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains(":2:8: error: `warehouse.url` contains a password"),
            "{text}"
        );
        assert!(
            !text.contains("secret"),
            "the password must not be echoed: {text}"
        );
        assert!(
            text.contains(":9:13: error: `bureau`: unknown bureau `tax`"),
            "{text}"
        );
        assert!(text.contains(":10:15: error: `division`: `1503`"), "{text}");
        assert!(
            text.contains(":17:13: error: `capture.mode`: unknown mode `logminer`"),
            "{text}"
        );
        assert_eq!(err.0.len(), 4, "{text}");
    }

    #[test]
    fn a_password_file_is_read_from_beside_the_config_and_excludes_password_env() {
        let cfg = load_text(&GOOD.replace(
            "password_env: EBIS_AIC_PASSWORD",
            "password_file: secrets/aic",
        ))
        .expect("valid");
        let conn = &cfg.sources[0].connection;
        let file = conn.password_file.clone().expect("a file");
        assert_eq!(file, cfg.path.parent().expect("dir").join("secrets/aic"));
        std::fs::create_dir_all(file.parent().expect("dir")).expect("dir");
        std::fs::write(&file, "s3cret\r\n").expect("file");
        let pw = conn.password().expect("readable").expect("a password");
        assert_eq!(pw.expose(), "s3cret", "the line end is not part of it");
        std::fs::write(&file, "rotated\n").expect("file");
        let pw = conn.password().expect("readable").expect("a password");
        assert_eq!(pw.expose(), "rotated", "read again each time");
        std::fs::write(&file, "").expect("file");
        let err = conn.password().expect_err("empty");
        assert!(
            err.contains("is empty") && err.contains("secrets/aic"),
            "{err}"
        );
        std::fs::remove_file(&file).expect("rm");
        let err = conn.password().expect_err("missing");
        assert!(
            err.starts_with("password file ") && err.contains("secrets/aic"),
            "{err}"
        );
        let both = load_text(&GOOD.replace(
            "password_env: EBIS_AIC_PASSWORD",
            "password_env: EBIS_AIC_PASSWORD\n      password_file: /run/credentials/ebis/aic",
        ))
        .expect_err("invalid")
        .to_string();
        assert!(
            both.contains(":16:22: error: `connection.password_file` and `connection.password_env` both name a password"),
            "{both}"
        );
    }

    #[test]
    fn tls_is_set_per_connection_in_sslmode_terms() {
        use ebis_source::tls::TlsMode;
        let with_tls = |block: &str| {
            GOOD.replace(
                "      password_env: EBIS_AIC_PASSWORD",
                &format!("      password_env: EBIS_AIC_PASSWORD\n      tls:\n{block}"),
            )
        };
        let cfg = load_text(&with_tls(
            "        mode: verify-full\n        ca_file: tls/ca.pem\n        cert_file: tls/c.pem\n        key_file: tls/c.key",
        ))
        .expect("valid");
        let tls = &cfg.sources[0].connection.tls;
        assert_eq!(tls.mode, TlsMode::VerifyFull);
        let dir = cfg.path.parent().expect("dir");
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(dir.join("tls/ca.pem").as_path())
        );
        assert_eq!(
            tls.key_file.as_deref(),
            Some(dir.join("tls/c.key").as_path())
        );
        assert!(
            cfg.sources[0]
                .connection
                .to_yaml("  ")
                .contains("  tls:\n    mode: verify-full\n"),
            "written back as read"
        );
        let text = load_text(&with_tls("        mode: verify-full"))
            .expect_err("no CA")
            .to_string();
        assert!(text.contains(":17:15: error: `connection.tls.mode` verify-full checks the server's certificate: name the CA"), "{text}");
        let text = load_text(&with_tls("        mode: prefer"))
            .expect_err("mode")
            .to_string();
        assert!(
            text.contains(
                "`prefer` is not a TLS mode (disable, require, verify-ca or verify-full)"
            ),
            "{text}"
        );
        let text = load_text(&with_tls("        mode: require\n        cert_file: c.pem"))
            .expect_err("half")
            .to_string();
        assert!(
            text.contains(":18:20: error: `connection.tls`: a client certificate needs both"),
            "{text}"
        );
        let text = load_text(
            &with_tls("        mode: require").replace("dialect: mysql", "dialect: sqlserver"),
        )
        .expect_err("sqlserver")
        .to_string();
        assert!(
            text.contains("SQL Server's TLS is set in its URL"),
            "{text}"
        );
        assert_eq!(
            load_text(GOOD).expect("valid").sources[0]
                .connection
                .tls
                .mode,
            TlsMode::Disable
        );
    }

    #[test]
    fn times_are_shown_in_the_configured_zone() {
        let cfg = load_text(GOOD).expect("valid");
        assert_eq!(
            cfg.time_zone,
            crate::zone::Zone::Local,
            "the machine's by default"
        );
        let cfg =
            load_text(&GOOD.replace("batch_size: 2000", "batch_size: 2000\ntime_zone: +08:00"))
                .expect("valid");
        assert_eq!(
            cfg.time_zone,
            crate::zone::Zone::parse("+08:00").expect("an offset")
        );
        let err =
            load_text(&GOOD.replace("batch_size: 2000", "batch_size: 2000\ntime_zone: Beijing"))
                .expect_err("invalid");
        assert!(
            err.to_string()
                .contains(":5:12: error: `time_zone`: `Beijing` is not a time zone ebis knows"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = load_text(&GOOD.replace("batch_size", "batchsize")).expect_err("invalid");
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, 4);
        assert!(err.0[0].message.contains("unknown field `batchsize`"));
    }

    #[test]
    fn accounts_from_flags_keep_passwords_out_of_urls() {
        let err = ConnectionConfig::from_url(
            "postgres://dba:hunter2@db:5432/postgres",
            "EBIS_NO_SUCH_PASSWORD_VAR",
            "--warehouse",
        )
        .expect_err("refused");
        assert!(err.contains("EBIS_NO_SUCH_PASSWORD_VAR"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let admin = ConnectionConfig::from_url(
            "mysql://root@127.0.0.1:3306/?prefer_socket=false",
            "EBIS_NO_SUCH_PASSWORD_VAR",
            "--source-url",
        )
        .expect("accepted");
        assert_eq!(
            admin.password_env, None,
            "an unset variable names no password"
        );
        let db = admin.with_database("ebis_demo_aic");
        assert_eq!(
            db.url,
            "mysql://root@127.0.0.1:3306/ebis_demo_aic?prefer_socket=false"
        );
        let with_pw = ConnectionConfig {
            url: "postgres://ebis@h/w".to_owned(),
            password_env: Some("PW".to_owned()),
            password_file: None,
            tls: Default::default(),
        };
        assert_eq!(
            with_pw.to_yaml("  "),
            "  url: postgres://ebis@h/w\n  password_env: PW\n"
        );
        assert_eq!(
            with_pw.with_database("x").password_env.as_deref(),
            Some("PW")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("10min"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("90"), None, "a unit is required");
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(
            parse_duration("2 weeks"),
            Some(Duration::from_secs(14 * 86_400))
        );
    }
}
