//! Churn and self-healing: peers crashing, a seed restarted empty, a peer restarted on the
//! same address, a peer cut off while it creates messages. Deterministic runs on the
//! simulator (the same cores as the daemon) first, then one real-process test each for
//! the seed and the peer restart. Each test prints its RNG seed when it fails, and the
//! figures it measured (run with `--nocapture` to see them).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use gossipd::proto::{Event, Millis, Node, PeerConfig, PeerCore, SeedConfig, SeedCore};
use gossipd::sim::{simulate, Failure, Logged, NetModel, SimArgs, EPOCH};

type Sim = gossipd::sim::Sim;

const INTERVAL: Millis = 1_000;
const MISSES: u32 = 3;
const GOSSIP_INTERVAL: Millis = 500;
/// Two outgoing neighbours each: a sparse overlay, which a crash can split.
const MAX_NEIGHBORS: usize = 2;

fn seed_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

fn peer_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], 8000 + i as u16))
}

fn seed_core(i: usize, rng_seed: u64) -> Node {
    let mut cfg = SeedConfig::new(seed_addr(i));
    cfg.liveness_interval = INTERVAL;
    cfg.liveness_misses = MISSES;
    cfg.idle_timeout = u64::from(MISSES + 2) * INTERVAL;
    Node::Seed(SeedCore::new(cfg, rng_seed))
}

fn peer_core(i: usize, seeds: usize, messages: u64, rng_seed: u64) -> Node {
    let mut cfg = PeerConfig::new(peer_addr(i), (0..seeds).map(seed_addr).collect());
    cfg.gossip_interval = GOSSIP_INTERVAL;
    cfg.max_neighbors = MAX_NEIGHBORS;
    cfg.messages = messages;
    cfg.liveness_interval = INTERVAL;
    cfg.liveness_misses = MISSES;
    cfg.idle_timeout = u64::from(MISSES + 2) * INTERVAL;
    Node::Peer(PeerCore::new(cfg, rng_seed))
}

/// A simulated network: `seeds` seeds (node indices 0..seeds), then `peers` peers
/// started 2 ms apart, each creating `messages` messages every half second.
struct Net {
    sim: Sim,
    seeds: usize,
    peers: usize,
    rng_seed: u64,
}

impl Net {
    fn new(seeds: usize, peers: usize, messages: u64, rng_seed: u64) -> Net {
        let mut sim = Sim::new(NetModel::default(), rng_seed);
        for i in 0..seeds {
            sim.add(seed_core(i, rng_seed ^ i as u64), 0);
        }
        for i in 0..peers {
            let core = peer_core(i, seeds, messages, rng_seed.wrapping_mul(31) + i as u64);
            sim.add(core, 10 + 2 * i as u64);
        }
        Net {
            sim,
            seeds,
            peers,
            rng_seed,
        }
    }

    fn peer_index(&self, i: usize) -> usize {
        self.seeds + i
    }

    /// Virtual time since the start of the run.
    fn elapsed(&self) -> Millis {
        self.sim.now() - EPOCH
    }

    fn peer(&self, i: usize) -> Option<&PeerCore> {
        match self.sim.node(self.peer_index(i)) {
            Some(Node::Peer(p)) => Some(p),
            _ => None,
        }
    }

