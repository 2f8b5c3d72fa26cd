//! A stress run on the simulator (`gossipd sim` without its printing): builds the network
//! from the shared stress flags, applies the plan's failures and the partitions on time,
//! watches every event, stops when everything planned has happened, and reports.
//!
//! Pure and deterministic: the same [`Scenario`] gives the same [`Outcome`], byte for byte
//! once serialized. Nothing wall-clock-dependent goes into the report; the caller gets a
//! [`Progress`] callback once per virtual millisecond to print what it likes.

use rand::rngs::SmallRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use std::io::Write;
use std::net::SocketAddr;

use super::args::PartitionSpec;
use super::routes::MAX_CUTS;
use super::watch::Watch;
use super::{Failure, FrameKinds, NetModel, NetStats, Sim, EPOCH};
use crate::proto::{Millis, Node, PeerCore, SeedCore};
use crate::report::{FailureKind, HostFacts, Report, Tally};
use crate::stress::{node_seed, StressArgs};

/// Everything a simulated stress run depends on.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub stress: StressArgs,
    pub rng_seed: u64,
    pub net: NetModel,
    /// The frame types `net.loss` applies to.
    pub lossy: FrameKinds,
    pub partitions: Vec<PartitionSpec>,
    /// Threads for busy milliseconds: changes the wall time, never the report.
    pub threads: usize,
    /// The process exits after the run (`gossipd sim`): the simulator's memory is left
    /// to the OS, not freed node by node (0.1-0.3 s less at a million peers).
    pub exits_after: bool,
}

/// Where a run stands, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Virtual time since the start.
    pub virtual_ms: Millis,
    /// First deliveries to surviving peers, and those expected of the messages created.
    pub made: u64,
    pub expected: u64,
    pub created: u64,
    pub planned: u64,
    /// Inputs waiting in the simulator's queue.
    pub pending: usize,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: Report,
    /// Every event counted, for questions the report does not answer (e.g. coverage of
    /// the messages created after a given time: [`Tally::coverage_since`]).
    pub tally: Tally,
    pub net: NetStats,
    /// True when the run stopped because everything planned had happened, false when it
    /// ran out of time.
    pub finished: bool,
    /// The first error writing the events file, if any.
    pub events_error: Option<String>,
}

/// Why a scenario cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    #[error("--partition: at most {max} partitions (got {got})")]
    TooManyPartitions { max: usize, got: usize },
}

impl Scenario {
    /// Checks what the flags' parsers could not: the number of partitions.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let got = self.partitions.len();
        if got > MAX_CUTS {
            return Err(ScenarioError::TooManyPartitions { max: MAX_CUTS, got });
        }
        Ok(())
    }
}

/// Something the scenario does to the network at a given time.
enum Act {
    Fail(usize, Failure),
    Cut(Vec<usize>, Millis),
}

/// The addresses the simulated nodes go by.
pub fn seed_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 255, 0, (i % 250) as u8 + 1], 7000 + (i / 250) as u16))
}

/// Peer `i`'s address: 10.0.0.0 + i, port 9000 (up to 16 million peers).
pub fn peer_addr(i: usize) -> SocketAddr {
    let ip = 0x0A00_0000u32 | (i as u32 & 0x00FF_FFFF);
    SocketAddr::from((ip.to_be_bytes(), 9000))
}

impl Scenario {
    /// Peers start one after another over this window: registering all at once would
    /// give the first ones empty peer lists. It ends well before the first message is due
    /// (one gossip interval after a peer's first neighbour), so every peer is connected by
    /// then.
    pub fn start_window(&self) -> Millis {
        self.stress.gossip_interval / 2
    }

    fn planned_messages(&self, originators: usize) -> u64 {
        originators as u64 * self.stress.messages
    }

    /// The partitions' members (node indices), each a random sample of the peers.
    fn cut_members(&self, k: usize, p: &PartitionSpec) -> Vec<usize> {
        let peers = self.stress.peers;
        let n = ((p.fraction * peers as f64).round() as usize).min(peers);
        let mut rng = SmallRng::seed_from_u64(self.rng_seed ^ 0xC07 ^ ((k as u64) << 32));
        let seeds = self.stress.seeds;
        sample(&mut rng, peers, n)
            .into_iter()
            .map(|i| seeds + i)
            .collect()
    }

    /// The failures and partitions, as node actions in time order.
    fn acts(&self, failures: &[(usize, FailureKind, Millis)]) -> Vec<(Millis, Act)> {
        let seeds = self.stress.seeds;
        let mut acts: Vec<(Millis, Act)> = failures
            .iter()
            .map(|&(peer, kind, at)| {
                let how = match kind {
                    FailureKind::Kill => Failure::Crash,
                    FailureKind::Freeze => Failure::Silent,
                };
                (EPOCH + at, Act::Fail(seeds + peer, how))
            })
            .collect();
        for (k, p) in self.partitions.iter().enumerate() {
            let members = self.cut_members(k, p);
            acts.push((EPOCH + p.from, Act::Cut(members, EPOCH + p.until)));
        }
        acts.sort_by_key(|a| a.0);
        acts
    }
}

