//! `gossipd swarm`: a local network of real seeds and peers, each with its own listening
//! socket on 127.0.0.0/8 and real TCP connections, running the same cores through the
//! same `net::Driver` as `gossipd seed` and `peer`, spread over worker processes.
//!
//! A process may hold 20,000 open files, and a peer inside a swarm costs a listener plus
//! both ends of each connection, so `swarm` (the supervisor, here and in `supervisor`,
//! `session`, `gather`) re-executes this binary as `swarm-worker` processes (`worker`),
//! each one thread and one mio loop hosting its share (`layout`), and talks to them over
//! loopback control connections (`wire`). It prints each message's spread, a progress
//! line and the stress report; workers write no per-node files.

mod gather;
pub mod layout;
mod session;
mod sink;
mod supervisor;
pub mod wire;
mod worker;

use anyhow::Result;
use clap::builder::TypedValueParser as _;
use std::ffi::OsString;
use std::net::SocketAddr;

use crate::stress::StressArgs;

#[derive(Debug, clap::Args)]
pub struct SwarmArgs {
    #[command(flatten)]
    pub stress: StressArgs,
    /// Worker processes [default: enough for the file descriptors, 15,000 planned per
    /// worker, and one per core once each has 500 nodes].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024).map(|v| v as usize))]
    pub workers: Option<usize>,
}

/// Flags of a swarm worker process, as the supervisor starts it.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The supervisor's control address.
    #[arg(long)]
    pub control: SocketAddr,
    /// This worker's number, from 0.
    #[arg(long)]
    pub worker: usize,
    /// Workers in the swarm.
    #[arg(long)]
    pub workers: usize,
    #[command(flatten)]
    pub stress: StressArgs,
}

/// Runs the swarm; Ok(true) when it completed: every planned message created and
/// delivered to every surviving peer, every failure found and removed, no live peer
/// reported dead, no worker lost.
pub fn run(args: &SwarmArgs) -> Result<bool> {
    session::run(args)
}

/// Runs one swarm worker; Ok(true) once its last report is delivered.
pub fn run_worker(args: &WorkerArgs) -> Result<bool> {
    worker::run(args)
}

/// The flags that give a worker the same `StressArgs` (with the run's RNG seed fixed).
/// `--report` stays with the supervisor.
fn stress_flags(s: &StressArgs, rng_seed: u64) -> Vec<OsString> {
    let mut v: Vec<OsString> = Vec::new();
    let mut flag = |name: &str, value: String| {
        v.push(format!("--{name}").into());
        v.push(value.into());
    };
    flag("seeds", s.seeds.to_string());
    flag("peers", s.peers.to_string());
    flag("messages", s.messages.to_string());
    if let Some(o) = s.originators {
        flag("originators", o.to_string());
    }
    flag("gossip-interval", format!("{}ms", s.gossip_interval));
    flag("liveness-interval", format!("{}ms", s.liveness_interval()));
    flag("liveness-misses", s.liveness_misses.to_string());
    flag("warmup", format!("{}ms", s.warmup()));
    flag("max-neighbors", s.max_neighbors.to_string());
    flag("peer-list-max", s.peer_list_max.to_string());
    for k in &s.kill {
        flag("kill", format!("{}@{}ms", k.fraction, k.at));
    }
    for f in &s.freeze {
        flag("freeze", format!("{}@{}ms", f.fraction, f.at));
    }
    if let Some(d) = s.duration {
        flag("duration", format!("{d}ms"));
    }
    flag("rng-seed", rng_seed.to_string());
    if let Some(events) = &s.events {
        v.push("--events".into());
        v.push(events.clone().into_os_string());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stress::test_args as args;

    #[test]
    fn a_worker_parses_the_same_stress_flags_back() {
        let mut original = args(&[
            "--peers",
            "2000",
            "--originators",
            "7",
            "--kill",
            "0.1@12s",
            "--freeze",
            "0.05@12.5s",
            "--gossip-interval",
            "2s",
            "--events",
            "/tmp/e.jsonl",
            "--report",
            "/tmp/r.json",
        ]);
        let flags = stress_flags(&original, 42);
        let flags: Vec<String> = flags
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        let back = args(&flags.iter().map(String::as_str).collect::<Vec<_>>());
        original.rng_seed = Some(42);
        original.report = None;
        // Defaults go out resolved.
        original.liveness_interval = Some(2_000);
        original.warmup = Some(6_000);
        assert_eq!(format!("{original:?}"), format!("{back:?}"));
        assert_eq!(original.plan(42), back.plan(42));
    }
}