    fn seed_list(&self, i: usize) -> BTreeSet<SocketAddr> {
        match self.sim.node(i) {
            Some(Node::Seed(s)) => s.peers().iter().copied().collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Whether the running peers in `alive` form one connected graph over their open
    /// neighbour connections (either end having the connection counts).
    fn connected(&self, alive: &BTreeSet<usize>) -> bool {
        let index: BTreeMap<SocketAddr, usize> = alive.iter().map(|&i| (peer_addr(i), i)).collect();
        let mut edges: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for &i in alive {
            let Some(p) = self.peer(i) else { continue };
            for j in p
                .connected_neighbors()
                .filter_map(|a| index.get(&a).copied())
            {
                edges.entry(i).or_default().insert(j);
                edges.entry(j).or_default().insert(i);
            }
        }
        let Some(&start) = alive.iter().next() else {
            return true;
        };
        reachable(&edges, start).len() == alive.len()
    }

    /// Whether every peer of `alive` has at least `MAX_NEIGHBORS` open connections to
    /// other peers of `alive`: its lost neighbours replaced.
    fn refilled(&self, alive: &BTreeSet<usize>) -> bool {
        let live: BTreeSet<SocketAddr> = alive.iter().map(|&i| peer_addr(i)).collect();
        alive.iter().all(|&i| {
            let mine = self
                .peer(i)
                .map(|p| p.connected_neighbors().filter(|a| live.contains(a)).count());
            mine.is_some_and(|n| n >= MAX_NEIGHBORS)
        })
    }

    /// Runs for `duration` ms in steps of `step`: the virtual time (since the start of
    /// the run) from which `cond` held at every step to the end, if it did at the end.
    fn held_from(
        &mut self,
        step: Millis,
        duration: Millis,
        cond: impl Fn(&Net) -> bool,
    ) -> Option<Millis> {
        let end = self.sim.now() + duration;
        let mut since = None;
        loop {
            match (cond(self), since) {
                (false, _) => since = None,
                (true, None) => since = Some(self.elapsed()),
                (true, Some(_)) => {}
            }
            if self.sim.now() >= end {
                return since;
            }
            self.sim.run_for(step);
        }
    }
}

/// The nodes reachable from `start`.
fn reachable(edges: &BTreeMap<usize, BTreeSet<usize>>, start: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::from([start]);
    let mut todo = VecDeque::from([start]);
    while let Some(i) = todo.pop_front() {
        for &j in edges.get(&i).into_iter().flatten() {
            if seen.insert(j) {
                todo.push_back(j);
            }
        }
    }
    seen
}

/// A message as its creation was logged: (origin, seq, creation time).
type Created = (SocketAddr, u64, Millis);

fn created(events: &[Logged], since: Millis, until: Millis) -> Vec<Created> {
    let created = events.iter().filter(|l| l.at >= since && l.at < until);
    created
        .filter_map(|l| match l.event {
            Event::GossipCreated { origin, seq, .. } => Some((origin, seq, l.at)),
            _ => None,
        })
        .collect()
}

/// (receiver, origin, seq, creation time) -> first receipts logged.
fn receipts(events: &[Logged]) -> BTreeMap<(SocketAddr, Created), u32> {
    let mut n = BTreeMap::new();
    for l in events {
        if let Event::GossipReceived {
            origin,
            seq,
            created_ts,
            ..
        } = l.event
        {
            *n.entry((l.node, (origin, seq, created_ts))).or_insert(0) += 1;
        }
    }
    n
}

/// Deliveries made and expected of `messages` to every peer of `to` but the origin, and
/// the first few missing ones.
fn coverage(
    events: &[Logged],
    messages: &[Created],
    to: &BTreeSet<SocketAddr>,
) -> (usize, usize, Vec<String>) {
    let got = receipts(events);
    let (mut made, mut expected, mut missing) = (0, 0, Vec::new());
    for &m in messages {
        for &p in to.iter().filter(|&&p| p != m.0) {
            expected += 1;
            match got.get(&(p, m)) {
                Some(_) => made += 1,
                None if missing.len() < 10 => missing.push(format!("{p} lacks {m:?}")),
                None => {}
            }
        }
    }
    (made, expected, missing)
}

fn percent(made: usize, expected: usize) -> f64 {
    100.0 * made as f64 / expected.max(1) as f64
}

// ----- 30% of the peers crash -----

/// 30% of 40 peers crash at 8 s (processes dying: their connections end). The survivors
/// lose neighbours, declare them dead after `MISSES` intervals, ask the seeds for fresh
/// lists and connect to replacements: their graph is one component again within a few
/// liveness intervals, and every message created from then on reaches every survivor.
#[test]
fn after_30_percent_of_the_peers_crash_the_survivors_reconnect_and_get_every_new_message() {
    for rng_seed in [1, 2, 3] {
        let run = std::panic::catch_unwind(|| thirty_percent_crash(rng_seed));
        assert!(run.is_ok(), "failed with rng seed {rng_seed}");
    }
}

fn thirty_percent_crash(rng_seed: u64) {
    let (peers, crash_at) = (40, 8_000);
    let mut net = Net::new(3, peers, 50, rng_seed);
    net.sim.run_for(crash_at);
    let all: BTreeSet<usize> = (0..peers).collect();
    assert!(
        net.connected(&all),
        "rng seed {rng_seed}: not connected before"
    );
    let crashed = crash_set(peers, 12, rng_seed);
    for &i in &crashed {
        net.sim.fail(net.peer_index(i), Failure::Crash);
    }
    let alive: BTreeSet<usize> = all.difference(&crashed).copied().collect();
    net.sim.run_for(10);
    let split = !net.connected(&alive);
    let short = !net.refilled(&alive);
    let whole = |n: &Net| n.connected(&alive) && n.refilled(&alive);
    let healed = net.held_from(100, 15_000, whole);
    let healed = healed.unwrap_or_else(|| panic!("rng seed {rng_seed}: not whole at the end"));
    let survivors: BTreeSet<SocketAddr> = alive.iter().map(|&i| peer_addr(i)).collect();
    let since_crash = created(net.sim.events(), EPOCH + crash_at, Millis::MAX);
    let since_heal = created(net.sim.events(), EPOCH + healed, Millis::MAX);
    let (made_c, exp_c, _) = coverage(net.sim.events(), &since_crash, &survivors);
    let (made, expected, missing) = coverage(net.sim.events(), &since_heal, &survivors);
    eprintln!(
        "rng seed {rng_seed}: 12 of 40 peers crashed at {crash_at} ms (graph split: {split}, \
         a survivor short of neighbours: {short}); from {healed} ms on connected with every \
         survivor at {MAX_NEIGHBORS}+ live neighbours; messages created after that: {made} of \
         {expected} deliveries ({:.2}%); after the crash: {made_c} of {exp_c} ({:.2}%)",
        percent(made, expected),
        percent(made_c, exp_c)
    );
    assert!(
        short,
        "rng seed {rng_seed}: the crash took no survivor's neighbour"
    );
    assert!(
        since_heal.len() >= 100,
        "rng seed {rng_seed}: too few new messages"
    );
    let took = healed - crash_at;
    assert!(
        took <= 6 * INTERVAL,
        "rng seed {rng_seed}: not whole for {took} ms"
    );
    assert_eq!(made, expected, "rng seed {rng_seed}: {missing:?}");
}

/// `n` of `peers` peer numbers, drawn from the RNG seed.
fn crash_set(peers: usize, n: usize, rng_seed: u64) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    let mut x = rng_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.insert((x % peers as u64) as usize);
    }
    out
}

