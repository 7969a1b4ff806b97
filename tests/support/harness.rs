//! A pipeline under test: a warehouse database, bureau databases with the reference
//! schemas, a config file, change capture installed, and the pipeline run in-process (or
//! as a child `ebis run`).

use super::mysql::{MyDb, bureau_schema};
use super::pg::PgDb;
use super::{TempDir, root};
use ebis::config::{ConnectionConfig, PipelineConfig};
use ebis::mapping::MappingSet;
use ebis::pipeline::{self, Shutdown, ShutdownTrigger};
use ebis::verify::{KindReport, verify_source};
use ebis::warehouse::{self, Warehouse};
use std::time::{Duration, Instant};

/// One source of the environment.
pub struct Spec {
    pub name: &'static str,
    pub bureau: &'static str,
    pub division: &'static str,
    /// `changelog`, `timestamp` or `binlog`, plus any extra capture keys (YAML, indented 6).
    pub capture: &'static str,
}

pub const AIC_CHANGELOG: Spec = Spec {
    name: "aic_city",
    bureau: "aic",
    division: "150300",
    capture: "mode: changelog\n      gap_timeout: 30s",
};

pub const AIC_BINLOG: Spec = Spec {
    name: "aic_city",
    bureau: "aic",
    division: "150300",
    capture: "mode: binlog",
};

pub const LTAX_TIMESTAMP: Spec = Spec {
    name: "ltax_hbw",
    bureau: "ltax",
    division: "150302",
    capture: "mode: timestamp\n      overlap: 2s\n      key_scan_every: 1s",
};

/// A source of any shape: its own database, capture and mappings folder.
pub struct SourceDef {
    pub name: String,
    pub bureau: String,
    pub division: String,
    /// `mode: …` plus any extra capture keys, one per line (indented by the harness).
    pub capture: String,
    pub connection: ConnectionConfig,
    pub mappings: std::path::PathBuf,
}

pub struct Env {
    pub pg: PgDb,
    pub dbs: Vec<MyDb>,
    pub dir: TempDir,
    pub wh: Warehouse,
    specs: Vec<&'static Spec>,
}

pub struct Running {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Vec<(String, String)>>,
}

