//! `gossipd sim`: runs a [`Scenario`] and prints its report, writes it as JSON with
//! `--report`, then prints the host's own cost on a separate line.
//!
//! The only part of the simulator that reads the wall clock (the progress line on stderr
//! and the final resource line) or the OS RNG (when no `--rng-seed` is given). Nothing it
//! reads reaches the report, so the same seed gives a byte-identical report.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use super::args::SimArgs;
use super::scenario::{simulate, Outcome, Progress, Scenario};
use crate::{pages, procstat};

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// Runs `gossipd sim`; Ok(true) when every expected delivery was made.
pub fn run(args: &SimArgs) -> Result<bool> {
    let rng_seed = args.stress.rng_seed.unwrap_or_else(rand::random);
    let scenario = Scenario {
        exits_after: true,
        ..args.scenario(rng_seed)?
    };
    let mut events = match &args.stress.events {
        Some(path) => Some(BufWriter::new(File::create(path).with_context(|| {
            format!("cannot create the events file {}", path.display())
        })?)),
        None => None,
    };
    let started = Instant::now();
    let mut last = started;
    let mut print_progress = |p: &Progress| {
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            eprintln!(
                "sim     {:.3} s virtual: {} of {} deliveries, {} of {} messages created, {} inputs queued ({:.0} s wall)",
                p.virtual_ms as f64 / 1000.0,
                p.made,
                p.expected,
                p.created,
                p.planned,
                p.pending,
                started.elapsed().as_secs_f64()
            );
        }
    };
    let out = events.as_mut().map(|w| w as &mut dyn Write);
    let outcome = simulate(&scenario, out, &mut print_progress)?;
    let wall = started.elapsed();
    if let Some(e) = outcome.events_error {
        anyhow::bail!("cannot write the events file: {e}");
    }
    println!("{}", outcome.report.render());
    println!("{}", network_line(&outcome));
    if let Some(path) = &args.stress.report {
        let mut json = serde_json::to_vec_pretty(&outcome.report)?;
        json.push(b'\n');
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    print_resources(wall);
    Ok(outcome.report.complete())
}

/// What the virtual network carried: deterministic, but not part of the report's fields.
fn network_line(outcome: &Outcome) -> String {
    let n = &outcome.net;
    let end = if outcome.finished {
        "everything planned happened"
    } else {
        "stopped at the deadline"
    };
    format!(
        "  network      {} inputs handled, {} frames sent, {} lost, {} cut off, {} connects refused; {end}",
        n.inputs, n.frames_sent, n.frames_lost, n.frames_cut, n.connects_refused
    )
}

/// The host's cost, which varies from run to run and so stays out of the report.
fn print_resources(wall: Duration) {
    let cpu = procstat::cpu_seconds().map_or("-".into(), |s| format!("{s:.1} s"));
    let mib = |k: u64| format!("{:.0} MiB", k as f64 / 1024.0);
    let rss = procstat::peak_rss_kib().map_or("-".into(), mib);
    let huge = procstat::huge_pages_kib().map_or("-".into(), mib);
    let thp = pages::ALLOW_THP;
    let setting = std::env::var(thp).unwrap_or_else(|_| "unset".into());
    println!(
        "host         wall {:.1} s, CPU {cpu}, peak RSS {rss}, huge pages {huge} at the end ({thp}={setting}) (not part of the report)",
        wall.as_secs_f64()
    );
}