/// The same through the stress run's `--kill`: 30% of 300 peers crash at 5 s. Every crash
/// is detected and removed, no live peer is, and every message created from four liveness
/// intervals after the crash on reaches every survivor.
#[test]
fn in_a_stress_run_with_30_percent_killed_the_later_messages_reach_every_survivor() {
    let rng_seed = 6;
    let flags = [
        "--peers",
        "300",
        "--seeds",
        "3",
        "--originators",
        "30",
        "--messages",
        "12",
        "--gossip-interval",
        "1s",
        "--latency",
        "1ms..20ms",
        "--kill",
        "0.3@5s",
    ];
    let args = SimArgs::from_flags(flags).unwrap_or_else(|e| panic!("{e}"));
    let scenario = args.scenario(rng_seed).unwrap_or_else(|e| panic!("{e}"));
    let outcome = simulate(&scenario, None, &mut |_| {});
    let outcome = outcome.unwrap_or_else(|e| panic!("rng seed {rng_seed}: {e}"));
    let r = &outcome.report;
    let f = &r.failures;
    assert_eq!(f.killed, 90, "rng seed {rng_seed}");
    assert_eq!((f.not_detected, f.not_removed, r.false_removals), (0, 0, 0));
    let after = EPOCH + 5_000 + 4 * INTERVAL;
    let (made, expected) = outcome.tally.coverage_since(300, after);
    eprintln!(
        "rng seed {rng_seed}: 90 of 300 peers killed at 5 s; messages created from 9 s on: \
         {made} of {expected} deliveries; overall coverage {:.4}%",
        100.0 * r.coverage
    );
    assert!(
        expected >= 30 * 3 * 209,
        "rng seed {rng_seed}: too few messages after"
    );
    assert_eq!(made, expected, "rng seed {rng_seed}:\n{}", r.render());
}

