//! Commands that bring their own world: `demo` (private servers, simulated bureaus, the
//! live pipeline) and `bench` (measurements in throwaway databases).

use super::BenchKind;
use super::context::{on_signals, runtime};
use anyhow::Result;
use ebis::pipeline::Shutdown;
use std::process::ExitCode;

pub fn demo(opts: ebis::demo::DemoOptions) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let (trigger, shutdown) = Shutdown::new();
        on_signals(trigger);
        let summary = ebis::demo::run(&opts, shutdown).await?;
        print!("{}", summary.render());
        Ok(if summary.verify.iter().all(|r| r.agrees()) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

pub fn bench(what: BenchKind) -> Result<ExitCode> {
    let progress = |line: &str| eprintln!("bench: {line}");
    match what {
        BenchKind::Capture {
            rows,
            changes,
            writers,
            batch_size,
            servers,
        } => {
            let (mysql, pg) = servers.accounts()?;
            let opts = ebis::bench::BenchOptions {
                mysql,
                pg,
                rows,
                changes,
                writers,
                batch_size,
                keep: servers.keep,
            };
            let report = runtime()?.block_on(ebis::bench::run(&opts, progress))?;
            print!("{}", report.render());
        }
        BenchKind::Compare {
            enterprises,
            servers,
        } => {
            let (mysql, pg) = servers.accounts()?;
            let report = runtime()?.block_on(ebis::bench::compare_bench(
                &mysql,
                &pg,
                enterprises,
                servers.keep,
                progress,
            ))?;
            print!("{}", report.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}
