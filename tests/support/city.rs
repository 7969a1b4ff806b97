//! A simulated city on the test servers: the four bureau databases (reference schemas),
//! a warehouse, capture installed, and the pipeline run per source — so a test can stop
//! one source to make it lag.

use super::mysql::admin as mysql_admin;
use super::pg::PgDb;
use super::{TempDir, unique_name};
use ebis::config::PipelineConfig;
use ebis::demo::bureaus::Bureaus;
use ebis::demo::native::{self, Rows};
use ebis::demo::world::World;
use ebis::mapping::MappingSet;
use ebis::pipeline::{RunSettings, Shutdown, ShutdownTrigger, run_source};
use ebis::verify::{KindReport, verify_source};
use ebis::warehouse::{self, Warehouse};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

type SourceTask = tokio::task::JoinHandle<Result<(), ebis::pipeline::PipelineError>>;

pub struct City {
    pub pg: PgDb,
    pub bureaus: Option<Bureaus>,
    pub dir: TempDir,
    pub wh: Warehouse,
    pub world: World,
    pub config: PipelineConfig,
    /// How long a caught-up source waits between polls (150 ms unless a test sets it).
    pub poll_interval: Duration,
    running: Vec<(String, ShutdownTrigger, SourceTask)>,
}

impl City {
    /// Loads the world into fresh bureau databases and installs capture.
    pub async fn new(world: World) -> City {
        let pg = PgDb::create().await;
        let prefix = unique_name("ebis_c");
        let bureaus = Bureaus::create(&mysql_admin(), &prefix)
            .await
            .expect("bureau databases");
        bureaus.load(&native::all_rows(&world)).await.expect("load");
        let dir = TempDir::new("ebis_city");
        ebis::assets::write_mappings(dir.path()).expect("mappings");
        let yaml = ebis::demo::config_yaml(&pg.conn, &bureaus, ebis::demo::DemoCapture::Triggers)
            .replace("key_scan_every: 5s", "key_scan_every: 1s");
        std::fs::write(dir.path().join("pipeline.yaml"), yaml).expect("config");
        let config = PipelineConfig::load(&dir.path().join("pipeline.yaml")).expect("config");
        ebis::setup::install_all(&config).await.expect("capture");
        let wh = Warehouse::new(&pg.conn, 8).expect("warehouse");
        warehouse::migrate(&wh).await.expect("migrate");
        wh.register_sources(&config.sources)
            .await
            .expect("register");
        wh.set_as_of(Some(world.options.as_of))
            .await
            .expect("as_of");
        City {
            pg,
            bureaus: Some(bureaus),
            dir,
            wh,
            world,
            config,
            poll_interval: Duration::from_millis(150),
            running: Vec::new(),
        }
    }

    /// Starts capturing these sources (all when empty).
    pub fn start(&mut self, only: &[&str]) {
        for cfg in &self.config.sources {
            if !only.is_empty() && !only.contains(&cfg.name.as_str()) {
                continue;
            }
            if self.running.iter().any(|(n, _, _)| *n == cfg.name) {
                continue;
            }
            let m = MappingSet::load_dir(&cfg.mappings_dir, Some(cfg.bureau)).expect("mappings");
            let (trigger, shutdown) = Shutdown::new();
            let settings = RunSettings {
                poll_interval: self.poll_interval,
                batch_size: 500,
                max_backoff: Duration::from_secs(2),
                lease_ttl: Duration::from_secs(5),
            };
            let task = tokio::spawn(run_source(
                cfg.clone(),
                m,
                self.wh.clone(),
                settings,
                shutdown,
            ));
            self.running.push((cfg.name.clone(), trigger, task));
        }
    }

    /// Stops one source.
    pub async fn stop(&mut self, name: &str) {
        if let Some(i) = self.running.iter().position(|(n, _, _)| n == name) {
            let (_, trigger, task) = self.running.remove(i);
            trigger.trigger();
            task.await.expect("task").expect("source ran without error");
        }
    }

    /// Stops everything.
    pub async fn stop_all(&mut self) {
        let names: Vec<String> = self.running.iter().map(|(n, _, _)| n.clone()).collect();
        for n in names {
            self.stop(&n).await;
        }
    }

    /// Writes a change of the world into the bureaus' databases.
    pub async fn write(&self, rows: &Rows, deletes: &[(&'static str, mysql_async::Value)]) {
        self.bureaus
            .as_ref()
            .expect("bureaus")
            .apply(rows, deletes)
            .await
            .expect("write");
    }

    /// Changes enterprise `i` with `f` and writes what changed.
    pub async fn change(&mut self, i: usize, f: impl FnOnce(&mut World, usize)) {
        let before = native::enterprise_rows(&self.world.enterprises[i]);
        f(&mut self.world, i);
        let (up, del) = native::diff(
            &before,
            &native::enterprise_rows(&self.world.enterprises[i]),
        );
        self.write(&up, &del).await;
    }

    /// Waits until the running sources' record kinds equal their sources.
    pub async fn wait_caught_up(&self) -> Vec<KindReport> {
        let start = Instant::now();
        loop {
            let mut all = Vec::new();
            let mut ok = true;
            for s in &self.config.sources {
                if !self.running.iter().any(|(n, _, _)| *n == s.name) {
                    continue;
                }
                let m = MappingSet::load_dir(&s.mappings_dir, Some(s.bureau)).expect("mappings");
                match verify_source(s, &m, &self.wh, 5000).await {
                    Ok(r) => {
                        ok &= r.iter().all(KindReport::agrees);
                        all.extend(r);
                    }
                    Err(_) => ok = false,
                }
            }
            // Complete-up-to must also have passed the last change for lag-aware rules.
            if ok {
                tokio::time::sleep(Duration::from_millis(400)).await;
                // The enterprise base takes the applied records in behind the apply.
                self.wh
                    .settle_base()
                    .await
                    .expect("settle the enterprise base");
                return all;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{}",
                ebis::verify::render(&all)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs the comparison; returns the open findings as (rule, reg_no).
    pub async fn compare(&self) -> BTreeSet<(String, String)> {
        self.wh.compare().await.expect("compare");
        let c = self.pg.client().await;
        c.query(
            "select rule, coalesce(reg_no, '') from compare.finding where resolved_at is null",
            &[],
        )
        .await
        .expect("findings")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }

    pub async fn drop_sources(mut self) {
        self.stop_all().await;
        if let Some(b) = self.bureaus.take() {
            let _ = b.drop_all(&mysql_admin()).await;
        }
    }
}

/// A test that failed before `drop_sources` still removes its four bureau databases.
impl Drop for City {
    fn drop(&mut self) {
        let Some(b) = self.bureaus.take() else {
            return;
        };
        let names: Vec<String> = b
            .conns
            .iter()
            .filter_map(|(_, c)| c.url.rsplit('/').next().map(str::to_owned))
            .collect();
        drop(b);
        crate::support::cleanup(move || async move {
            use mysql_async::prelude::Queryable;
            let admin = super::mysql::pool(&mysql_admin());
            if let Ok(mut c) = admin.get_conn().await {
                for n in names {
                    let _ = c.query_drop(format!("DROP DATABASE IF EXISTS `{n}`")).await;
                }
            }
            let _ = admin.disconnect().await;
        });
    }
}