// ----- a seed restarted empty -----

/// A seed dies and comes back 3 s later with an empty list (a fresh core on the same
/// address). Its peers notice the lost registration connection (at once after a crash,
/// by the idle timeout after a silent failure), reconnect with backoff and register
/// again: every live peer that had registered with it is on its list again, and nothing
/// else is.
#[test]
fn a_seed_restarted_empty_is_refilled_by_its_peers_registering_again() {
    for (rng_seed, how) in [
        (1, Failure::Crash),
        (2, Failure::Crash),
        (3, Failure::Silent),
    ] {
        let run = std::panic::catch_unwind(|| seed_restart(rng_seed, how));
        assert!(run.is_ok(), "failed with rng seed {rng_seed}, {how:?}");
    }
}

fn seed_restart(rng_seed: u64, how: Failure) {
    let (peers, down_at, down_for) = (20, 5_000, 3_000);
    let mut net = Net::new(3, peers, 0, rng_seed);
    net.sim.run_for(down_at);
    let before = net.seed_list(0);
    assert!(
        !before.is_empty(),
        "rng seed {rng_seed}: seed 0 had no peer"
    );
    net.sim.fail(0, how);
    net.sim.run_for(down_for);
    assert!(net.sim.restart(0, seed_core(0, rng_seed ^ 0xBAD)));
    assert!(net.seed_list(0).is_empty());
    let refilled = net.held_from(100, 40_000, |n| n.seed_list(0) == before);
    let refilled = refilled.unwrap_or_else(|| {
        let after = net.seed_list(0);
        panic!("rng seed {rng_seed}: {how:?}: {after:?} is not {before:?}")
    });
    eprintln!(
        "rng seed {rng_seed}: seed down ({how:?}) from {down_at} to {} ms; its {} peers \
         registered again by {refilled} ms",
        down_at + down_for,
        before.len()
    );
    let restarted = down_at + down_for;
    let bound = 30_000 + u64::from(MISSES + 2) * INTERVAL;
    assert!(
        refilled - restarted <= bound,
        "rng seed {rng_seed}: {how:?}"
    );
}

// ----- a peer restarted on the same address -----

/// A peer crashes and a fresh core starts on its address, before its neighbours declare
/// it dead (1 s) or after every seed removed it (8 s). Its new incarnation numbers its
/// messages from 1 again, with newer timestamps: every other peer gets each of them
/// exactly once (the seen-cache does not take them for the old ones), the seeds list it,
/// and it has neighbours again.
#[test]
fn a_peer_restarted_on_the_same_address_is_a_new_incarnation_whose_messages_arrive() {
    for (rng_seed, down_for) in [(1, 1_000), (2, 1_000), (3, 8_000), (4, 8_000)] {
        let run = std::panic::catch_unwind(|| peer_restart(rng_seed, down_for));
        assert!(
            run.is_ok(),
            "failed with rng seed {rng_seed}, down {down_for} ms"
        );
    }
}

