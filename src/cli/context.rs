//! What every command needs: the async runtime, the config (required or optional), the
//! warehouse pool, a source's mappings, and Ctrl-C/SIGTERM turned into a shutdown.

use anyhow::{Context, Result, bail};
use ebis::config::{self, PipelineConfig, SourceConfig};
use ebis::mapping::MappingSet;
use ebis::pipeline::ShutdownTrigger;
use ebis::warehouse::Warehouse;
use std::path::Path;

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn load_config(path: &Path) -> Result<PipelineConfig> {
    PipelineConfig::load(path).map_err(|d| anyhow::anyhow!("{d}"))
}

pub fn warehouse_of(config: Option<&PipelineConfig>, pool: usize) -> Result<Warehouse> {
    let conn = config::resolve_warehouse(config).map_err(anyhow::Error::msg)?;
    Ok(Warehouse::new(&conn, pool)?)
}

pub fn mappings_of(cfg: &SourceConfig) -> Result<MappingSet> {
    MappingSet::load_dir(&cfg.mappings_dir, Some(cfg.bureau)).map_err(|d| anyhow::anyhow!("{d}"))
}

pub fn source_of<'a>(config: &'a PipelineConfig, name: &str) -> Result<&'a SourceConfig> {
    config.source(name).with_context(|| {
        format!(
            "no source `{name}` in {} (sources: {})",
            config.path.display(),
            config
                .sources
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Ctrl-C or SIGTERM → shutdown.
pub fn on_signals(trigger: ShutdownTrigger) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down after the current batches");
        trigger.trigger();
    });
}

/// The config when the file exists; `None` when it is the default and absent (commands
/// that need only the warehouse then run from `EBIS_WAREHOUSE_URL`).
pub fn load_optional_config(path: &Path) -> Result<Option<PipelineConfig>> {
    if !path.exists() {
        if path == Path::new("pipeline.yaml") {
            return Ok(None);
        }
        bail!("config file {} does not exist", path.display());
    }
    PipelineConfig::load(path)
        .map(Some)
        .map_err(|d| anyhow::anyhow!("{d}"))
}
