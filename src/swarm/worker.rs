//! A swarm worker process: hosts its share of the seeds and peers on one thread and one
//! mio loop (the same `net::Driver` and cores as `gossipd seed` and `peer`), binds their
//! listeners, starts them at staggered times once the supervisor says so, kills or
//! freezes the peers the plan says, and reports progress over its control connection
//! until told to stop. It exits on its own if the supervisor goes away.

use anyhow::{bail, Context, Result};
use mio::net::TcpListener;
use mio::Events;
use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::layout::{fds_per_peer, fds_per_seed, node_ip, Layout, Schedule, Share};
use super::sink::WorkerSink;
use super::wire::{Channel, FromWorker, Progress, ToWorker, WireError};
use super::WorkerArgs;
use crate::codec::DEFAULT_MAX_FRAME;
use crate::net::{listener, Driver};
use crate::proto::{Millis, Node, PeerCore, SeedCore};
use crate::report::FailureKind;
use crate::stress::{node_seed, Plan, StressArgs};

/// How often a worker reports.
const PROGRESS_MS: Millis = 1_000;
/// The longest one loop turn waits, so start times and failures stay on time.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// How long to wait for the supervisor's start signal, and for `Done` to go out.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const DONE_TIMEOUT: Duration = Duration::from_secs(10);

/// A node bound but not started yet.
struct Unstarted {
    at: Millis,
    node: Slot,
    listener: TcpListener,
    addr: SocketAddr,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Seed(usize),
    Peer(usize),
}

struct Worker<'a> {
    stress: &'a StressArgs,
    rng_seed: u64,
    plan: Plan,
    originators: HashSet<usize>,
    driver: Driver<WorkerSink>,
    channel: Channel,
    events: Events,
    /// Latest start last, so the next one pops off the end.
    unstarted: Vec<Unstarted>,
    /// This worker's planned failures: (ms after start, peer, kind), latest first.
    failures: Vec<(Millis, usize, FailureKind)>,
    seeds: Vec<SocketAddr>,
    peers: Vec<SocketAddr>,
    /// Peer index to driver node index.
    hosted: HashMap<usize, usize>,
    failed: Vec<(SocketAddr, Millis)>,
    t0: Millis,
    /// RSS before the worker hosted anything: the process's own, not its nodes'.
    base_rss_kib: u64,
}

/// Runs one worker; Ok(true) once its report is delivered.
pub fn run(args: &WorkerArgs) -> Result<bool> {
    let base_rss_kib = crate::procstat::rss_kib().unwrap_or(0);
    let stress = &args.stress;
    let rng_seed = stress
        .rng_seed
        .context("a swarm worker needs --rng-seed (the supervisor passes it)")?;
    let layout = Layout::new(stress, args.workers)?;
    let share = layout.share(args.worker)?.clone();
    let plan = stress.plan(rng_seed);
    let unstarted = bind_share(stress, &share, &Schedule::new(stress, &plan))?;
    let mut w = Worker::new(args, rng_seed, plan, unstarted, &share)?;
    w.base_rss_kib = base_rss_kib;
    w.announce(args.worker)?;
    let Some((seeds, peers)) = w.await_start()? else {
        return Ok(false);
    };
    w.begin(seeds, peers)?;
    let supervisor_gone = w.run_until_stopped()?;
    if supervisor_gone {
        w.driver.shutdown();
        return Ok(false);
    }
    w.finish()
}

/// Binds every listener of the share (nothing accepts until the node starts).
fn bind_share(stress: &StressArgs, share: &Share, sched: &Schedule) -> Result<Vec<Unstarted>> {
    let seeds = share.seeds.iter().map(|&i| (Slot::Seed(i), i, 0));
    let peers = share
        .peers
        .clone()
        .map(|p| (Slot::Peer(p), stress.seeds + p, sched.peer(p)));
    let mut out = Vec::with_capacity(share.seeds.len() + share.peers.len());
    for (node, g, at) in seeds.chain(peers) {
        let ip = node_ip(g);
        let listener = listener::bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("cannot listen on {ip} (node {g})"))?;
        let addr = listener.local_addr()?;
        out.push(Unstarted {
            at,
            node,
            listener,
            addr,
        });
    }
    out.sort_by_key(|u| std::cmp::Reverse(u.at));
    Ok(out)
}

