//! `/metrics` (Prometheus), `/healthz` and `/readyz` for `ebis run`, when `metrics.listen`
//! is set: an axum server over the `metrics` facade and its Prometheus exporter.
//!
//! Most figures are read from the warehouse at each scrape — the same ones `ebis status`
//! shows — so they agree whichever process serves them. When the warehouse cannot be
//! read, the page still answers with what the process last knew: `ebis_warehouse_up` is
//! 0 and each source's lag keeps growing from its last reading, so an alert on lag fires
//! exactly when nothing can be applied. Errors and retries are counted by the process
//! itself as they happen (`record_error`).
//!
//! Labels are bounded: source names, states, error kinds and rule names; never keys or
//! values.

use crate::status::SourceStatus;
use crate::warehouse::{Warehouse, WarehouseError};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Metric names, in one place.
pub mod names {
    /// Rows applied since the source first ran.
    pub const ROWS_APPLIED: &str = "ebis_rows_applied_total";
    /// Rows quarantined since the source first ran.
    pub const ROWS_QUARANTINED: &str = "ebis_rows_quarantined_total";
    /// Seconds since the source's complete-up-to time.
    pub const LAG: &str = "ebis_replication_lag_seconds";
    /// Rejected rows not yet resolved.
    pub const QUARANTINED: &str = "ebis_quarantined_rows";
    /// Open changelog gaps.
    pub const GAPS: &str = "ebis_open_gaps";
    /// Expired changelog gaps still watched.
    pub const EXPIRED_GAPS: &str = "ebis_expired_gaps";
    /// Changes that arrived late.
    pub const LATE: &str = "ebis_late_changes_total";
    /// Rows dated ahead of the source's clock.
    pub const FUTURE: &str = "ebis_future_dated_rows";
    /// 1 for the source's current state, 0 for the others.
    pub const STATE: &str = "ebis_source_state";
    /// 1 while the source captures (starting, snapshotting, streaming).
    pub const UP: &str = "ebis_up";
    /// When the source last polled (Unix seconds).
    pub const LAST_POLL: &str = "ebis_last_poll_timestamp_seconds";
    /// When a batch of the source last applied rows (Unix seconds).
    pub const LAST_APPLY: &str = "ebis_last_apply_timestamp_seconds";
    /// Change-table rows purged at the source.
    pub const PURGED: &str = "ebis_change_rows_purged_total";
    /// Times the stored position expired and the source was snapshotted again.
    pub const RESNAPSHOTS: &str = "ebis_resnapshots_total";
    /// Bytes the source keeps for ebis (a logical slot's retained WAL).
    pub const SOURCE_BACKLOG: &str = "ebis_source_backlog_bytes";
    /// 1 while the source catches up a backlog (reads full batches), 0 otherwise.
    pub const CATCHING_UP: &str = "ebis_catching_up";
    /// Rows a snapshot in progress has read.
    pub const SNAPSHOT_ROWS: &str = "ebis_snapshot_rows_read";
    /// Rows it reads in all, by the source's estimates.
    pub const SNAPSHOT_ESTIMATED: &str = "ebis_snapshot_rows_estimated";
    /// Renewals of a source's lease that failed or came too late, in this process.
    pub const LEASE_RENEWALS_FAILED: &str = "ebis_lease_renewals_failed_total";
    /// Errors by source and kind, as this process met them.
    pub const ERRORS: &str = "ebis_source_errors_total";
    /// Retries by source, in this process.
    pub const RETRIES: &str = "ebis_source_retries_total";
    /// Statements queued for the enterprise base and not yet taken in.
    pub const BASE_QUEUED: &str = "ebis_base_queued_statements";
    /// Seconds since the oldest statement still queued for the enterprise base that a
    /// drain would take (not one waiting for its source's first snapshot to end).
    pub const BASE_LAG: &str = "ebis_base_lag_seconds";
    /// Statements the enterprise base refused, parked with their reasons.
    pub const BASE_PARKED: &str = "ebis_base_parked_statements";
    /// Queued statements of sources whose first snapshot runs: they wait for its end.
    pub const BASE_WAITING_FOR_LOADS: &str = "ebis_base_statements_waiting_for_loads";
    /// Seconds a rebuild of the enterprise base has been at work (0: none is).
    pub const BASE_REBUILD: &str = "ebis_base_rebuild_running_seconds";
    /// Seconds the drain at work on the enterprise base has been running (0: none is).
    pub const BASE_DRAIN: &str = "ebis_base_drain_running_seconds";
    /// Open findings per rule.
    pub const FINDINGS: &str = "ebis_findings_open";
    /// How long the last comparison run took.
    pub const COMPARE_DURATION: &str = "ebis_compare_last_run_duration_seconds";
    /// When the last comparison run finished (Unix seconds).
    pub const COMPARE_FINISHED: &str = "ebis_compare_last_run_timestamp_seconds";
    /// The epoch of the source's lease: raised by each take-over.
    pub const LEASE_EPOCH: &str = "ebis_lease_epoch";
    /// 1 when the last scrape could read the warehouse.
    pub const WAREHOUSE_UP: &str = "ebis_warehouse_up";
    /// The build (label `version`), always 1.
    pub const BUILD: &str = "ebis_build_info";
}

