//! The contract between ebis and its source connectors.
//!
//! A connector reads one bureau database and hands the pipeline [`Change`]s: one committed
//! row change each, with the row's current values, an ordering stamp, and the [`Position`]
//! to resume from. Connectors only read: they never write to the warehouse and never
//! decide when a checkpoint advances — the pipeline does, in the same transaction as the
//! data the checkpoint covers.
//!
//! This crate holds no driver code and no I/O; it must stay small so that every connector
//! crate (one per dialect, each with a heavy driver) and the app meet only here.

mod capture;
mod change;
mod error;
mod plan;
mod position;
mod source;
mod text;
pub mod tls;
mod value;

pub use capture::{Capture, GapRules, SetupRequest, SetupScript};
pub use change::{Batch, Change, GapEvent, Op};
pub use error::{SourceError, scrub_values};
pub use plan::{Expression, TablePlan};
pub use position::{Gap, GapFate, MarkValue, Position, TableMark};
pub use source::{Clock, KeyEntry, Source};
pub use text::{assert_golden, percent_decode, percent_encode};
pub use value::{Row, Value, date_text, datetime_text, key_text, key_values, storable_text};
