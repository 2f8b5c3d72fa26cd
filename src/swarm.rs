//! `gossipd swarm`: seeds and peers hosted in this process, on one mio loop, with real
//! sockets on 127.0.0.1. Prints each message's spread as it completes and a summary.
//!
//! Per-node log files would cost a file per node, so events are counted in memory here
//! (and written to one JSON Lines file with `--events`).

use anyhow::{Context, Result};
use clap::builder::TypedValueParser as _;
use std::collections::HashMap;
use std::fs::File;
use std::io::{LineWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cli::duration;
use crate::codec::DEFAULT_MAX_FRAME;
use crate::logging::{self, open_append};
use crate::net::{listener, Driver, Sink};
use crate::proto::{
    Event, Millis, Node, PeerConfig, PeerCore, Role, SeedConfig, SeedCore, Severity,
};

#[derive(Debug, clap::Args)]
pub struct SwarmArgs {
    /// Seeds to start.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64).map(|v| v as usize))]
    pub seeds: usize,
    /// Peers to start.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=5000).map(|v| v as usize))]
    pub peers: usize,
    /// Gossip messages each peer creates.
    #[arg(long, default_value_t = 10)]
    pub messages: u64,
    /// Time between a peer's gossip messages.
    #[arg(long, default_value = "500ms", value_parser = duration)]
    pub gossip_interval: Millis,
    /// Time between liveness checks.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub liveness_interval: Millis,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub liveness_misses: u32,
    /// Peers each peer connects to.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024).map(|v| v as usize))]
    pub max_neighbors: usize,
    /// Stop after this long even if deliveries are missing [default: (messages + 2)
    /// gossip intervals + 30s].
    #[arg(long, value_parser = duration)]
    pub duration: Option<Millis>,
    /// Seed for every random choice.
    #[arg(long)]
    pub rng_seed: Option<u64>,
    /// Write every node's events to this JSON Lines file.
    #[arg(long)]
    pub events: Option<PathBuf>,
}

/// Flags of a swarm worker process (being written).
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {}

/// Runs one swarm worker (being written).
pub fn run_worker(_args: &WorkerArgs) -> Result<bool> {
    anyhow::bail!("swarm workers are not written yet")
}

/// One gossip message's spread.
#[derive(Debug, Clone, Copy)]
struct Spread {
    created: Millis,
    delivered: usize,
    max_hops: u32,
}

/// Counts what the hosted nodes log.
pub struct Tally {
    peers: usize,
    spreads: HashMap<(SocketAddr, u64), Spread>,
    pub created: u64,
    pub deliveries: u64,
    latencies: Vec<Millis>,
    pub dead_reported: u64,
    pub removed: u64,
    pub warnings: u64,
    events: Option<LineWriter<File>>,
}

impl Tally {
    fn new(peers: usize, events: Option<LineWriter<File>>) -> Self {
        Tally {
            peers,
            spreads: HashMap::new(),
            created: 0,
            deliveries: 0,
            latencies: Vec::new(),
            dead_reported: 0,
            removed: 0,
            warnings: 0,
            events,
        }
    }

    pub fn expected(&self) -> u64 {
        self.created * (self.peers as u64 - 1)
    }

    fn received(&mut self, now: Millis, origin: SocketAddr, seq: u64, hops: u32, created: Millis) {
        self.deliveries += 1;
        self.latencies.push(now.saturating_sub(created));
        let Some(s) = self.spreads.get_mut(&(origin, seq)) else {
            return;
        };
        s.delivered += 1;
        s.max_hops = s.max_hops.max(hops);
        if s.delivered == self.peers - 1 {
            let ms = now.saturating_sub(s.created);
            println!(
                "spread  {origin}#{seq}: reached all {} other peers in {ms} ms, at most {} hops",
                s.delivered, s.max_hops
            );
        }
    }
}

impl Sink for Tally {
    fn event(&mut self, now: Millis, _node: usize, addr: SocketAddr, _role: Role, event: &Event) {
        match event {
            Event::GossipCreated { origin, seq, .. } => {
                self.created += 1;
                let spread = Spread {
                    created: now,
                    delivered: 0,
                    max_hops: 0,
                };
                self.spreads.insert((*origin, *seq), spread);
            }
            Event::GossipReceived {
                origin,
                seq,
                hops,
                created_ts,
                ..
            } => self.received(now, *origin, *seq, *hops, *created_ts),
            Event::DeadNodeReported { addr: dead } => {
                self.dead_reported += 1;
                println!("dead    {dead} reported by {addr}");
            }
            Event::PeerRemoved { .. } => self.removed += 1,
            _ => {}
        }
        if event.severity() == Severity::Warn {
            self.warnings += 1;
            log::debug!("[{addr}] {}", event.text(addr, now));
        }
        if let Some(out) = self
            .events
            .as_mut()
            .filter(|_| event.severity() > Severity::Debug)
        {
            let _ = logging::write_record(out, now, addr, event);
        }
    }

    fn flush(&mut self) {
        if let Some(out) = self.events.as_mut() {
            let _ = out.flush();
        }
    }
}

/// Runs the swarm; Ok(true) when every expected delivery was made.
pub fn run(args: &SwarmArgs) -> Result<bool> {
    let events = args
        .events
        .as_deref()
        .map(open_append)
        .transpose()
        .context("cannot open --events")?;
    let mut driver = Driver::new(Tally::new(args.peers, events), DEFAULT_MAX_FRAME)?;
    let (stop, waker) = driver.stopper();
    ctrlc::set_handler(move || {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = waker.wake();
    })
    .context("cannot install the Ctrl+C handler")?;
    let rng_seed = args.rng_seed.unwrap_or_else(rand::random);
    let started = Instant::now();
    let seeds = start_seeds(&mut driver, args, rng_seed)?;
    start_peers(&mut driver, args, &seeds, rng_seed)?;
    println!(
        "swarm   {} seeds, {} peers on 127.0.0.1, {} messages each every {} ms (rng seed {rng_seed})",
        args.seeds, args.peers, args.messages, args.gossip_interval
    );
    wait_for_spread(&mut driver, args)?;
    driver.shutdown();
    let wall = started.elapsed();
    print_summary(&driver, args, wall);
    Ok(driver.sink.deliveries == driver.sink.expected()
        && driver.sink.created == total_messages(args))
}

fn total_messages(args: &SwarmArgs) -> u64 {
    args.peers as u64 * args.messages
}

fn start_seeds(
    driver: &mut Driver<Tally>,
    args: &SwarmArgs,
    rng_seed: u64,
) -> Result<Vec<SocketAddr>> {
    let mut addrs = Vec::new();
    for i in 0..args.seeds {
        let listener =
            listener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).context("cannot bind a seed")?;
        let addr = listener.local_addr()?;
        let mut cfg = SeedConfig::new(addr);
        cfg.liveness_interval = args.liveness_interval;
        cfg.liveness_misses = args.liveness_misses;
        cfg.idle_timeout = (u64::from(args.liveness_misses) + 2) * args.liveness_interval;
        let core = SeedCore::new(
            cfg,
            rng_seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        driver.add(Node::Seed(core), listener)?;
        addrs.push(addr);
    }
    Ok(addrs)
}

fn start_peers(
    driver: &mut Driver<Tally>,
    args: &SwarmArgs,
    seeds: &[SocketAddr],
    rng_seed: u64,
) -> Result<()> {
    for i in 0..args.peers {
        let listener =
            listener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).context("cannot bind a peer")?;
        let addr = listener.local_addr()?;
        let mut cfg = PeerConfig::new(addr, seeds.to_vec());
        cfg.max_neighbors = args.max_neighbors;
        cfg.gossip_interval = args.gossip_interval;
        cfg.messages = args.messages;
        cfg.liveness_interval = args.liveness_interval;
        cfg.liveness_misses = args.liveness_misses;
        cfg.idle_timeout = (u64::from(args.liveness_misses) + 2) * args.liveness_interval;
        let salt = ((args.seeds + i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        driver.add(Node::Peer(PeerCore::new(cfg, rng_seed ^ salt)), listener)?;
    }
    Ok(())
}

/// Turns the loop until every message has reached every peer, the time is up, or Ctrl+C.
fn wait_for_spread(driver: &mut Driver<Tally>, args: &SwarmArgs) -> Result<()> {
    let default = (args.messages + 2) * args.gossip_interval + 30_000;
    let deadline = driver.now() + args.duration.unwrap_or(default);
    let mut events = mio::Events::with_capacity(4096);
    let mut next_progress = driver.now() + 1_000;
    while !driver.stopping() {
        driver.turn(&mut events, Some(Duration::from_millis(100)))?;
        let t = &driver.sink;
        if t.created == total_messages(args) && t.deliveries >= t.expected() {
            break;
        }
        let now = driver.now();
        if now >= deadline {
            println!("time is up");
            break;
        }
        if now >= next_progress {
            next_progress = now + 1_000;
            println!(
                "progress deliveries {}/{} of the {} messages created so far",
                t.deliveries,
                t.expected(),
                t.created
            );
        }
    }
    Ok(())
}

fn percentile(sorted: &[Millis], p: f64) -> Millis {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

fn print_summary(driver: &Driver<Tally>, args: &SwarmArgs, wall: Duration) {
    let t = &driver.sink;
    let mut lat = t.latencies.clone();
    lat.sort_unstable();
    let coverage = if t.expected() == 0 {
        0.0
    } else {
        100.0 * t.deliveries as f64 / t.expected() as f64
    };
    let max_hops = t.spreads.values().map(|s| s.max_hops).max().unwrap_or(0);
    let (received, first) = peer_frames(driver);
    println!("summary");
    println!(
        "  nodes        {} seeds, {} peers: one process, one thread",
        args.seeds, args.peers
    );
    println!("  connections  {} opened", driver.stats.connections_opened);
    println!(
        "  messages     {} created of {}",
        t.created,
        total_messages(args)
    );
    println!(
        "  deliveries   {} made of {} expected ({coverage:.1}%)",
        t.deliveries,
        t.expected()
    );
    println!(
        "  redundancy   {:.2} gossip frames received per first delivery",
        received as f64 / first.max(1) as f64
    );
    println!(
        "  latency      p50 {} ms, p90 {} ms, p99 {} ms, max {} ms (creation to delivery); max hops {max_hops}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0)
    );
    println!(
        "  dead nodes   {} reported, {} removed by seeds; {} warnings",
        t.dead_reported, t.removed, t.warnings
    );
    let cpu = crate::procstat::cpu_seconds().unwrap_or(0.0);
    let rss = crate::procstat::peak_rss_kib().unwrap_or(0);
    println!(
        "  resources    wall {:.1} s, CPU {cpu:.2} s, peak RSS {:.1} MiB",
        wall.as_secs_f64(),
        rss as f64 / 1024.0
    );
}

/// Gossip frames received and first receipts, summed over the hosted peers.
fn peer_frames(driver: &Driver<Tally>) -> (u64, u64) {
    (0..driver.node_count())
        .filter_map(|i| match driver.node(i) {
            Some(Node::Peer(p)) => Some(p.stats()),
            _ => None,
        })
        .fold((0, 0), |(r, f), s| {
            (r + s.gossip_frames_received, f + s.gossip_first_receipts)
        })
}