/// Every state a source can be in (`ebis_source_state` has a series for each).
pub const STATES: [&str; 6] = [
    "starting",
    "snapshotting",
    "streaming",
    "retrying",
    "failed",
    "stopped",
];

/// Counts an error a source met (`kind` from [`crate::pipeline::PipelineError::kind`]),
/// and whether it is retried. A no-op until `ebis run` serves metrics.
pub fn record_error(source: &str, kind: &'static str, retried: bool) {
    metrics::counter!(names::ERRORS, "source" => source.to_owned(), "kind" => kind).increment(1);
    if retried {
        metrics::counter!(names::RETRIES, "source" => source.to_owned()).increment(1);
    }
}

/// What the process last read of a source, to go on from while the warehouse is away.
struct Seen {
    /// Its lag then, and when that was.
    lag: Option<f64>,
    read: Instant,
    /// Since when this process has seen it without a complete-up-to time (a first
    /// snapshot): its lag grows from there.
    incomplete_since: Option<Instant>,
}

/// The figures `/metrics` serves, and where they come from.
pub struct Exporter {
    recorder: &'static PrometheusRecorder,
    handle: PrometheusHandle,
    wh: Warehouse,
    seen: Mutex<BTreeMap<String, Seen>>,
}

impl Exporter {
    /// An exporter that also receives what the process records (`record_error`): the
    /// process's recorder. Only the first in a process becomes it; later ones keep to
    /// their own figures.
    pub fn install(wh: Warehouse) -> Exporter {
        let exporter = Exporter::local(wh);
        if metrics::set_global_recorder(exporter.recorder).is_err() {
            tracing::debug!("a metrics recorder is already installed in this process");
        }
        exporter
    }