impl Env {
    pub async fn new(specs: &[&'static Spec]) -> Env {
        Self::with_urls(specs, |_, url| url.to_owned(), None).await
    }

    /// `source_url(i, url)` may reroute a source (through a proxy); `warehouse_url` may
    /// replace the warehouse URL in the config.
    pub async fn with_urls(
        specs: &[&'static Spec],
        source_url: impl Fn(usize, &str) -> String,
        warehouse_url: Option<String>,
    ) -> Env {
        init_logging();
        let mut dbs = Vec::new();
        for s in specs {
            dbs.push(MyDb::create(&bureau_schema(s.bureau)).await);
        }
        let defs = specs
            .iter()
            .zip(&dbs)
            .enumerate()
            .map(|(i, (s, db))| SourceDef {
                name: s.name.to_owned(),
                bureau: s.bureau.to_owned(),
                division: s.division.to_owned(),
                capture: s.capture.to_owned(),
                connection: ConnectionConfig {
                    url: source_url(i, &db.url),
                    password_env: db.conn.password_env.clone(),
                    password_file: None,
                    tls: Default::default(),
                },
                mappings: root().join("mappings").join(s.bureau),
            })
            .collect();
        Self::build(defs, dbs, specs.to_vec(), warehouse_url, "mysql").await
    }

    /// An environment of sources the test made itself (databases it keeps, mappings of
    /// its own), capture installed where the mode needs it.
    pub async fn custom(defs: Vec<SourceDef>) -> Env {
        Self::custom_in("mysql", defs).await
    }

    /// [`Env::custom`] for sources of another dialect (`sqlserver`, …).
    pub async fn custom_in(dialect: &str, defs: Vec<SourceDef>) -> Env {
        init_logging();
        Self::build(defs, Vec::new(), Vec::new(), None, dialect).await
    }

    async fn build(
        defs: Vec<SourceDef>,
        dbs: Vec<MyDb>,
        specs: Vec<&'static Spec>,
        warehouse_url: Option<String>,
        dialect: &str,
    ) -> Env {
        let pg = PgDb::create().await;
        let dir = TempDir::new("ebis_env");
        let warehouse = ConnectionConfig {
            url: warehouse_url.unwrap_or_else(|| pg.url.clone()),
            password_env: pg.conn.password_env.clone(),
            password_file: None,
            tls: Default::default(),
        };
        let mut yaml = format!(
            "warehouse:\n{}poll_interval: 200ms\nbatch_size: 500\nsources:\n",
            warehouse.to_yaml("  ")
        );
        for d in &defs {
            let capture = d
                .capture
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n      ");
            yaml.push_str(&format!(
                "  - name: {}\n    bureau: {}\n    division: '{}'\n    covers: ['150302', '150303', '150304']\n    dialect: {dialect}\n    connection:\n{}    capture:\n      {}\n    mappings: {}\n",
                d.name,
                d.bureau,
                d.division,
                d.connection.to_yaml("      "),
                capture,
                d.mappings.display()
            ));
        }
        std::fs::write(dir.path().join("pipeline.yaml"), yaml).expect("write config");
        let wh = Warehouse::new(&pg.conn, 8).expect("warehouse");
        warehouse::migrate(&wh).await.expect("migrate");
        let env = Env {
            pg,
            dbs,
            dir,
            wh,
            specs,
        };
        // Install change capture where the mode needs it (what a DBA does once).
        ebis::setup::install_all(&env.config())
            .await
            .expect("install capture");
        env
    }

    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("pipeline.yaml")
    }

    pub fn config(&self) -> PipelineConfig {
        PipelineConfig::load(&self.config_path()).expect("config")
    }

    pub fn db(&self, name: &str) -> &MyDb {
        let i = self
            .specs
            .iter()
            .position(|s| s.name == name)
            .expect("source");
        &self.dbs[i]
    }

    /// A child `ebis run` on this environment's config, its stdout discarded.
    pub fn spawn_run(&self, stderr: std::process::Stdio) -> std::process::Child {
        super::ebis(&root())
            .args([
                "--config".as_ref(),
                self.config_path().as_os_str(),
                "run".as_ref(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn ebis run")
    }

    /// Runs the pipeline in this process until `stop`.
    pub fn start(&self) -> Running {
        let config = self.config();
        let wh = self.wh.clone();
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(async move {
            pipeline::run_sources(&config, &wh, shutdown)
                .await
                .expect("pipeline")
                .into_iter()
                .map(|(n, e)| (n, e.to_string()))
                .collect()
        });
        Running { trigger, task }
    }

    pub async fn verify(&self) -> Result<Vec<KindReport>, ebis::pipeline::PipelineError> {
        let config = self.config();
        let mut out = Vec::new();
        for s in &config.sources {
            let m = MappingSet::load_dir(&s.mappings_dir, Some(s.bureau)).expect("mappings");
            out.extend(verify_source(s, &m, &self.wh, 2000).await?);
        }
        Ok(out)
    }

    /// Waits until every record kind of every source agrees with its source.
    pub async fn wait_verified(&self, timeout: Duration) -> Vec<KindReport> {
        let start = Instant::now();
        loop {
            let last = match self.verify().await {
                Ok(reports) if reports.iter().all(KindReport::agrees) => return reports,
                Ok(reports) => ebis::verify::render(&reports),
                Err(e) if e.is_retryable() => e.to_string(),
                Err(e) => panic!("verify: {e}"),
            };
            if start.elapsed() > timeout {
                panic!("warehouse does not agree with the sources after {timeout:?}:\n{last}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn pg(&self) -> tokio_postgres::Client {
        self.pg.client().await
    }

    /// The first column of the one row a warehouse query returns.
    pub async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        self.pg()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Polls a warehouse query returning one bigint until it equals `want`.
    pub async fn wait_count(&self, sql: &str, want: i64, timeout: Duration) {
        let c = self.pg().await;
        let start = Instant::now();
        loop {
            let n: i64 = c.query_one(sql, &[]).await.expect(sql).get(0);
            if n == want {
                return;
            }
            if start.elapsed() > timeout {
                // What the sources were doing, so a stall says why.
                let states: Vec<String> = c
                    .query(
                        "select source || ': ' || state || coalesce(' (' || last_error || ')', '')
                         from ebis.source_status order by source",
                        &[],
                    )
                    .await
                    .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                    .unwrap_or_default();
                panic!(
                    "`{sql}` is {n}, want {want}, after {timeout:?}; sources: {}",
                    states.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Running {
    /// Stops the pipeline; returns the sources that failed, with their errors.
    pub async fn stop(self) -> Vec<(String, String)> {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("pipeline stops within a minute")
            .expect("pipeline task")
    }
}

/// Logs of the in-process pipeline on stderr when `EBIS_TEST_LOG` is set (e.g. `debug`).
fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(level) = std::env::var("EBIS_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(level))
                .with_test_writer()
                .try_init();
        }
    });
}

/// A small deterministic random generator for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// An enterprise name such as a bureau would hold.
pub fn company_name(rng: &mut Rng) -> String {
    let place = rng.pick(&[
        "乌海市",
        "乌海市海勃湾区",
        "乌海市海南区",
        "乌海市乌达区",
        "内蒙古乌海",
    ]);
    let word = rng.pick(&[
        "宏达", "金泰", "鑫源", "恒通", "昇华", "犇腾", "喆誉", "瑞丰", "蒙西", "黄河",
    ]);
    let trade = rng.pick(&[
        "商贸", "煤焦", "化工", "建材", "运输", "餐饮", "物资", "机电",
    ]);
    let form = rng.pick(&[
        "有限公司",
        "有限责任公司",
        "（集团）有限公司",
        "股份有限公司",
    ]);
    format!("{place}{word}{trade}{form}")
}

/// An `INSERT` of one AIC enterprise with Chinese text.
pub fn aic_insert(id: u64, rng: &mut Rng) -> String {
    let district = rng.pick(&["150302", "150303", "150304"]);
    let rep = rng.pick(&[
        "王镕", "李堃", "张玥", "赵赟", "刘彧", "陈珺", "杨犇", "周喆",
    ]);
    format!(
        "INSERT INTO E_BASEINFO (PRIPID, REGNO, ENTNAME, ENTTYPE, INDUSTRYPHY, INDUSTRYCO, NAME, DOM, DOMDISTRICT, CBUITEM, ESTDATE, REGORG, REGSTATE) \
         VALUES ({id}, '{district}{:09}', '{}', '1100', 'F', '5211', '{rep}', '乌海市新华街{}号', '{district}', '日用百货', '2006-0{}-1{}', '{district}', '1')",
        id,
        company_name(rng),
        rng.below(300),
        1 + rng.below(9),
        rng.below(10)
    )
}
