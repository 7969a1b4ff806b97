//! The world in motion: events at a target rate, each changing the model and writing
//! exactly the rows it changed into the bureaus' databases.

use super::native::{Rows, diff, enterprise_rows, unlicensed_rows};
use super::world::{AicState, World};
use crate::rules::Rule;
use chrono::Days;

/// One event's effect: rows to upsert and keys to delete.
pub type Change = (Rows, Vec<(&'static str, mysql_async::Value)>);

impl World {
    /// One random event, at the simulator's own rates.
    pub fn event(&mut self) -> Change {
        let roll = self.rng_below(1000);
        if roll < 40 {
            let before = self.unlicensed.len();
            self.report_unlicensed();
            return match self.unlicensed.get(before) {
                Some(u) => (unlicensed_rows(u), Vec::new()),
                None => (Rows::new(), Vec::new()),
            };
        }
        if roll < 260 || self.enterprises.is_empty() {
            let back = self.rng_below(200);
            let established = self.options.as_of - Days::new(back);
            let i = self.establish(established);
            self.maybe_inject(i);
            return (enterprise_rows(&self.enterprises[i]), Vec::new());
        }
        let i = self.rng_below(self.enterprises.len() as u64) as usize;
        let before = enterprise_rows(&self.enterprises[i]);
        // An enterprise with an injected discrepancy keeps it: only paperwork happens to it.
        let roll = if self.enterprises[i].injected.is_empty() {
            roll
        } else {
            900
        };
        match roll {
            260..=379 => self.rename_followed(i),
            380..=479 => self.move_followed(i),
            480..=619 => self.penalty(i),
            620..=719 => self.abnormal_lifted(i),
            720..=799 => self.deregister(i),
            800..=839 => self.revoke(i),
            840..=969 => self.certificate_check(i),
            _ => {
                if self.enterprises[i].aic == AicState::Active {
                    let rule = Rule::ALL[self.rng_below(14) as usize];
                    self.inject(i, rule);
                }
            }
        }
        diff(&before, &enterprise_rows(&self.enterprises[i]))
    }
}