fn peer_restart(rng_seed: u64, down_for: Millis) {
    let (peers, victim, messages) = (12, 5, 10);
    let mut net = Net::new(2, peers, messages, rng_seed);
    net.sim.run_for(8_000);
    let old = created(net.sim.events(), 0, Millis::MAX);
    let old_own = old.iter().filter(|m| m.0 == peer_addr(victim)).count();
    assert_eq!(
        old_own, messages as usize,
        "rng seed {rng_seed}: first life"
    );
    net.sim.fail(net.peer_index(victim), Failure::Crash);
    net.sim.run_for(down_for);
    let back_at = net.sim.now();
    let core = peer_core(victim, 2, 5, rng_seed ^ 0xFEED);
    assert!(net.sim.restart(net.peer_index(victim), core));
    net.sim.run_for(15_000);
    let others: BTreeSet<SocketAddr> = (0..peers).map(peer_addr).collect();
    let new = created(net.sim.events(), back_at, Millis::MAX);
    assert_eq!(new.len(), 5, "rng seed {rng_seed}: second life {new:?}");
    let (made, expected, missing) = coverage(net.sim.events(), &new, &others);
    let (old_made, old_expected, _) = coverage(net.sim.events(), &old, &others);
    eprintln!(
        "rng seed {rng_seed}: peer down {down_for} ms; its 5 new messages: {made} of \
         {expected} deliveries; the first life's {} messages: {old_made} of {old_expected}",
        old.len()
    );
    assert_eq!(made, expected, "rng seed {rng_seed}: {missing:?}");
    // The new process has an empty seen-cache: it may get a message its first life had.
    let me = peer_addr(victim);
    let first_life = |l: &&Logged| l.node != me || l.at < back_at;
    let lives: [Vec<Logged>; 2] = [
        net.sim
            .events()
            .iter()
            .filter(first_life)
            .cloned()
            .collect(),
        net.sim
            .events()
            .iter()
            .filter(|l| l.node == me && l.at >= back_at)
            .cloned()
            .collect(),
    ];
    for life in &lives {
        let twice: Vec<_> = receipts(life).into_iter().filter(|(_, n)| *n > 1).collect();
        assert!(
            twice.is_empty(),
            "rng seed {rng_seed}: delivered twice: {twice:?}"
        );
    }
    assert_restarted_peer_is_alive(&net, victim);
}

/// Every seed it registered with lists it, it has neighbours, and they have it.
fn assert_restarted_peer_is_alive(net: &Net, victim: usize) {
    let rng_seed = net.rng_seed;
    let Some(p) = net.peer(victim) else {
        panic!("rng seed {rng_seed}: no peer {victim}")
    };
    let me = peer_addr(victim);
    let seeds: Vec<SocketAddr> = p.registered_seeds().collect();
    assert!(
        seeds.len() >= 2,
        "rng seed {rng_seed}: registered with {seeds:?}"
    );
    for i in 0..net.seeds {
        assert!(
            net.seed_list(i).contains(&me),
            "rng seed {rng_seed}: seed {i}"
        );
    }
    let mine: Vec<SocketAddr> = p.connected_neighbors().collect();
    assert!(!mine.is_empty(), "rng seed {rng_seed}: no neighbour");
    for n in mine {
        let index = (0..net.peers).find(|&i| peer_addr(i) == n);
        let theirs = index.and_then(|i| net.peer(i));
        let has_me = theirs.is_some_and(|t| t.connected_neighbors().any(|a| a == me));
        assert!(has_me, "rng seed {rng_seed}: {n} does not have it");
    }
}

// ----- a peer cut off while it creates messages -----

/// Three peers are each cut off alone from everyone else while they create messages: for
/// 2 s (their connections survive: fewer misses than `MISSES`; what they sent meanwhile
/// was lost) or 6 s (they and their neighbours declare each other dead, and they
/// reconnect after the heal). After the heal, every message they created during the cut
/// reaches every other peer: each sends its recent messages again to a neighbour that
/// connects or answers again after a miss.
#[test]
fn messages_created_by_a_peer_while_cut_off_reach_the_rest_after_the_heal() {
    for (rng_seed, cut_for) in [(1, 2_000), (2, 2_000), (3, 6_000), (4, 6_000)] {
        let run = std::panic::catch_unwind(|| cut_off(rng_seed, cut_for));
        assert!(
            run.is_ok(),
            "failed with rng seed {rng_seed}, cut {cut_for} ms"
        );
    }
}

