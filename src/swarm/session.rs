//! One `gossipd swarm` run, start to end: lay the nodes out, start the workers, wait
//! until every node is bound, start the run, watch it (spread lines on stdout, one
//! updating progress line on stderr) until it is complete, time is up, a worker is lost
//! or Ctrl+C, then stop every worker and print (and write) the report of what was
//! gathered.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::gather::Gather;
use super::layout::{default_workers, Layout};
use super::supervisor::{Heard, Supervisor, BIND_TIMEOUT};
use super::wire::ToWorker;
use super::SwarmArgs;
use crate::net::NetStats;
use crate::proto::Millis;
use crate::report::Report;
use crate::stress::StressArgs;

/// How often the completion check and the progress line are refreshed.
const TICK: Duration = Duration::from_millis(250);
/// Without a terminal the progress line is printed whole, this often.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Why the run ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Complete,
    TimeUp,
    Interrupted,
    WorkerLost(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Complete => write!(f, "complete"),
            Outcome::TimeUp => write!(f, "time is up"),
            Outcome::Interrupted => write!(f, "interrupted"),
            Outcome::WorkerLost(why) => write!(f, "stopped: {why}"),
        }
    }
}

/// The JSON written with `--report`: the stress report plus what only a swarm knows.
#[derive(Serialize)]
struct SwarmJson<'a> {
    #[serde(flatten)]
    report: &'a Report,
    outcome: String,
    /// From the command to the start signal: workers started and every listener bound.
    bind_ms: Millis,
    worker_pids: Vec<u32>,
    net: NetStats,
}

/// The single updating progress line on stderr.
struct Status {
    tty: bool,
    shown: bool,
    last_plain: Option<Instant>,
}

impl Status {
    fn new() -> Self {
        Status {
            tty: std::io::stderr().is_terminal(),
            shown: false,
            last_plain: None,
        }
    }

    fn show(&mut self, line: &str) {
        if self.tty {
            eprint!("\r\x1b[K{line}");
            self.shown = true;
        } else if self
            .last_plain
            .is_none_or(|t| t.elapsed() >= PLAIN_PROGRESS_EVERY)
        {
            eprintln!("progress {line}");
            self.last_plain = Some(Instant::now());
        }
        let _ = std::io::stderr().flush();
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }

    fn print(&mut self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        self.clear();
        let mut out = std::io::stdout().lock();
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
}

struct Session<'a> {
    stress: &'a StressArgs,
    rng_seed: u64,
    sup: Supervisor,
    gather: Gather,
    status: Status,
    began: Instant,
    /// When the start signal went out.
    t0: Option<Instant>,
}

pub fn run(args: &SwarmArgs) -> Result<bool> {
    let stress = &args.stress;
    let rng_seed = stress.rng_seed.unwrap_or_else(rand::random);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = args
        .workers
        .unwrap_or_else(|| default_workers(stress, cores));
    Layout::new(stress, workers)?;
    let plan = stress.plan(rng_seed);
    println!(
        "swarm   {} seeds, {} peers in {workers} worker processes on 127.0.0.0/8; {} originators x {} \
         messages every {} ms (rng seed {rng_seed})",
        stress.seeds,
        stress.peers,
        plan.originators.len(),
        stress.messages,
        stress.gossip_interval
    );
    if let Some(base) = &stress.events {
        super::worker::remove_stale_events(base, workers)
            .with_context(|| format!("cannot remove old events files {}.w*", base.display()))?;
    }
    let began = Instant::now();
    let sup = Supervisor::spawn(stress, workers, rng_seed)?;
    let mut s = Session {
        stress,
        rng_seed,
        sup,
        gather: Gather::new(stress, plan, workers),
        status: Status::new(),
        began,
        t0: None,
    };
    let outcome = s.drive()?;
    s.finish(outcome, args.stress.report.as_deref())
}