fn events_path(base: &Path, worker: usize) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".w{worker}"));
    PathBuf::from(s)
}

/// Removes the events files of workers numbered `workers` and up that an earlier run with
/// more workers left (`FILE.w<n>`, from `n = workers` while they exist), so that every
/// `FILE.w*` holds this run's events. Returns how many went.
pub(crate) fn remove_stale_events(base: &Path, workers: usize) -> std::io::Result<usize> {
    let mut removed = 0;
    for n in workers.. {
        match std::fs::remove_file(events_path(base, n)) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

fn open_events(base: Option<&Path>, worker: usize) -> Result<Option<BufWriter<std::fs::File>>> {
    let Some(base) = base else {
        return Ok(None);
    };
    let path = events_path(base, worker);
    // Rewritten each run, as `sim` does: a run's file holds that run's events alone.
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("cannot open the events file {}", path.display()))?;
    Ok(Some(BufWriter::with_capacity(1 << 16, file)))
}

/// The worker's event loop, sized for its share, stopped by Ctrl+C (or SIGTERM).
fn make_driver(args: &WorkerArgs, share: &Share, nodes: usize) -> Result<Driver<WorkerSink>> {
    let events = open_events(args.stress.events.as_deref(), args.worker)?;
    let mut driver = Driver::new(WorkerSink::new(events), DEFAULT_MAX_FRAME)
        .context("cannot create the event loop")?;
    let s = &args.stress;
    let sockets = share.seeds.len() * fds_per_seed(s) + share.peers.len() * fds_per_peer(s);
    driver.reserve(nodes, sockets);
    driver
        .stop_on_signals()
        .context("cannot install the signal handlers")?;
    Ok(driver)
}

fn connect(addr: SocketAddr) -> Result<Channel> {
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("cannot reach the swarm supervisor at {addr}"))?;
    stream.set_nonblocking(true)?;
    Ok(Channel::new(mio::net::TcpStream::from_std(stream)))
}

impl<'a> Worker<'a> {
    fn new(
        args: &'a WorkerArgs,
        rng_seed: u64,
        plan: Plan,
        unstarted: Vec<Unstarted>,
        share: &Share,
    ) -> Result<Self> {
        let driver = make_driver(args, share, unstarted.len())?;
        let mut channel = connect(args.control)?;
        driver.register_external(channel.stream_mut(), 0)?;
        let failures = plan
            .failures
            .iter()
            .filter(|f| share.peers.contains(&f.0))
            .map(|&(p, kind, at)| (at, p, kind))
            .rev()
            .collect();
        Ok(Worker {
            stress: &args.stress,
            rng_seed,
            originators: plan.originators.iter().copied().collect(),
            plan,
            driver,
            channel,
            events: Events::with_capacity(4096),
            unstarted,
            failures,
            seeds: Vec::new(),
            peers: Vec::new(),
            hosted: HashMap::new(),
            failed: Vec::new(),
            t0: 0,
            base_rss_kib: 0,
        })
    }

    fn announce(&mut self, worker: usize) -> Result<()> {
        let addrs = |want_seed: bool| {
            self.unstarted
                .iter()
                .filter_map(|u| match u.node {
                    Slot::Seed(i) if want_seed => Some((i, u.addr)),
                    Slot::Peer(p) if !want_seed => Some((p, u.addr)),
                    _ => None,
                })
                .collect()
        };
        let bound = FromWorker::Bound {
            worker,
            pid: std::process::id(),
            seeds: addrs(true),
            peers: addrs(false),
        };
        self.channel.send(&bound)?;
        Ok(())
    }