fn cut_off(rng_seed: u64, cut_for: Millis) {
    let (peers, cut_at) = (30, 4_000);
    let mut net = Net::new(3, peers, 30, rng_seed);
    net.sim.run_for(cut_at);
    let members = crash_set(peers, 3, rng_seed);
    let heal = net.sim.now() + cut_for;
    for &i in &members {
        assert!(net.sim.partition(&[net.peer_index(i)], heal));
    }
    net.sim.run_for(cut_for + 20_000);
    let cut: BTreeSet<SocketAddr> = members.iter().map(|&i| peer_addr(i)).collect();
    // The rest of the network: the peers never cut off (a peer that was cut off misses
    // what others created meanwhile, unless a new neighbour created it: there is no pull).
    let rest: BTreeSet<SocketAddr> = (0..peers)
        .map(peer_addr)
        .filter(|a| !cut.contains(a))
        .collect();
    let during = created(net.sim.events(), EPOCH + cut_at, heal);
    let (inside, outside): (Vec<Created>, Vec<Created>) =
        during.into_iter().partition(|m| cut.contains(&m.0));
    let (made, expected, missing) = coverage(net.sim.events(), &inside, &rest);
    let everyone: BTreeSet<SocketAddr> = (0..peers).map(peer_addr).collect();
    let (o_made, o_expected, _) = coverage(net.sim.events(), &outside, &everyone);
    eprintln!(
        "rng seed {rng_seed}: 3 of 30 peers each cut off for {cut_for} ms; their {} messages \
         created meanwhile, to the 27 others: {made} of {expected} deliveries ({:.2}%); the \
         others' {} messages of that time, to every peer: {o_made} of {o_expected} ({:.2}%)",
        inside.len(),
        percent(made, expected),
        outside.len(),
        percent(o_made, o_expected)
    );
    assert!(
        inside.len() >= 3,
        "rng seed {rng_seed}: too few messages in the cut"
    );
    assert_eq!(made, expected, "rng seed {rng_seed}: {missing:?}");
}

// ----- real processes -----

/// Real `gossipd` processes on a loopback address of the test's own (127.0.0.31 and .32),
/// so their ports cannot collide with the other daemon tests' on 127.0.0.1.
mod real {
    use serde_json::Value;
    use std::fs::{self, File};
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use tempfile::TempDir;

    use crate::daemon::{read_events, wait_until};

    /// How long any condition may take: generous, as the tests share two cores.
    pub(super) const WAIT: Duration = Duration::from_secs(60);
    pub(super) const LIVENESS: [&str; 4] =
        ["--liveness-interval", "300ms", "--liveness-misses", "3"];

    /// A port free on `ip` a moment ago.
    pub(super) fn free_addr(ip: &str) -> String {
        let probe = TcpListener::bind((ip, 0)).expect("bind a probe listener");
        let port = probe.local_addr().expect("probe address").port();
        format!("{ip}:{port}")
    }

    pub(super) fn now_ms() -> u64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// One process this test started: SIGKILLed and reaped on drop, or by `kill`.
    pub(super) struct Daemon {
        child: Child,
        pub(super) addr: String,
        events: PathBuf,
        log_dir: PathBuf,
    }

    impl Daemon {
        /// Starts `role` on `addr`; `life` names this incarnation's files, so a restart
        /// on the same address writes its own events.
        pub(super) fn start(
            dir: &TempDir,
            role: &str,
            addr: &str,
            life: &str,
            args: &[&str],
        ) -> Daemon {
            let name = format!("{role}-{}-{life}", addr.replace(':', "-"));
            let events = dir.path().join(format!("{name}.jsonl"));
            let log_dir = dir.path().join(format!("logs-{name}"));
            let stderr = File::create(dir.path().join(format!("{name}.stderr")));
            let child = Command::new(env!("CARGO_BIN_EXE_gossipd"))
                .args([role, "--listen", addr, "--events"])
                .arg(&events)
                .arg("--log-dir")
                .arg(&log_dir)
                .args(LIVENESS)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr.expect("stderr file"))
                .spawn()
                .expect("start gossipd");
            let addr = addr.to_owned();
            let d = Daemon {
                child,
                addr,
                events,
                log_dir,
            };
            // The log file is opened right after the bind: from then on it listens.
            d.wait_for("never listened", |d| log_file(&d.log_dir).is_some());
            d
        }

        pub(super) fn events(&self, event: &str) -> Vec<Value> {
            let mut all = read_events(&self.events);
            all.retain(|e| e["event"] == event);
            all
        }

        pub(super) fn has(&self, event: &str, field: &str, value: &str) -> bool {
            self.events(event).iter().any(|e| e[field] == value)
        }

        /// Waits until `cond` holds; panics with `what` and the log's tail if it never does.
        pub(super) fn wait_for(&self, what: &str, cond: impl Fn(&Daemon) -> bool) {
            if !wait_until(WAIT, || cond(self)) {
                panic!("{} {what}\n{}", self.addr, self.tail());
            }
        }

