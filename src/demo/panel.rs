//! What the demo shows: the live panel (redrawn in place on a terminal, a block every 5 s
//! otherwise) and the closing summary.

use super::DemoSummary;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The live panel: redrawn in place on a terminal, a line every 5 s otherwise.
pub struct Panel {
    tty: bool,
    lines: usize,
    last: Vec<(String, i64, Instant)>,
    rates: Vec<(String, f64)>,
    ticks: u64,
}

impl Panel {
    /// A panel for stdout.
    pub fn new() -> Panel {
        Panel {
            tty: std::io::stdout().is_terminal(),
            lines: 0,
            last: Vec::new(),
            rates: Vec::new(),
            ticks: 0,
        }
    }

    /// Redraws the panel.
    pub fn draw(
        &mut self,
        status: &[crate::status::SourceStatus],
        elapsed: Duration,
        total: Duration,
        events: u64,
    ) {
        self.ticks += 1;
        let now = Instant::now();
        for s in status {
            let rate = match self.last.iter().find(|(n, _, _)| *n == s.source) {
                Some((_, rows, at)) => {
                    (s.rows_applied - rows) as f64
                        / now.duration_since(*at).as_secs_f64().max(0.001)
                }
                None => 0.0,
            };
            match self.rates.iter_mut().find(|(n, _)| *n == s.source) {
                Some((_, r)) => *r = 0.5 * *r + 0.5 * rate,
                None => self.rates.push((s.source.clone(), rate)),
            }
        }
        self.last = status
            .iter()
            .map(|s| (s.source.clone(), s.rows_applied, now))
            .collect();
        use crate::table::Align::{Left, Right};
        let mut text = format!(
            "ebis demo — live {:>3}/{} s, simulator {} events   (Ctrl-C ends early)\n",
            elapsed.as_secs(),
            total.as_secs(),
            events
        );
        let rows: Vec<Vec<String>> = status
            .iter()
            .map(|s| {
                let rate = self
                    .rates
                    .iter()
                    .find(|(n, _)| *n == s.source)
                    .map(|(_, r)| *r)
                    .unwrap_or(0.0);
                vec![
                    s.source.clone(),
                    s.state.clone(),
                    s.rows_applied.to_string(),
                    format!("{rate:.0}"),
                    s.lag_seconds
                        .map(crate::status::human_seconds)
                        .unwrap_or_else(|| "-".to_owned()),
                    s.quarantined_open.to_string(),
                    s.open_gaps.to_string(),
                ]
            })
            .collect();
        text.push_str(&crate::table::render(
            &[
                ("SOURCE", Left),
                ("STATE", Left),
                ("ROWS", Right),
                ("CHANGES/S", Right),
                ("LAG", Right),
                ("QUARANTINE", Right),
                ("GAPS", Right),
            ],
            &rows,
        ));
        let mut out = std::io::stdout().lock();
        if self.tty {
            if self.lines > 0 {
                let _ = write!(out, "\x1b[{}A", self.lines);
            }
            for line in text.lines() {
                let _ = writeln!(out, "\x1b[2K{line}");
            }
            self.lines = text.lines().count();
        } else if self.ticks % 5 == 1 {
            let _ = write!(out, "{text}");
        }
        let _ = out.flush();
    }

    /// Leaves the panel as it is.
    pub fn done(&mut self) {
        let _ = std::io::stdout().flush();
    }
}

impl DemoSummary {
    /// The summary as text.
    pub fn render(&self) -> String {
        let mut lags = self.lags.clone();
        lags.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            lags.get(((lags.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let agree = self.verify.iter().filter(|r| r.agrees()).count();
        let mut out = format!(
            "\n== ebis demo summary ==\n\
             set-up (servers, load, capture): {:.1} s; {} rows loaded into the bureaus' databases\n\
             first snapshot of all sources done after {:.1} s\n\
             live {:.0} s: {} simulator events ({:.0}/s) wrote {} rows; warehouse applied {} rows in all\n\
             lag while live (worst source, per second): median {:.1} s, p95 {:.1} s, max {:.1} s\n\
             after the simulator stopped, the warehouse equalled the sources in {:.1} s: {}/{} record kinds agree\n",
            self.setup_secs,
            self.rows_loaded,
            self.snapshot_secs,
            self.live_secs,
            self.events,
            self.events as f64 / self.live_secs.max(0.001),
            self.rows_written,
            self.rows_applied,
            pct(0.5),
            pct(0.95),
            pct(1.0),
            self.catch_up_secs,
            agree,
            self.verify.len()
        );
        if agree < self.verify.len() {
            out.push_str(&crate::verify::render(&self.verify));
        }
        out.push_str(&format!(
            "ground truth: {} ({} findings expected)\n",
            self.truth_path.display(),
            self.truth_per_rule.iter().map(|(_, n)| n).sum::<usize>()
        ));
        if let Some(c) = &self.compare {
            out.push_str(&format!(
                "consistency comparison as of {} took {:.2} s; its findings against the ground truth:\n",
                c.as_of, c.seconds
            ));
            out.push_str(&crate::compare::render_scores(&self.scores));
        }
        out.push_str(&format!("warehouse:  psql '{}'\n", self.warehouse_url));
        for (b, url) in &self.source_urls {
            let rest = url.trim_start_matches("mysql://");
            let (user, hostdb) = rest.split_once('@').unwrap_or(("root", rest));
            let (hostport, db) = hostdb.split_once('/').unwrap_or((hostdb, ""));
            let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
            out.push_str(&format!(
                "{:<11} mariadb -h {host} -P {port} -u {user} {db}\n",
                format!("{}:", b.code())
            ));
        }
        match &self.stop_hint {
            Some(h) => out.push_str(&format!("servers kept running; stop them with:\n  {h}\n")),
            None => out.push_str("servers stopped (use --keep to leave them running)\n"),
        }
        out
    }
}