    /// Waits for `Start`: every node's address. None if told to stop or left alone.
    #[allow(clippy::type_complexity)]
    fn await_start(&mut self) -> Result<Option<(Vec<SocketAddr>, Vec<SocketAddr>)>> {
        let end = Instant::now() + START_TIMEOUT;
        loop {
            self.channel.flush()?;
            match self.channel.recv::<ToWorker>() {
                Ok(Some(ToWorker::Start { seeds, peers })) => return Ok(Some((seeds, peers))),
                Ok(Some(ToWorker::Stop)) | Err(WireError::Closed) => return Ok(None),
                Ok(None) => {}
                Err(e) => return Err(e.into()),
            }
            if Instant::now() >= end || self.driver.stopping() {
                return Ok(None);
            }
            self.driver.turn(&mut self.events, Some(MAX_WAIT * 4))?;
        }
    }

    /// Takes the start signal: the clock of the run starts now.
    fn begin(&mut self, seeds: Vec<SocketAddr>, peers: Vec<SocketAddr>) -> Result<()> {
        if seeds.len() != self.stress.seeds || peers.len() != self.stress.peers {
            bail!(
                "the start signal names {} seeds and {} peers, not {} and {}",
                seeds.len(),
                peers.len(),
                self.stress.seeds,
                self.stress.peers
            );
        }
        self.t0 = self.driver.now();
        for &(p, kind, at) in &self.plan.failures {
            if let Some(&addr) = peers.get(p) {
                self.driver.sink.plan_failure(addr, kind, self.t0 + at);
            }
        }
        self.seeds = seeds;
        self.peers = peers;
        Ok(())
    }

    /// Turns the loop until `Stop`, Ctrl+C or the run's time is well past. True when the
    /// supervisor has gone away (nobody to report to).
    fn run_until_stopped(&mut self) -> Result<bool> {
        let deadline = self.t0 + self.stress.time_limit() + 60_000;
        let mut next_progress = self.t0;
        loop {
            let now = self.driver.now();
            self.start_due(now)?;
            self.fail_due(now);
            if now >= next_progress {
                next_progress = now + PROGRESS_MS;
                let p = self.progress();
                self.channel.send(&FromWorker::Progress(Box::new(p)))?;
            }
            match self.channel.recv::<ToWorker>() {
                Ok(Some(ToWorker::Stop)) => return Ok(false),
                Ok(Some(ToWorker::Start { .. }) | None) => {}
                Err(WireError::Closed) => return Ok(true),
                Err(e) => return Err(e.into()),
            }
            if self.driver.stopping() || now >= deadline {
                return Ok(false);
            }
            self.channel.flush()?;
            let wait = self.next_wakeup(now, next_progress);
            self.driver.turn(&mut self.events, Some(wait))?;
        }
    }

    fn next_wakeup(&self, now: Millis, next_progress: Millis) -> Duration {
        let start = self.unstarted.last().map(|u| self.t0 + u.at);
        let fail = self.failures.last().map(|f| self.t0 + f.0);
        let next = [start, fail, Some(next_progress)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_progress);
        Duration::from_millis(next.saturating_sub(now)).min(MAX_WAIT)
    }

    fn start_due(&mut self, now: Millis) -> Result<()> {
        while self.unstarted.last().is_some_and(|u| self.t0 + u.at <= now) {
            let Some(u) = self.unstarted.pop() else {
                break;
            };
            let core = self.core_for(u.node, u.addr);
            let node = self
                .driver
                .add(core, u.listener)
                .with_context(|| format!("cannot start the node on {}", u.addr))?;
            if let Slot::Peer(p) = u.node {
                self.hosted.insert(p, node);
            }
        }
        Ok(())
    }

    fn core_for(&self, slot: Slot, addr: SocketAddr) -> Node {
        let s = self.stress;
        match slot {
            Slot::Seed(i) => Node::Seed(SeedCore::new(
                s.seed_config(addr),
                node_seed(self.rng_seed, i),
            )),
            Slot::Peer(p) => {
                let cfg = s.peer_config(addr, self.seeds.clone(), self.originators.contains(&p));
                Node::Peer(PeerCore::new(cfg, node_seed(self.rng_seed, s.seeds + p)))
            }
        }
    }