    /// An exporter of the warehouse's figures alone.
    pub fn local(wh: Warehouse) -> Exporter {
        let recorder: &'static PrometheusRecorder =
            Box::leak(Box::new(PrometheusBuilder::new().build_recorder()));
        let handle = recorder.handle();
        metrics::with_local_recorder(recorder, describe);
        Exporter {
            recorder,
            handle,
            wh,
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// Reads the warehouse's figures into the gauges; an error leaves the last ones,
    /// with `ebis_warehouse_up` 0 and lags grown by the time since they were read.
    pub async fn refresh(&self) -> Result<(), WarehouseError> {
        let read = tokio::time::timeout(Duration::from_secs(5), read_figures(&self.wh))
            .await
            .unwrap_or_else(|_| {
                Err(WarehouseError::Unreachable(
                    "no answer within 5 s".to_owned(),
                ))
            });
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match read {
            Ok(f) => {
                for r in &f.rows {
                    let s = seen.entry(r.source.clone()).or_insert(Seen {
                        lag: None,
                        read: now,
                        incomplete_since: None,
                    });
                    s.lag = r.lag_seconds;
                    s.read = now;
                    s.incomplete_since = match r.lag_seconds {
                        Some(_) => None,
                        None => s.incomplete_since.or(Some(now)),
                    };
                }
                let lags = lags(&seen, now);
                metrics::with_local_recorder(self.recorder, || set_figures(&f, &lags));
                Ok(())
            }
            Err(e) => {
                let lags = lags(&seen, now);
                metrics::with_local_recorder(self.recorder, || {
                    metrics::gauge!(names::WAREHOUSE_UP).set(0.0);
                    for (source, lag) in &lags {
                        metrics::gauge!(names::LAG, "source" => source.clone()).set(*lag);
                    }
                });
                Err(e)
            }
        }
    }

    /// The page: figures refreshed (or kept, when the warehouse cannot be read), with the
    /// process's own.
    pub async fn scrape(&self) -> String {
        if let Err(e) = self.refresh().await {
            tracing::debug!(error = %e, "metrics: the warehouse could not be read; serving the last figures");
        }
        self.page()
    }

    /// The page as the gauges stand, with the process's own figures.
    fn page(&self) -> String {
        metrics::with_local_recorder(self.recorder, set_process_figures);
        self.handle.render()
    }
}

/// Each known source's lag now: its last reading plus the time since, or the time since
/// it was first seen without a complete-up-to time.
fn lags(seen: &BTreeMap<String, Seen>, now: Instant) -> Vec<(String, f64)> {
    seen.iter()
        .map(|(source, s)| {
            let lag = match (s.lag, s.incomplete_since) {
                (Some(l), _) => l + now.duration_since(s.read).as_secs_f64(),
                (None, Some(since)) => now.duration_since(since).as_secs_f64(),
                (None, None) => 0.0,
            };
            (source.clone(), lag)
        })
        .collect()
}

/// What one scrape reads from the warehouse.
struct Figures {
    rows: Vec<SourceStatus>,
    base: crate::warehouse::BaseStatus,
    findings: Vec<(String, i64)>,
    last_run: Option<(f64, f64)>,
}

async fn read_figures(wh: &Warehouse) -> Result<Figures, WarehouseError> {
    let rows = wh.status().await?;
    let base = wh.base_status().await?;
    let client = wh.client().await?;
    // (name, count) pairs a query returns.
    let counts = async |sql: &str| -> Result<Vec<(String, i64)>, WarehouseError> {
        Ok(client
            .query(sql, &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    };
    let findings = counts(
        "select rule, count(*) from compare.finding where resolved_at is null group by rule",
    )
    .await?;
    let last_run = client
        .query_opt(
            "select extract(epoch from finished_at - started_at)::float8, extract(epoch from finished_at)::float8
             from compare.run where finished_at is not null order by id desc limit 1",
            &[],
        )
        .await?
        .map(|r| (r.get(0), r.get(1)));
    Ok(Figures {
        rows,
        base,
        findings,
        last_run,
    })
}

fn unix(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn set_figures(f: &Figures, lags: &[(String, f64)]) {
    use metrics::{counter, gauge};
    gauge!(names::WAREHOUSE_UP).set(1.0);
    for r in &f.rows {
        let s = || r.source.clone();
        counter!(names::ROWS_APPLIED, "source" => s()).absolute(r.rows_applied.max(0) as u64);
        counter!(names::ROWS_QUARANTINED, "source" => s())
            .absolute(r.rows_quarantined.max(0) as u64);
        gauge!(names::QUARANTINED, "source" => s()).set(r.quarantined_open as f64);
        gauge!(names::GAPS, "source" => s()).set(f64::from(r.open_gaps));
        gauge!(names::EXPIRED_GAPS, "source" => s()).set(f64::from(r.expired_gaps));
        counter!(names::LATE, "source" => s()).absolute(r.late_changes.max(0) as u64);
        gauge!(names::FUTURE, "source" => s()).set(f64::from(r.future_rows));
        counter!(names::PURGED, "source" => s()).absolute(r.changes_purged.max(0) as u64);
        counter!(names::RESNAPSHOTS, "source" => s()).absolute(r.resnapshots.max(0) as u64);
        if let Some(b) = r.backlog_bytes {
            gauge!(names::SOURCE_BACKLOG, "source" => s()).set(b as f64);
        }
        gauge!(names::CATCHING_UP, "source" => s()).set(if r.backlog_since.is_some() {
            1.0
        } else {
            0.0
        });
        if let Some(e) = r.lease_epoch {
            gauge!(names::LEASE_EPOCH, "source" => s()).set(e as f64);
        }
        for state in STATES {
            let on = if r.state == state { 1.0 } else { 0.0 };
            gauge!(names::STATE, "source" => s(), "state" => state).set(on);
        }
        let up = matches!(r.state.as_str(), "starting" | "snapshotting" | "streaming");
        gauge!(names::UP, "source" => s()).set(if up { 1.0 } else { 0.0 });
        if let Some(t) = r.last_poll_at {
            gauge!(names::LAST_POLL, "source" => s()).set(unix(t));
        }
        if let Some(t) = r.last_applied_at {
            gauge!(names::LAST_APPLY, "source" => s()).set(unix(t));
        }
        let snapshot = r.snapshot.as_ref();
        gauge!(names::SNAPSHOT_ROWS, "source" => s()).set(snapshot.map_or(0, |p| p.rows) as f64);
        let estimated = snapshot.and_then(|p| Some(p.rows + p.rows_left?));
        gauge!(names::SNAPSHOT_ESTIMATED, "source" => s()).set(estimated.unwrap_or(0) as f64);
    }
    for (source, lag) in lags {
        gauge!(names::LAG, "source" => source.clone()).set(*lag);
    }
    gauge!(names::BASE_QUEUED).set(f.base.queued as f64);
    // Seconds since `t`, 0 without one.
    let since = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or(0.0, |t| {
            (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
        })
    };
    // (A first load's statements wait for its end, however long: not a lag to alert on.)
    gauge!(names::BASE_LAG).set(since(f.base.oldest_drainable));
    gauge!(names::BASE_PARKED).set(f.base.parked as f64);
    gauge!(names::BASE_WAITING_FOR_LOADS).set(f.base.waiting_for_loads as f64);
    gauge!(names::BASE_REBUILD).set(since(f.base.rebuild.as_ref().map(|r| r.started)));
    gauge!(names::BASE_DRAIN).set(since(f.base.drain.as_ref().map(|d| d.started)));
    for rule in crate::rules::Rule::ALL {
        let open = f
            .findings
            .iter()
            .find(|(n, _)| n == rule.name())
            .map_or(0, |(_, c)| *c);
        gauge!(names::FINDINGS, "rule" => rule.name()).set(open as f64);
    }
    if let Some((duration, finished)) = f.last_run {
        gauge!(names::COMPARE_DURATION).set(duration);
        gauge!(names::COMPARE_FINISHED).set(finished);
    }
}

/// The process's own figures (Linux `/proc/self`; elsewhere none).
fn set_process_figures() {
    use metrics::{counter, gauge};
    gauge!(names::BUILD, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let Some(p) = ProcessFigures::read() else {
        return;
    };
    counter!("process_cpu_seconds_total").absolute(p.cpu_seconds as u64);
    gauge!("process_resident_memory_bytes").set(p.resident_bytes as f64);
    gauge!("process_virtual_memory_bytes").set(p.virtual_bytes as f64);
    gauge!("process_open_fds").set(p.open_fds as f64);
    gauge!("process_start_time_seconds").set(p.start_time);
}

/// What `/proc/self` says of this process.
struct ProcessFigures {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: usize,
    start_time: f64,
}

impl ProcessFigures {
    fn read() -> Option<ProcessFigures> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces), from field 3 on.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = 100.0; // USER_HZ on Linux
        let num = |i: usize| -> Option<f64> { f.get(i)?.parse().ok() };
        let page = 4096u64;
        let boot: f64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(ProcessFigures {
            // utime (14) and stime (15), fields 3.. start at index 0
            cpu_seconds: (num(11)? + num(12)?) / ticks,
            virtual_bytes: num(20)? as u64,
            resident_bytes: num(21)? as u64 * page,
            open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()),
            start_time: boot + num(19)? / ticks,
        })
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(names::ROWS_APPLIED, "Rows applied to the warehouse.");
    describe_counter!(
        names::ROWS_QUARANTINED,
        "Rows put in quarantine (a mapping or the warehouse refused a value)."
    );
    describe_gauge!(
        names::LAG,
        Unit::Seconds,
        "Seconds since every change of the source was applied; grows while the source is snapshotting, retrying, failed or stopped, and while the warehouse cannot be read."
    );
    describe_gauge!(names::QUARANTINED, "Rejected rows not yet resolved.");
    describe_gauge!(names::GAPS, "Changelog sequence gaps still awaited.");
    describe_gauge!(
        names::EXPIRED_GAPS,
        "Changelog gaps past their timeout, still watched for late commits."
    );
    describe_counter!(
        names::LATE,
        "Changes that arrived late: committed after their gap expired, or found by a key scan below the timestamp mark."
    );
    describe_gauge!(
        names::FUTURE,
        "Rows whose modified time is ahead of the source's clock (timestamp capture)."
    );
    describe_gauge!(
        names::STATE,
        "The source's state: 1 for the current one, 0 for the others."
    );
    describe_gauge!(
        names::UP,
        "1 while the source captures (starting, snapshotting, streaming), 0 when retrying, failed or stopped."
    );
    describe_gauge!(
        names::LAST_POLL,
        Unit::Seconds,
        "When the source last polled (Unix time)."
    );
    describe_gauge!(
        names::LAST_APPLY,
        Unit::Seconds,
        "When a batch of the source last applied rows (Unix time)."
    );
    describe_counter!(
        names::PURGED,
        "Change-table rows ebis purged at the source after the warehouse stored them."
    );
    describe_counter!(
        names::RESNAPSHOTS,
        "Times the source's stored position expired (or was reset) and it was snapshotted again."
    );
    describe_gauge!(
        names::SOURCE_BACKLOG,
        Unit::Bytes,
        "Bytes the source keeps on its disk for ebis (a PostgreSQL logical slot's retained WAL), as last read."
    );
    describe_gauge!(
        names::CATCHING_UP,
        "1 while the source catches up a backlog (reads full batches; the enterprise base waits for it, a minute at most)."
    );
    describe_gauge!(
        names::SNAPSHOT_ROWS,
        "Rows the source's snapshot in progress has read (0 when none runs)."
    );
    describe_gauge!(
        names::SNAPSHOT_ESTIMATED,
        "Rows the source's snapshot in progress reads in all, by the source's estimates of its tables' rows taken when it began (0 when none runs or a table has no estimate)."
    );
    describe_counter!(
        names::ERRORS,
        "Errors sources met in this process, by kind."
    );
    describe_counter!(names::RETRIES, "Retries of sources in this process.");
    describe_counter!(
        names::LEASE_RENEWALS_FAILED,
        "Renewals of the source's lease by this process that failed or had no answer within half of lease_ttl (each tried again on a new connection; the lease lapses if none succeeds in time)."
    );
    describe_gauge!(
        names::BASE_QUEUED,
        "Statements queued for the enterprise base and not yet taken in."
    );
    describe_gauge!(
        names::BASE_LAG,
        Unit::Seconds,
        "Seconds since the oldest statement still queued for the enterprise base, not counting those that wait for their source's first snapshot to end."
    );
    describe_gauge!(
        names::BASE_PARKED,
        "Statements the enterprise base refused, parked with their reasons."
    );
    describe_gauge!(
        names::BASE_WAITING_FOR_LOADS,
        "Queued statements of sources whose first snapshot is still running: they wait for it to end."
    );
    describe_gauge!(
        names::BASE_REBUILD,
        Unit::Seconds,
        "Seconds a rebuild of the enterprise base has been at work (0 when none is)."
    );
    describe_gauge!(
        names::BASE_DRAIN,
        Unit::Seconds,
        "Seconds the drain at work on the enterprise base queue has been running (0 when none is, and while a drain rebuilds the base: the rebuild's gauge counts then)."
    );
    describe_gauge!(names::FINDINGS, "Open consistency findings per rule.");
    describe_gauge!(
        names::LEASE_EPOCH,
        "The epoch of the source's lease, raised by each take-over by another ebis process."
    );
    describe_gauge!(
        names::COMPARE_DURATION,
        Unit::Seconds,
        "How long the last comparison run took."
    );
    describe_gauge!(
        names::COMPARE_FINISHED,
        Unit::Seconds,
        "When the last comparison run finished (Unix time)."
    );
    describe_gauge!(
        names::WAREHOUSE_UP,
        "1 when the last scrape could read the warehouse, 0 when it could not (the other figures are then the last known)."
    );
    describe_gauge!(names::BUILD, "The ebis build (label version); always 1.");
    describe_counter!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "User and system CPU time the process has spent (whole seconds)."
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory size."
    );
    describe_gauge!(
        "process_virtual_memory_bytes",
        Unit::Bytes,
        "Virtual memory size."
    );
    describe_gauge!("process_open_fds", "Open file descriptors.");
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "When the process started (Unix time)."
    );
}

/// The metrics page of a warehouse, read now (for tests and one-off use); an error when
/// the warehouse cannot be read.
pub async fn render(wh: &Warehouse) -> Result<String, WarehouseError> {
    let exporter = Exporter::local(wh.clone());
    exporter.refresh().await?;
    Ok(exporter.page())
}

/// Why the process is not ready, if it is not: the warehouse cannot be read, or a source
/// has failed.
async fn not_ready(wh: &Warehouse) -> Option<String> {
    match tokio::time::timeout(Duration::from_secs(5), wh.status()).await {
        Err(_) => Some("warehouse: no answer within 5 s\n".to_owned()),
        Ok(Err(e)) => Some(format!("warehouse: {e}\n")),
        Ok(Ok(rows)) => {
            let failed: String = rows
                .iter()
                .filter(|r| r.state == "failed")
                .map(|r| format!("source {} failed\n", r.source))
                .collect();
            (!failed.is_empty()).then_some(failed)
        }
    }
}

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (the warehouse can be
/// read and no source has failed) until the listener fails.
pub async fn serve(listen: &str, wh: Warehouse) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let exporter = Arc::new(Exporter::install(wh.clone()));
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let exporter = exporter.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        exporter.scrape().await,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let wh = wh.clone();
                async move {
                    match not_ready(&wh).await {
                        None => (StatusCode::OK, "ready\n".to_owned()).into_response(),
                        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(listen, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app).await
}
