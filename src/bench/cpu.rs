//! CPU time of the processes a benchmark phase keeps busy: the warehouse server (every
//! PostgreSQL process of it), the source server and ebis itself, read from `/proc` when
//! the servers run on this machine. With the machine's cores, a phase's CPU seconds give
//! the shortest time it could take if every core were busy throughout — the floor
//! beside which its measured time is read. The machine's own counters (`/proc/stat`)
//! say where the rest went: cores idle (and of that, idle while I/O was outstanding:
//! WAL and data files written and synced, pages read), taken by the hypervisor, or used
//! by other processes.

use mysql_async::prelude::Queryable;

/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// Where the CPU time is read from.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuProbe {
    /// The warehouse server's postmaster (`None`: not on this machine, or its data
    /// directory is not readable).
    warehouse: Option<u32>,
    /// The source server's process.
    source: Option<u32>,
}

/// CPU seconds used so far (a reading) or during a phase (a difference of readings).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    /// Every process of the warehouse server: backends, parallel workers, WAL writer,
    /// checkpointer, autovacuum (exited ones counted by their postmaster).
    pub warehouse: Option<f64>,
    /// The source server.
    pub source: Option<f64>,
    /// This process.
    pub ebis: f64,
    /// The whole machine, all cores (`None` without `/proc/stat`).
    pub machine: Option<MachineTimes>,
}

/// Core-seconds of the whole machine, from `/proc/stat`'s first line.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineTimes {
    /// Every state counted.
    pub total: f64,
    /// Idle with no I/O outstanding.
    pub idle: f64,
    /// Idle while I/O was outstanding (`iowait`).
    pub iowait: f64,
    /// Taken by the hypervisor for other guests (`steal`).
    pub steal: f64,
}

impl MachineTimes {
    /// Reads `/proc/stat`.
    fn read() -> Option<MachineTimes> {
        MachineTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// From the text of `/proc/stat`: its `cpu` line's user, nice, system, idle, iowait,
    /// irq, softirq and steal (guest time is counted in user already).
    fn parse(stat: &str) -> Option<MachineTimes> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let ticks: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|t| t.parse::<f64>().ok())
            .collect::<Option<_>>()?;
        if ticks.len() < 8 {
            return None;
        }
        Some(MachineTimes {
            total: ticks.iter().sum::<f64>() / TICKS,
            idle: ticks[3] / TICKS,
            iowait: ticks[4] / TICKS,
            steal: ticks[7] / TICKS,
        })
    }

    fn since(&self, earlier: &MachineTimes) -> MachineTimes {
        MachineTimes {
            total: self.total - earlier.total,
            idle: self.idle - earlier.idle,
            iowait: self.iowait - earlier.iowait,
            steal: self.steal - earlier.steal,
        }
    }
}

impl CpuProbe {
    /// Finds the servers' processes: PostgreSQL's postmaster from its data directory's
    /// `postmaster.pid` (when the connection's backend is its child), MySQL/MariaDB's
    /// from its pid file.
    pub async fn find(warehouse: &tokio_postgres::Client, source: &mysql_async::Pool) -> CpuProbe {
        // The postmaster named in the data directory, if this connection's backend is a
        // child of it (a server elsewhere may have the same data directory path).
        let warehouse = match warehouse
            .query_one(
                "select current_setting('data_directory'), pg_backend_pid()",
                &[],
            )
            .await
        {
            Ok(row) => {
                let dir: String = row.get(0);
                let backend: i32 = row.get(1);
                first_line_pid(&format!("{dir}/postmaster.pid")).filter(|&postmaster| {
                    u32::try_from(backend)
                        .ok()
                        .and_then(stat_fields)
                        .and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
                        == Some(postmaster)
                })
            }
            Err(_) => None,
        };
        let source = match source.get_conn().await {
            Ok(mut c) => match c.query_first::<String, _>("SELECT @@pid_file").await {
                Ok(Some(file)) => first_line_pid(&file),
                _ => None,
            },
            Err(_) => None,
        };
        CpuProbe { warehouse, source }
    }

    /// The CPU seconds each has used so far.
    pub fn read(&self) -> CpuTimes {
        CpuTimes {
            warehouse: self.warehouse.and_then(tree_cpu),
            source: self.source.and_then(|p| process_cpu(p, false)),
            ebis: process_cpu(std::process::id(), false).unwrap_or(0.0),
            machine: MachineTimes::read(),
        }
    }
}

impl CpuTimes {
    /// What was used between `earlier` and this reading.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        let diff = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        CpuTimes {
            warehouse: diff(self.warehouse, earlier.warehouse),
            source: diff(self.source, earlier.source),
            ebis: self.ebis - earlier.ebis,
            machine: match (self.machine, earlier.machine) {
                (Some(now), Some(then)) => Some(now.since(&then)),
                _ => None,
            },
        }
    }

    /// One line: each process's seconds, their sum, and the shortest time `rows` could
    /// take on `cores` cores at that cost (`None` unless both servers were measured).
    pub fn render(&self, cores: usize, rows: u64, unit: &str) -> String {
        let (Some(wh), Some(src)) = (self.warehouse, self.source) else {
            return format!(
                "ebis {:.1} s (the servers are not on this machine, or their pid files are not readable)",
                self.ebis
            );
        };
        let total = wh + src + self.ebis;
        let floor = total / cores.max(1) as f64;
        let mut line = format!(
            "warehouse server {wh:.1} s, source server {src:.1} s, ebis {:.1} s = {total:.1} core-seconds ({:.1} µs per {unit}); on {cores} cores at least {floor:.1} s = at most {:.0} {unit}s/s",
            self.ebis,
            total * 1e6 / rows.max(1) as f64,
            rows as f64 / floor.max(1e-9)
        );
        if let Some(m) = self.machine {
            // Busy time the three were not charged: other processes, and work the kernel
            // charges to no process (interrupts).
            let others = (m.total - m.idle - m.iowait - m.steal - total).max(0.0);
            line.push_str(&format!(
                "; of the machine's {:.1} core-seconds meanwhile, {:.1} idle, {:.1} idle waiting on I/O, {:.1} taken by the hypervisor, {others:.1} used otherwise",
                m.total, m.idle, m.iowait, m.steal
            ));
        }
        line
    }
}