impl Session<'_> {
    fn drive(&mut self) -> Result<Outcome> {
        let (seeds, peers) = match self.wait_bound()? {
            Ok(addrs) => addrs,
            Err(outcome) => return Ok(outcome),
        };
        self.gather.set_peers(&peers);
        self.sup.tell_all(&ToWorker::Start { seeds, peers });
        self.t0 = Some(Instant::now());
        self.watch()
    }

    /// Waits until every worker has bound its nodes; their addresses, by seed and by
    /// peer index.
    #[allow(clippy::type_complexity)]
    fn wait_bound(&mut self) -> Result<Result<(Vec<SocketAddr>, Vec<SocketAddr>), Outcome>> {
        let mut seeds = vec![None; self.stress.seeds];
        let mut peers = vec![None; self.stress.peers];
        let mut bound = 0;
        let end = Instant::now() + BIND_TIMEOUT;
        while bound < self.gather.workers() {
            for h in self.sup.hear(TICK)? {
                match h {
                    Heard::Bound {
                        seeds: s, peers: p, ..
                    } => {
                        bound += 1;
                        place(&mut seeds, s);
                        place(&mut peers, p);
                    }
                    Heard::Lost(w, why) => return Ok(Err(self.lost(w, &why))),
                    Heard::Progress(..) | Heard::Done(..) => {}
                }
            }
            if self.sup.interrupted() {
                return Ok(Err(Outcome::Interrupted));
            }
            if Instant::now() >= end {
                bail!("the workers did not bind their listeners within {BIND_TIMEOUT:?}");
            }
        }
        let seeds = complete(seeds).context("a seed was not bound by any worker")?;
        let peers = complete(peers).context("a peer was not bound by any worker")?;
        Ok(Ok((seeds, peers)))
    }

    fn lost(&self, w: usize, why: &str) -> Outcome {
        let pid = self.sup.pids().get(w).copied().unwrap_or(0);
        Outcome::WorkerLost(format!("worker {w} (pid {pid}) {why}"))
    }

    fn elapsed_ms(&self) -> Millis {
        self.t0.map_or(0, |t| t.elapsed().as_millis() as Millis)
    }

    /// Hears the workers until the run is over.
    fn watch(&mut self) -> Result<Outcome> {
        let mut stall = Stall::new(self.stress);
        let mut next_check = Instant::now();
        loop {
            for h in self.sup.hear(TICK)? {
                if let Some(outcome) = self.heard(h) {
                    return Ok(outcome);
                }
            }
            if self.sup.interrupted() {
                return Ok(Outcome::Interrupted);
            }
            let elapsed = self.elapsed_ms();
            if Instant::now() >= next_check {
                next_check = Instant::now() + TICK;
                let r = self.report();
                self.status.show(&self.gather.progress_line(&r, elapsed));
                if self.gather.complete(&r, elapsed) {
                    return Ok(Outcome::Complete);
                }
                if stall.is_over(&r, elapsed) {
                    return Ok(Outcome::TimeUp);
                }
            }
        }
    }

    /// Takes news from a worker during the run; Some when it ends the run.
    fn heard(&mut self, h: Heard) -> Option<Outcome> {
        match h {
            Heard::Progress(w, p) => self.take(w, p),
            Heard::Done(w, p) => {
                self.take(w, p);
                // Ctrl+C in a terminal reaches the workers too.
                if self.sup.interrupted() {
                    return Some(Outcome::Interrupted);
                }
                return Some(self.lost(w, "stopped on its own"));
            }
            Heard::Lost(w, why) => return Some(self.lost(w, &why)),
            Heard::Bound { .. } => {}
        }
        None
    }

    fn take(&mut self, w: usize, p: super::wire::Progress) {
        let lines = self.gather.take(w, p);
        self.status.print(&lines);
    }

    fn report(&self) -> Report {
        let wall = self.began.elapsed().as_secs_f64();
        self.gather.report(self.rng_seed, self.elapsed_ms(), wall)
    }

    /// Stops every worker, then prints and writes the report.
    fn finish(mut self, outcome: Outcome, path: Option<&std::path::Path>) -> Result<bool> {
        let run_ms = self.elapsed_ms();
        for h in self.sup.stop_all() {
            match h {
                Heard::Progress(w, p) | Heard::Done(w, p) => self.take(w, p),
                Heard::Lost(w, why) => log::warn!("{}", self.lost(w, &why)),
                Heard::Bound { .. } => {}
            }
        }
        self.status.clear();
        let wall = self.began.elapsed().as_secs_f64();
        let r = self.gather.report(self.rng_seed, run_ms, wall);
        let net = self.gather.net();
        print_report(&r, &net, &self.sup.pids(), &outcome);
        if let Some(path) = path {
            let json = SwarmJson {
                report: &r,
                outcome: outcome.to_string(),
                bind_ms: self
                    .t0
                    .map_or(0, |t| (t - self.began).as_millis() as Millis),
                worker_pids: self.sup.pids(),
                net,
            };
            let text = serde_json::to_string_pretty(&json)?;
            std::fs::write(path, text)
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
        }
        let clean = r.false_dead_reports == 0 && r.false_removals == 0;
        Ok(outcome == Outcome::Complete && clean)
    }
}