        pub(super) fn tail(&self) -> String {
            let log = log_file(&self.log_dir);
            let text = log
                .and_then(|p| fs::read_to_string(p).ok())
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" DEBUG ")).collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        }

        /// SIGKILL, as `kill -9`: no goodbye, the kernel closes the sockets.
        pub(super) fn kill(mut self) {
            self.child.kill().expect("SIGKILL the process");
            self.child.wait().expect("reap the process");
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn log_file(dir: &Path) -> Option<PathBuf> {
        let mut entries = fs::read_dir(dir).ok()?;
        entries.find_map(|e| e.ok().map(|e| e.path()))
    }
}

use real::{free_addr, now_ms, Daemon};
use std::time::Instant;

/// A real seed with three registered peers is killed with SIGKILL and started again on
/// the same port, empty. Every peer notices, retries with backoff and registers again.
#[test]
fn a_real_seed_killed_and_restarted_empty_on_the_same_port_is_registered_with_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seed_at = free_addr("127.0.0.31");
    let config = dir.path().join("config.txt");
    std::fs::write(&config, format!("{seed_at}\n")).expect("write config");
    let config = config.to_str().expect("utf-8 temp path").to_owned();
    let seed = Daemon::start(&dir, "seed", &seed_at, "first", &[]);
    let quiet = ["--config", config.as_str(), "--messages", "0"];
    let peers: Vec<Daemon> = (0..3)
        .map(|_| Daemon::start(&dir, "peer", &free_addr("127.0.0.31"), "first", &quiet))
        .collect();
    for p in &peers {
        seed.wait_for("never registered a peer", |s| {
            s.has("peer_registered", "peer", &p.addr)
        });
    }
    seed.kill();
    for p in &peers {
        p.wait_for("did not notice the lost seed", |p| {
            p.has("seed_unreachable", "seed", &seed_at)
        });
    }
    let restarted = Instant::now();
    let seed = Daemon::start(&dir, "seed", &seed_at, "second", &[]);
    for p in &peers {
        seed.wait_for("was not registered with again", |s| {
            s.has("peer_registered", "peer", &p.addr)
        });
    }
    eprintln!(
        "real seed restarted empty: its 3 peers registered again within {} ms",
        restarted.elapsed().as_millis()
    );
    for p in &peers {
        let lists = p.events("peer_list_received");
        let from_seed = lists.iter().filter(|e| e["from"] == seed_at.as_str());
        assert!(
            from_seed.count() >= 2,
            "{} was not answered again\n{}",
            p.addr,
            p.tail()
        );
    }
}

/// Three real peers; one is killed with SIGKILL after its messages 1 to 3 went round, and
/// started again on the same address. Its new messages 1 to 3 reach both other peers (a
/// new incarnation, not duplicates), and they and the seed take it back.
#[test]
fn a_real_peer_killed_and_restarted_on_the_same_address_has_its_new_messages_delivered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seed_at = free_addr("127.0.0.32");
    let config = dir.path().join("config.txt");
    std::fs::write(&config, format!("{seed_at}\n")).expect("write config");
    let config = config.to_str().expect("utf-8 temp path").to_owned();
    let seed = Daemon::start(&dir, "seed", &seed_at, "first", &[]);
    let args = [
        "--config",
        config.as_str(),
        "--messages",
        "3",
        "--gossip-interval",
        "300ms",
    ];
    let start = |life| Daemon::start(&dir, "peer", &free_addr("127.0.0.32"), life, &args);
    let (a, b) = (start("first"), start("first"));
    let victim_at = free_addr("127.0.0.32");
    let victim = Daemon::start(&dir, "peer", &victim_at, "first", &args);
    for p in [&a, &b] {
        p.wait_for("missed the first life's messages", |p| {
            got_all(p, &victim_at, 0)
        });
    }
    victim.kill();
    let restarted = now_ms();
    let started = Instant::now();
    let victim = Daemon::start(&dir, "peer", &victim_at, "second", &args);
    for p in [&a, &b] {
        p.wait_for("missed the second life's messages", |p| {
            got_all(p, &victim_at, restarted)
        });
    }
    eprintln!(
        "real peer restarted on its address: its 3 new messages reached both others within {} ms",
        started.elapsed().as_millis()
    );
    victim.wait_for("has no neighbour", |v| {
        !v.events("neighbor_connected").is_empty()
    });
    seed.wait_for("does not list it", |s| listed_last(s, &victim_at));
}

