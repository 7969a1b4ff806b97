//! How a source is captured and set up: the capture mode and its settings, as every
//! connector receives them, and the scripts a connector renders for the bureau's DBA.

use crate::TablePlan;
use std::time::Duration;

/// How long changelog gaps are awaited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapRules {
    /// Open gaps older than this expire (stop holding lag back).
    pub timeout: Duration,
    /// Expired gaps are watched this long for late commits.
    pub watch: Duration,
}

/// How a source's changes are captured; a connector refuses a mode its dialect lacks.
#[derive(Clone, Debug, PartialEq)]
pub enum Capture {
    /// A change table filled by triggers (or the dialect's own change records).
    Changelog {
        /// How long skipped sequence numbers are awaited, and watched once expired.
        gaps: GapRules,
        /// ebis deletes the change rows the warehouse has stored (the reading account
        /// needs DELETE on the change table).
        purge: bool,
    },
    /// A last-modified column per table, re-read with an overlap; deletes are found by
    /// comparing keys.
    Timestamp {
        /// How far back each poll re-reads, for transactions that commit late.
        overlap: Duration,
    },
    /// The server's own change tracking (SQL Server Change Tracking).
    ChangeTracking,
    /// The server's row-based binary log (MySQL/MariaDB), read as a replica would: no
    /// triggers and no tables on the source.
    Binlog {
        /// The replica id ebis registers with (unique among the server's replicas: a
        /// second connection with the same id makes the server drop the first).
        server_id: u32,
    },
    /// PostgreSQL logical decoding: a publication names the captured tables, a logical
    /// replication slot keeps their changes (pgoutput) until ebis confirms them.
    Logical {
        /// The slot's name (one per source: a slot has one reader).
        slot: String,
        /// The publication's name.
        publication: String,
    },
}

impl Capture {
    /// The mode's name in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Capture::Changelog { .. } => "changelog",
            Capture::Timestamp { .. } => "timestamp",
            Capture::ChangeTracking => "change_tracking",
            Capture::Binlog { .. } => "binlog",
            Capture::Logical { .. } => "logical",
        }
    }
}

/// What a setup script is for.
#[derive(Clone, Debug)]
pub struct SetupRequest<'a> {
    /// The source's name.
    pub source: &'a str,
    /// The tables captured.
    pub plans: &'a [TablePlan],
    /// The capture mode.
    pub capture: &'a Capture,
    /// The account ebis reads with (for the grants shown).
    pub reader: &'a str,
}

/// Statements a DBA runs, and the commented script shown for review.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetupScript {
    /// Statements to run, in order, each a single statement without comments (empty when
    /// the mode installs nothing).
    pub statements: Vec<String>,
    /// The statements with grants and advice, as comments, in the dialect's syntax.
    pub script: String,
}
