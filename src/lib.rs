//! ebis: change-data-capture from the bureaus' databases into one PostgreSQL warehouse.
//!
//! The library holds everything the `ebis` binary runs; `main.rs` only parses the command
//! line. See ARCHITECTURE.md for the flow: connector → mapping → warehouse → triggers → views.

pub mod assets;
pub mod bench;
pub mod check;
pub mod compare;
pub mod config;
pub mod demo;
pub mod diagnostic;
pub mod identifiers;
pub mod indicators;
pub mod mapping;
pub mod metrics;
pub mod pipeline;
pub mod rules;
pub mod secret;
pub mod setup;
pub mod status;
pub mod table;
pub mod verify;
pub mod warehouse;
pub mod yaml;
pub mod zone;
