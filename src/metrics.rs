//! `/metrics` (Prometheus text format) and `/healthz` for `ebis run`, when
//! `metrics.listen` is set. Figures are read from the warehouse at each scrape — the same
//! ones `ebis status` shows — so they agree whichever process serves them.
//!
//! Labels are bounded: the source name and its state; never keys or values.

use crate::warehouse::Warehouse;
use std::fmt::Write as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Metric names, in one place.
pub mod names {
    /// Rows applied since the source first ran.
    pub const ROWS_APPLIED: &str = "ebis_rows_applied_total";
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
    /// 1 for the source's current state.
    pub const STATE: &str = "ebis_source_state";
    /// Change-table rows purged at the source.
    pub const PURGED: &str = "ebis_change_rows_purged_total";
    /// Times the stored position expired and the source was snapshotted again.
    pub const RESNAPSHOTS: &str = "ebis_resnapshots_total";
    /// Bytes the source keeps for ebis (a logical slot's retained WAL).
    pub const SOURCE_BACKLOG: &str = "ebis_source_backlog_bytes";
    /// Statements queued for the enterprise base and not yet taken in.
    pub const BASE_QUEUED: &str = "ebis_base_queued_statements";
    /// Seconds since the oldest statement still queued for the enterprise base.
    pub const BASE_LAG: &str = "ebis_base_lag_seconds";
    /// Statements the enterprise base refused, parked with their reasons.
    pub const BASE_PARKED: &str = "ebis_base_parked_statements";
}

/// The metrics page.
pub async fn render(wh: &Warehouse) -> Result<String, crate::warehouse::WarehouseError> {
    let rows = wh.status().await?;
    let mut out = String::new();
    let help = [
        (
            names::ROWS_APPLIED,
            "counter",
            "Rows applied to the warehouse.",
        ),
        (
            names::LAG,
            "gauge",
            "Seconds since every change of the source was applied.",
        ),
        (
            names::QUARANTINED,
            "gauge",
            "Rejected rows not yet resolved.",
        ),
        (
            names::GAPS,
            "gauge",
            "Changelog sequence gaps still awaited.",
        ),
        (
            names::EXPIRED_GAPS,
            "gauge",
            "Changelog gaps past their timeout, still watched for late commits.",
        ),
        (
            names::LATE,
            "counter",
            "Changes that arrived late: committed after their gap expired, or found by a key scan below the timestamp mark.",
        ),
        (
            names::FUTURE,
            "gauge",
            "Rows whose modified time is ahead of the source's clock (timestamp capture).",
        ),
        (
            names::STATE,
            "gauge",
            "The source's state (1 for the current one).",
        ),
        (
            names::PURGED,
            "counter",
            "Change-table rows ebis purged at the source after the warehouse stored them.",
        ),
        (
            names::RESNAPSHOTS,
            "counter",
            "Times the source's stored position expired and it was snapshotted again.",
        ),
        (
            names::SOURCE_BACKLOG,
            "gauge",
            "Bytes the source keeps on its disk for ebis (a PostgreSQL logical slot's retained WAL), as last read.",
        ),
    ];
    for (name, kind, text) in help {
        let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
        for r in &rows {
            let value = match name {
                n if n == names::ROWS_APPLIED => Some(r.rows_applied as f64),
                n if n == names::LAG => r.lag_seconds,
                n if n == names::QUARANTINED => Some(r.quarantined_open as f64),
                n if n == names::GAPS => Some(f64::from(r.open_gaps)),
                n if n == names::EXPIRED_GAPS => Some(f64::from(r.expired_gaps)),
                n if n == names::LATE => Some(r.late_changes as f64),
                n if n == names::FUTURE => Some(f64::from(r.future_rows)),
                n if n == names::PURGED => Some(r.changes_purged as f64),
                n if n == names::RESNAPSHOTS => Some(f64::from(r.resnapshots)),
                n if n == names::SOURCE_BACKLOG => r.backlog_bytes.map(|b| b as f64),
                _ => None,
            };
            if name == names::STATE {
                let _ = writeln!(
                    out,
                    "{name}{{source=\"{}\",state=\"{}\"}} 1",
                    r.source, r.state
                );
            } else if let Some(v) = value {
                let _ = writeln!(out, "{name}{{source=\"{}\"}} {v}", r.source);
            }
        }
    }
    let base = wh.base_status().await?;
    let lag = base.oldest.map_or(0.0, |o| {
        (chrono::Utc::now() - o).num_milliseconds().max(0) as f64 / 1000.0
    });
    let _ = writeln!(
        out,
        "# HELP {q} Statements queued for the enterprise base and not yet taken in.\n# TYPE {q} gauge\n{q} {}\n# HELP {l} Seconds since the oldest statement still queued for the enterprise base.\n# TYPE {l} gauge\n{l} {lag}\n# HELP {p} Statements the enterprise base refused, parked with their reasons.\n# TYPE {p} gauge\n{p} {}",
        base.queued,
        base.parked,
        q = names::BASE_QUEUED,
        l = names::BASE_LAG,
        p = names::BASE_PARKED
    );
    Ok(out)
}

/// Serves `/metrics` and `/healthz` until the listener fails.
pub async fn serve(listen: &str, wh: Warehouse) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    tracing::info!(listen, "serving /metrics and /healthz");
    loop {
        let (mut socket, _) = listener.accept().await?;
        let wh = wh.clone();
        tokio::spawn(async move {
            let head = read_head(&mut socket).await;
            let request = String::from_utf8_lossy(&head);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => match render(&wh).await {
                    Ok(b) => ("200 OK", b),
                    Err(e) => ("503 Service Unavailable", format!("warehouse: {e}\n")),
                },
                "/healthz" => match wh.status().await {
                    Ok(rows) if rows.iter().all(|r| r.state != "failed") => {
                        ("200 OK", "ok\n".to_owned())
                    }
                    Ok(rows) => (
                        "503 Service Unavailable",
                        rows.iter()
                            .filter(|r| r.state == "failed")
                            .map(|r| format!("source {} failed\n", r.source))
                            .collect(),
                    ),
                    Err(e) => ("503 Service Unavailable", format!("warehouse: {e}\n")),
                },
                _ => ("404 Not Found", "not found\n".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

/// The request line and headers: read until the blank line (a request may arrive in
/// pieces, and closing with unread bytes would reset the connection), at most 8 KiB or 5 s.
async fn read_head(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    head
}