/// The stress report, then what only a swarm knows: how its loops fared, its workers,
/// and why it ended.
fn print_report(r: &Report, net: &NetStats, pids: &[u32], outcome: &Outcome) {
    println!("{}", r.render());
    println!(
        "  loop         busy {:.1} s, max turn {} ms, max timer lag {} ms, {} turns ({} over the \
         read budget); {} reads for {} frames received; host TCP memory strained {:.1} s",
        net.busy_ms as f64 / 1000.0,
        net.max_turn_ms,
        net.max_timer_lag_ms,
        net.turns,
        net.turns_over_budget,
        net.read_calls,
        net.frames_received,
        net.strained_ms as f64 / 1000.0
    );
    println!("  workers      pids {pids:?}");
    println!("  outcome      {outcome}");
}

/// When a run without `--duration` gives up: past its plan and stalled, or at its limit.
struct Stall {
    fixed: bool,
    run_for: Millis,
    limit: Millis,
    seen: (u64, u64, u64),
    moved_at: Millis,
}

impl Stall {
    fn new(s: &StressArgs) -> Self {
        Stall {
            fixed: s.duration.is_some(),
            run_for: s.run_for(),
            limit: s.time_limit(),
            seen: (0, 0, 0),
            moved_at: 0,
        }
    }

    fn is_over(&mut self, r: &Report, elapsed: Millis) -> bool {
        let f = &r.failures;
        let now = (r.deliveries_made, f.not_detected, f.not_removed);
        if now != self.seen {
            self.seen = now;
            self.moved_at = elapsed;
        }
        if self.fixed || elapsed >= self.limit {
            return elapsed >= self.run_for.min(self.limit);
        }
        elapsed >= self.run_for && elapsed >= self.moved_at + crate::stress::STALL
    }
}

fn place(slots: &mut [Option<SocketAddr>], bound: Vec<(usize, SocketAddr)>) {
    for (i, addr) in bound {
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some(addr);
        }
    }
}

fn complete(slots: Vec<Option<SocketAddr>>) -> Option<Vec<SocketAddr>> {
    slots.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stress::{test_args, STALL};

    fn made(n: u64) -> Report {
        Report {
            deliveries_made: n,
            ..Report::default()
        }
    }

    #[test]
    fn without_duration_a_run_goes_on_while_it_makes_progress() {
        let s = test_args(&[]);
        let mut stall = Stall::new(&s);
        let run_for = s.run_for();
        assert!(!stall.is_over(&made(1), run_for - 1));
        assert!(!stall.is_over(&made(2), run_for + STALL), "still moving");
        assert!(!stall.is_over(&made(2), run_for + 2 * STALL - 1));
        assert!(
            stall.is_over(&made(2), run_for + 2 * STALL),
            "stalled for 30 s"
        );
        let mut busy = Stall::new(&s);
        let limit = s.time_limit();
        assert!(busy.is_over(&made(limit), limit), "never past the limit");
    }

    #[test]
    fn with_duration_a_run_stops_on_time() {
        let s = test_args(&["--duration", "5s"]);
        let mut stall = Stall::new(&s);
        assert!(!stall.is_over(&made(1), 4_999));
        assert!(stall.is_over(&made(2), 5_000));
    }
}