    /// Kills or freezes the peers whose time has come. One that has not started yet
    /// never will.
    fn fail_due(&mut self, now: Millis) {
        while self.failures.last().is_some_and(|f| self.t0 + f.0 <= now) {
            let Some((_, p, kind)) = self.failures.pop() else {
                break;
            };
            match (self.hosted.get(&p), kind) {
                (Some(&node), FailureKind::Kill) => self.driver.kill(node),
                (Some(&node), FailureKind::Freeze) => self.driver.freeze(node),
                (None, _) => {
                    self.unstarted
                        .retain(|u| !matches!(u.node, Slot::Peer(q) if q == p));
                    true
                }
            };
            if let Some(&addr) = self.peers.get(p) {
                self.driver.sink.tally.failed_at(addr, now);
                self.failed.push((addr, now));
            }
        }
    }

    fn progress(&mut self) -> Progress {
        let (frames, first) = peer_frames(&self.driver);
        Progress {
            started: self.driver.node_count(),
            tally: self.driver.sink.tally.clone(),
            spreads: self.driver.sink.take_spreads(),
            failed: self.failed.clone(),
            gossip_frames_received: frames,
            gossip_first_receipts: first,
            net: self.driver.stats,
            sockets: self.driver.socket_count(),
            cpu_s: crate::procstat::cpu_seconds().unwrap_or(0.0),
            peak_rss_kib: crate::procstat::peak_rss_kib().unwrap_or(0),
            base_rss_kib: self.base_rss_kib,
        }
    }

    /// Takes the last figures as the nodes stand, closes them, and reports.
    fn finish(mut self) -> Result<bool> {
        let mut last = self.progress();
        self.driver.shutdown();
        last.cpu_s = crate::procstat::cpu_seconds().unwrap_or(last.cpu_s);
        self.channel.send(&FromWorker::Done(Box::new(last)))?;
        let end = Instant::now() + DONE_TIMEOUT;
        while !self.channel.flush()? {
            if Instant::now() >= end {
                bail!("the supervisor did not take the final report");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(true)
    }
}

/// Gossip frames received and first receipts, summed over the hosted peers.
fn peer_frames(driver: &Driver<WorkerSink>) -> (u64, u64) {
    (0..driver.node_count())
        .filter_map(|i| match driver.node(i) {
            Some(Node::Peer(p)) => Some(p.stats()),
            _ => None,
        })
        .fold((0, 0), |(r, f), s| {
            (r + s.gossip_frames_received, f + s.gossip_first_receipts)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn each_worker_writes_its_own_events_file() {
        let p = events_path(Path::new("/tmp/run/events.jsonl"), 3);
        assert_eq!(p, PathBuf::from("/tmp/run/events.jsonl.w3"));
    }

    #[test]
    fn a_run_rewrites_its_events_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let base = dir.path().join("events.jsonl");
        for line in ["first run\n", "second run\n"] {
            let mut w = open_events(Some(&base), 0)?.context("an events file")?;
            w.write_all(line.as_bytes())?;
            w.flush()?;
        }
        let text = std::fs::read_to_string(events_path(&base, 0))?;
        assert_eq!(text, "second run\n");
        Ok(())
    }

    #[test]
    fn files_of_workers_an_earlier_run_had_beyond_this_ones_are_removed() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let base = dir.path().join("ev.jsonl");
        for n in [0, 1, 2, 3, 5] {
            std::fs::write(events_path(&base, n), "old\n")?;
        }
        assert_eq!(remove_stale_events(&base, 2)?, 2);
        let left = |n| events_path(&base, n).exists();
        assert!(left(0) && left(1) && !left(2) && !left(3), "w2 and w3 went");
        assert!(
            left(5),
            "past a gap nothing is touched: it is not this swarm's numbering"
        );
        assert_eq!(remove_stale_events(&base, 2)?, 0);
        Ok(())
    }
}