/// The pid on the first line of a pid file.
fn first_line_pid(path: &str) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The fields of `/proc/<pid>/stat` after the command's closing parenthesis.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// A process's CPU seconds (utime + stime: the 12th and 13th fields after the command),
/// with its exited and reaped children's (cutime + cstime, the 14th and 15th) when
/// `children`.
fn process_cpu(pid: u32, children: bool) -> Option<f64> {
    cpu_of(&stat_fields(pid)?, children)
}

fn cpu_of(fields: &[String], children: bool) -> Option<f64> {
    let field = |i: usize| fields.get(i)?.parse::<f64>().ok();
    let own = field(11)? + field(12)?;
    let reaped = if children {
        field(13)? + field(14)?
    } else {
        0.0
    };
    Some((own + reaped) / TICKS)
}

/// A server that forks a process per connection (PostgreSQL): the parent with its reaped
/// children, plus every live child.
fn tree_cpu(parent: u32) -> Option<f64> {
    let mut total = process_cpu(parent, true)?;
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == parent {
            continue;
        }
        if let Some(fields) = stat_fields(pid)
            && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent)
        {
            total += cpu_of(&fields, false).unwrap_or(0.0);
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(utime: u64, stime: u64, cutime: u64, cstime: u64) -> Vec<String> {
        // state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime ...
        let mut f: Vec<String> = ["S", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        f.extend([utime, stime, cutime, cstime].map(|n| n.to_string()));
        f
    }

    #[test]
    fn a_process_counts_its_reaped_children_only_when_asked() {
        let f = fields(250, 50, 1000, 200);
        assert_eq!(cpu_of(&f, false), Some(3.0));
        assert_eq!(cpu_of(&f, true), Some(15.0));
    }

    #[test]
    fn this_process_has_used_some_cpu_and_a_phase_is_the_difference() {
        let probe = CpuProbe::default();
        let before = probe.read();
        // Busy until the kernel has counted a tick of it (it counts in hundredths).
        let mut x = 0u64;
        let start = std::time::Instant::now();
        let mut after = probe.read();
        while after.ebis <= before.ebis && start.elapsed() < std::time::Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            after = probe.read();
        }
        std::hint::black_box(x);
        let used = after.since(&before);
        assert!(used.ebis > 0.0, "{used:?}");
        assert_eq!(used.warehouse, None);
        assert!(used.render(2, 1000, "row").starts_with("ebis "));
    }

    #[test]
    fn the_floor_is_the_core_seconds_shared_by_the_cores() {
        let t = CpuTimes {
            warehouse: Some(30.0),
            source: Some(2.0),
            ebis: 8.0,
            machine: None,
        };
        let line = t.render(2, 1_000_000, "row");
        assert!(
            line.contains("= 40.0 core-seconds (40.0 µs per row)"),
            "{line}"
        );
        assert!(
            line.contains("on 2 cores at least 20.0 s = at most 50000 rows/s"),
            "{line}"
        );
    }

    #[test]
    fn the_machine_says_where_the_cores_went_that_the_three_did_not_use() {
        // user nice system idle iowait irq softirq steal guest guest_nice, in ticks
        let before = MachineTimes::parse(
            "cpu  1000 0 500 8000 200 0 100 0 0 0\ncpu0 500 0 250 4000 100 0 50 0 0 0\nintr 1\n",
        )
        .expect("a /proc/stat text");
        let after = MachineTimes::parse(
            "cpu  5500 0 1500 9000 1200 0 300 100 0 0\ncpu0 2500 0 750 4500 600 0 150 50 0 0\nintr 1\n",
        )
        .expect("a /proc/stat text");
        let m = after.since(&before);
        assert_eq!(m.total, 78.0);
        assert_eq!((m.idle, m.iowait, m.steal), (10.0, 10.0, 1.0));
        let t = CpuTimes {
            warehouse: Some(40.0),
            source: Some(5.0),
            ebis: 10.0,
            machine: Some(m),
        };
        let line = t.render(2, 1_000_000, "row");
        assert!(
            line.ends_with("of the machine's 78.0 core-seconds meanwhile, 10.0 idle, 10.0 idle waiting on I/O, 1.0 taken by the hypervisor, 2.0 used otherwise"),
            "{line}"
        );
        assert_eq!(MachineTimes::parse("cpu  1 2 3\n"), None);
        assert!(MachineTimes::read().is_some_and(|m| m.total > 0.0));
    }
}