/// Whether `p` received messages 1 to 3 of `origin` created at `since` or later.
fn got_all(p: &Daemon, origin: &str, since: u64) -> bool {
    let got = p.events("gossip_received");
    let new = got.iter().filter(|e| e["origin"] == origin);
    let new = new.filter(|e| e["created_ts"].as_u64().is_some_and(|t| t >= since));
    let seqs: BTreeSet<u64> = new.filter_map(|e| e["seq"].as_u64()).collect();
    seqs == BTreeSet::from([1, 2, 3])
}

/// Whether the seed's last word about `peer` is that it registered.
fn listed_last(seed: &Daemon, peer: &str) -> bool {
    let mut about = seed.events("peer_registered");
    about.retain(|e| e["peer"] == peer);
    let mut removed = seed.events("peer_removed");
    removed.retain(|e| e["addr"] == peer);
    let last = |v: &[serde_json::Value]| v.iter().filter_map(|e| e["ts"].as_u64()).max();
    match (last(&about), last(&removed)) {
        (Some(r), Some(d)) => r >= d,
        (Some(_), None) => true,
        _ => false,
    }
}

// ----- every neighbour of one peer fails at once -----

/// Every neighbour of one peer fails at the same moment, by crashing or by hanging
/// silently. The orphan finds them dead (closed connections, or 3 missed checks), asks
/// the seeds for a fresh list, connects to live peers, and gets every message created
/// from the failure on: those created while it was cut off through its new neighbours'
/// catch-up, the rest as usual.
#[test]
fn a_peer_whose_every_neighbour_fails_at_once_reconnects_and_misses_nothing() {
    for how in [Failure::Crash, Failure::Silent] {
        for rng_seed in [1, 2, 3] {
            let run = std::panic::catch_unwind(|| orphaned(how, rng_seed));
            assert!(run.is_ok(), "failed with rng seed {rng_seed}, {how:?}");
        }
    }
}

fn orphaned(how: Failure, rng_seed: u64) {
    let (peers, fail_at, orphan) = (20, 6_000, 0);
    let mut net = Net::new(3, peers, 40, rng_seed);
    net.sim.run_for(fail_at);
    let index: BTreeMap<SocketAddr, usize> = (0..peers).map(|i| (peer_addr(i), i)).collect();
    let neighbours = |n: &Net| -> BTreeSet<usize> {
        let p = n.peer(orphan);
        let addrs = p.into_iter().flat_map(|p| p.connected_neighbors());
        addrs.filter_map(|a| index.get(&a).copied()).collect()
    };
    let gone = neighbours(&net);
    assert!(
        !gone.is_empty(),
        "rng seed {rng_seed}: no neighbour to fail"
    );
    for &i in &gone {
        net.sim.fail(net.peer_index(i), how);
    }
    let back = |n: &Net| neighbours(n).iter().any(|i| !gone.contains(i));
    let rejoined = net.held_from(100, 15_000, back);
    let rejoined = rejoined.unwrap_or_else(|| panic!("rng seed {rng_seed}: still alone"));
    net.sim.run_for(2_000);
    let since = created(net.sim.events(), EPOCH + fail_at, Millis::MAX);
    let orphan_only = BTreeSet::from([peer_addr(orphan)]);
    let (made, expected, missing) = coverage(net.sim.events(), &since, &orphan_only);
    eprintln!(
        "rng seed {rng_seed}, {how:?}: {} neighbours failed at {fail_at} ms; a live one \
         from {rejoined} ms on; messages created since the failure: {made} of {expected}",
        gone.len()
    );
    assert!(expected >= 100, "rng seed {rng_seed}: too few messages");
    let took = rejoined - fail_at;
    let limit = u64::from(MISSES + 2) * INTERVAL;
    assert!(took <= limit, "rng seed {rng_seed}: alone for {took} ms");
    assert_eq!(made, expected, "rng seed {rng_seed}: {missing:?}");
}