/// Runs the scenario. `events` receives every event above debug level as JSON Lines.
pub fn simulate(
    sc: &Scenario,
    events: Option<&mut dyn Write>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, ScenarioError> {
    sc.validate()?;
    let s = &sc.stress;
    let plan = s.plan(sc.rng_seed);
    let mut watch = Watch::new(s.peers as u64, events);
    for &(peer, kind, at) in &plan.failures {
        watch.plan_failure(peer_addr(peer), kind, EPOCH + at);
    }
    watch.expect_messages(sc.planned_messages(plan.originators.len()));
    let mut sim = Sim::with_observer(sc.net.clone(), sc.rng_seed, watch);
    sim.set_lossy(sc.lossy);
    sim.set_threads(sc.threads);
    build(&mut sim, sc, &plan.originators);
    let acts = sc.acts(&plan.failures);
    let settle = acts.iter().map(|(at, act)| match act {
        Act::Cut(_, heal) => *heal,
        Act::Fail(..) => *at,
    });
    let settled_at = settle.max().unwrap_or(EPOCH);
    let deadline = EPOCH + s.run_for();
    let finished = drive(&mut sim, acts, settled_at, deadline, progress);
    let outcome = outcome(&mut sim, sc, plan.originators.len(), finished);
    if sc.exits_after {
        std::mem::forget(sim);
    }
    Ok(outcome)
}

/// Seeds first (node indices 0..seeds), then the peers, spread over the start window.
fn build<O: super::Observer>(sim: &mut Sim<O>, sc: &Scenario, originators: &[usize]) {
    let s = &sc.stress;
    sim.reserve(s.seeds + s.peers);
    let seed_addrs: Vec<SocketAddr> = (0..s.seeds).map(seed_addr).collect();
    for (i, &addr) in seed_addrs.iter().enumerate() {
        let core = SeedCore::new(s.seed_config(addr), node_seed(sc.rng_seed, i));
        sim.add(Node::Seed(core), 0);
    }
    let mut is_originator = vec![false; s.peers];
    for &o in originators {
        if let Some(flag) = is_originator.get_mut(o) {
            *flag = true;
        }
    }
    let window = sc.start_window();
    for (i, &originator) in is_originator.iter().enumerate() {
        let cfg = s.peer_config(peer_addr(i), seed_addrs.clone(), originator);
        let core = PeerCore::new(cfg, node_seed(sc.rng_seed, s.seeds + i));
        let delay = 1 + window * i as u64 / s.peers as u64;
        sim.add(Node::Peer(core), delay);
    }
}

/// Runs one virtual millisecond at a time, applying each act on time, until everything
/// planned has happened or the deadline. True when it stopped because all was done.
fn drive(
    sim: &mut Sim<Watch<'_>>,
    acts: Vec<(Millis, Act)>,
    settled_at: Millis,
    deadline: Millis,
    progress: &mut dyn FnMut(&Progress),
) -> bool {
    let mut acts = acts.into_iter().peekable();
    loop {
        while let Some((_, act)) = acts.next_if(|(at, _)| *at <= sim.now()) {
            match act {
                Act::Fail(node, how) => sim.fail(node, how),
                Act::Cut(members, heal) => {
                    sim.partition(&members, heal);
                }
            }
        }
        if sim.now() >= settled_at && sim.observer.all_done() {
            return true;
        }
        if sim.now() >= deadline {
            return false;
        }
        sim.run_until(sim.now() + 1);
        progress(&sim.observer.progress(sim.now() - EPOCH, sim.pending()));
    }
}

fn outcome(sim: &mut Sim<Watch<'_>>, sc: &Scenario, originators: usize, finished: bool) -> Outcome {
    let (received, first) = sim
        .nodes()
        .filter_map(|n| match n {
            Node::Peer(p) => Some(p.stats()),
            Node::Seed(_) => None,
        })
        .fold((0, 0), |(r, f), s| {
            (r + s.gossip_frames_received, f + s.gossip_first_receipts)
        });
    let net = sim.stats();
    let host = HostFacts {
        mode: "sim".into(),
        rng_seed: sc.rng_seed,
        peers: sc.stress.peers as u64,
        seeds: sc.stress.seeds as u64,
        workers: 1,
        connections: net.connections_opened,
        originators: originators as u64,
        messages_per_originator: sc.stress.messages,
        gossip_frames_received: received,
        gossip_first_receipts: first,
        bytes_sent: net.bytes_sent,
        frames_sent: net.frames_sent,
        run_ms: sim.now() - EPOCH,
        ..HostFacts::default()
    };
    let (tally, events_error) = sim.observer.finish();
    Outcome {
        report: Report::new(&tally, host),
        tally,
        net,
        finished,
        events_error,
    }
}
