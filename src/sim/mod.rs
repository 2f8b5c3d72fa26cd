//! The simulator: drives the same seed and peer cores over a virtual network with a
//! virtual clock, and `gossipd sim`, the stress run built on it.
//!
//! Deterministic: each node's own seeded RNG draws the latency and loss of what it sends,
//! the inputs of one virtual millisecond run in node order (for one node, in the order
//! they were scheduled), and no wall clock is read here (only `command.rs` reads one, for
//! its progress line and its resource figures). A minute of protocol runs in
//! milliseconds, and the same seed replays the same run exactly. A busy millisecond is
//! cut by node into shards that several threads take as they come free (`engine.rs` says
//! why that changes nothing but the wall time).
//!
//! Files: `queue.rs` (the calendar event queue), `batch.rs` (a millisecond's order and
//! shards), `routes.rs` (connections, partitions), `engine.rs` (carrying out the cores'
//! actions), `compact.rs` (standard gossip by its numbers), `frames.rs` (frame sizes and
//! types), `args.rs` (the command's flags),
//! `scenario.rs` (a stress run: plan, failures, partitions, report), `watch.rs` (its
//! observer), `command.rs` (printing, files, clock).

mod args;
mod batch;
mod command;
mod compact;
mod engine;
mod frames;
mod queue;
mod routes;
mod scenario;
mod watch;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::proto::{Event, Millis, Node};

pub use args::{Latency, PartitionSpec, SimArgs};
pub use command::run;
pub use scenario::{peer_addr, seed_addr, simulate, Outcome, Progress, Scenario, ScenarioError};

use batch::Cut;
use engine::{Input, Net, Output, Scheduled, Shard, Why, Worker};
pub use frames::FrameKinds;
use queue::Calendar;
use routes::{Cuts, Routes};

/// Every node's index by its address. The simulator chose the addresses, so they need
/// no defence against collisions an attacker would craft: FxHash hashes a `SocketAddr` in
/// a few instructions where SipHash takes tens of nanoseconds, once per dial.
pub(crate) type ByAddr = HashMap<SocketAddr, u32, rustc_hash::FxBuildHasher>;

/// The virtual network's behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct NetModel {
    /// One-way latency, drawn uniformly from this range (ms).
    pub latency_min: Millis,
    pub latency_max: Millis,
    /// Probability that one frame is lost.
    pub loss: f64,
}

impl Default for NetModel {
    fn default() -> Self {
        NetModel {
            latency_min: 1,
            latency_max: 5,
            loss: 0.0,
        }
    }
}

/// How a node stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The process dies: the kernel closes its sockets, so remotes see the connections end.
    Crash,
    /// The host vanishes or the process hangs: remotes see nothing at all.
    Silent,
}

/// One logged event, as the simulator records it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub at: Millis,
    pub node: SocketAddr,
    pub event: Event,
}

/// Where to send what nodes log.
pub trait Observer {
    fn event(&mut self, at: Millis, node: SocketAddr, event: &Event);
}

/// Keeps every event in memory (for tests and small runs).
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Vec<Logged>,
}

impl Observer for Recorder {
    fn event(&mut self, at: Millis, node: SocketAddr, event: &Event) {
        self.events.push(Logged {
            at,
            node,
            event: event.clone(),
        });
    }
}

/// What the virtual network carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Inputs handed to the nodes (starts, timers, connects, closes, frames).
    pub inputs: u64,
    /// Connections accepted (both ends up).
    pub connections_opened: u64,
    /// Connects refused: unknown address, node down, or across a partition.
    pub connects_refused: u64,
    /// Frames a node queued on an open connection, and their encoded size (header included).
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// Frames handed to a running node's core.
    pub frames_delivered: u64,
    /// Frames dropped by `NetModel::loss`, and across a partition.
    pub frames_lost: u64,
    pub frames_cut: u64,
}

impl NetStats {
    fn add(&mut self, other: &NetStats) {
        self.inputs += other.inputs;
        self.connections_opened += other.connections_opened;
        self.connects_refused += other.connects_refused;
        self.frames_sent += other.frames_sent;
        self.bytes_sent += other.bytes_sent;
        self.frames_delivered += other.frames_delivered;
        self.frames_lost += other.frames_lost;
        self.frames_cut += other.frames_cut;
    }
}

/// The fewest inputs a shard is given: starting a thread costs about 20 us, an input
/// about 1 us. A millisecond with fewer than twice this runs on the caller's thread alone.
const SPLIT_MIN: usize = 2048;

/// Shards per thread in a split millisecond: enough that a thread that drew costly
/// inputs leaves the rest to the others, few enough that each keeps thousands of inputs.
const PIECES_PER_THREAD: usize = 8;

/// The simulator.
pub struct Sim<O: Observer = Recorder> {
    now: Millis,
    rng_seed: u64,
    model: NetModel,
    nodes: Vec<Node>,
    /// Per node: running (false once failed). Apart from the nodes, so that checking it
    /// costs no extra cache line of a node that will not be touched.
    up: Vec<bool>,
    /// Per node: the RNG that draws the latency and loss of what it sends, so that a node's
    /// draws do not depend on which thread runs it, nor on other nodes.
    rngs: Vec<SmallRng>,
    /// Every node's address, by index (an acceptor reads its dialler's here).
    addrs: Vec<SocketAddr>,
    by_addr: ByAddr,
    routes: Routes,
    cuts: Cuts,
    queue: Calendar<Scheduled>,
    /// The frame types `model.loss` applies to.
    lossy: FrameKinds,
    stats: NetStats,
    /// Threads a busy millisecond is split over (1: all on the caller's).
    threads: usize,
    /// The fewest inputs a thread of a split millisecond is given.
    split_min: usize,
    /// Batches split over more than one thread so far.
    split_batches: u64,
    /// Emptied shard outputs, kept for their memory.
    spare: Vec<Output>,
    pub observer: O,
}

/// The virtual clock's start: 2025-11-21T00:00:00Z, so timestamps look real.
pub const EPOCH: Millis = 1_763_683_200_000;

impl Sim<Recorder> {
    pub fn new(model: NetModel, rng_seed: u64) -> Self {
        Sim::with_observer(model, rng_seed, Recorder::default())
    }

    pub fn events(&self) -> &[Logged] {
        &self.observer.events
    }
}

impl<O: Observer> Sim<O> {
    pub fn with_observer(model: NetModel, rng_seed: u64, observer: O) -> Self {
        Sim {
            now: EPOCH,
            rng_seed,
            model,
            nodes: Vec::new(),
            up: Vec::new(),
            rngs: Vec::new(),
            addrs: Vec::new(),
            by_addr: ByAddr::default(),
            routes: Routes::default(),
            cuts: Cuts::new(),
            queue: Calendar::new(EPOCH),
            lossy: FrameKinds::ALL,
            stats: NetStats::default(),
            threads: 1,
            split_min: SPLIT_MIN,
            split_batches: 0,
            spare: Vec::new(),
            observer,
        }
    }

    /// Runs busy milliseconds on up to `threads` threads (at least 1). The run is the
    /// same whatever the number.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Makes `NetModel::loss` apply to these frame types only (all of them by default).
    pub fn set_lossy(&mut self, kinds: FrameKinds) {
        self.lossy = kinds;
    }

    pub fn now(&self) -> Millis {
        self.now
    }

    /// Makes room for `more` nodes, so that a large network does not leave up to half
    /// the node table unused, and has the kernel back that room on every thread at once.
    pub fn reserve(&mut self, more: usize) {
        self.nodes.reserve_exact(more);
        if more >= FAULT_IN_MIN {
            fault_in(self.nodes.spare_capacity_mut(), self.threads);
        }
        self.addrs.reserve_exact(more);
        self.up.reserve_exact(more);
        self.rngs.reserve_exact(more);
        self.routes.reserve(more);
        self.by_addr.reserve(more);
    }

    /// Adds a node; it starts at `now + delay`. Returns its index.
    pub fn add(&mut self, core: Node, delay: Millis) -> usize {
        let idx = self.nodes.len();
        let id = u32::try_from(idx).expect("fewer than 2^32 simulated nodes");
        self.by_addr.insert(core.addr(), id);
        self.addrs.push(core.addr());
        self.nodes.push(core);
        self.up.push(true);
        let stream = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.rngs
            .push(SmallRng::seed_from_u64(self.rng_seed ^ stream));
        self.routes.add_node();
        self.schedule(self.now + delay, id, Input::Start);
        idx
    }

    pub fn node(&self, idx: usize) -> Option<&Node> {
        self.nodes.get(idx)
    }

    /// Every node, in the order they were added.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> + '_ {
        self.nodes.iter()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_up(&self, idx: usize) -> bool {
        self.up.get(idx).copied().unwrap_or(false)
    }

    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Inputs waiting in the queue (frames in flight, timers, starts).
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Heap bytes of the connection tables, for memory accounting.
    pub fn route_bytes(&self) -> usize {
        self.routes.heap_bytes()
    }

    /// Stops a node now. A crash closes its connections (remotes see each end after a
    /// latency); a silent failure leaves them open and unanswered.
    pub fn fail(&mut self, idx: usize, how: Failure) {
        let Some(up) = self.up.get_mut(idx) else {
            return;
        };
        *up = false;
        if how == Failure::Silent {
            return;
        }
        let Ok(id) = u32::try_from(idx) else { return };
        self.close_all(id);
    }

    /// Closes every connection of `node` (the remotes hear of each after a latency).
    fn close_all(&mut self, node: u32) {
        let out = self.spare.pop().unwrap_or_default();
        let (net, shard, mut sink) = self.lend();
        let mut worker = Worker::new(shard, &net, out);
        worker.close_all(node);
        sink.apply(worker.into_output());
    }

    /// Starts a failed node again, on the same address, with a fresh core: a process
    /// restarted with its state lost. Its old connections are gone: what was in flight to
    /// it is dropped, remotes still holding one of them (after a silent failure) hear it
    /// end, and frames they send on them go nowhere. False when the node is running or
    /// `core` has another address.
    pub fn restart(&mut self, idx: usize, core: Node) -> bool {
        let same_addr = self.nodes.get(idx).is_some_and(|n| n.addr() == core.addr());
        let Ok(id) = u32::try_from(idx) else {
            return false;
        };
        if self.is_up(idx) || !same_addr {
            return false;
        }
        self.close_all(id);
        self.routes.forget_towards(id);
        // Dials on their way reach the new process; the rest was for the old one, as were
        // its own dials (their connection ids may be the new one's). One of those that
        // was accepted is reset: the acceptor hears its end close.
        let mut accepted = Vec::new();
        self.queue.retain(|s| {
            accepted.extend(s.accepted_by(id));
            match s.input {
                Input::Accept { from, .. } => from != id,
                _ => s.node != id,
            }
        });
        for (peer, peer_conn) in accepted {
            let at = self.now + self.model.latency_min;
            self.schedule(at, peer, Input::Closed(peer_conn, Why::Closed));
        }
        if let (Some(node), Some(up)) = (self.nodes.get_mut(idx), self.up.get_mut(idx)) {
            *node = core;
            *up = true;
        }
        self.schedule(self.now, id, Input::Start);
        true
    }

    /// Cuts the nodes `members` off from every other node, from now until `heal_at`:
    /// frames across the cut are lost, connects across it refused, and a close across it
    /// is heard only after it heals. False when 64 partitions are already in force.
    pub fn partition(&mut self, members: &[usize], heal_at: Millis) -> bool {
        self.cuts.start(members, self.nodes.len(), heal_at)
    }

    /// Partitions in force now.
    pub fn partitions(&self) -> usize {
        self.cuts.in_force()
    }

    /// Runs every event due up to and including `until`.
    pub fn run_until(&mut self, until: Millis) {
        while let Some((at, mut batch)) = self.queue.pop_due(until) {
            self.now = at;
            self.cuts.heal_due(at);
            let numbered = u32::try_from(batch.len()).is_ok();
            match numbered {
                true => batch::number(&mut batch),
                false => batch::by_node_stable(&mut batch),
            }
            self.run_batch(&mut batch, self.threads, numbered);
            self.queue.recycle(batch);
        }
        self.now = self.now.max(until);
        self.cuts.heal_due(self.now);
    }

    /// Runs the inputs of one instant in up to `threads` shards of nodes, each ordered
    /// on its own thread (unless `numbered` is false: then the batch is in order
    /// already), and queues what they hand back, shard by shard.
    fn run_batch(&mut self, batch: &mut [Scheduled], threads: usize, numbered: bool) {
        if batch.is_empty() {
            return;
        }
        let pieces = match threads {
            1 => 1,
            _ => threads * PIECES_PER_THREAD,
        };
        let cuts = match numbered {
            true => batch::cut(batch, pieces, self.split_min),
            false => Vec::new(),
        };
        self.split_batches += u64::from(!cuts.is_empty());
        let spare: Vec<Output> = (0..=cuts.len())
            .map(|_| self.spare.pop().unwrap_or_default())
            .collect();
        let (net, whole, mut sink) = self.lend();
        let parts = split(whole, batch, &cuts);
        run_parts(parts, threads, &net, spare, numbered, |out| sink.apply(out));
    }

    /// What every shard reads now, every node as one shard to split, and where their
    /// output goes.
    fn lend(&mut self) -> (Net<'_>, Shard<'_>, Sink<'_, O>) {
        let net = Net {
            now: self.now,
            model: &self.model,
            lossy: self.lossy,
            up: &self.up,
            addrs: &self.addrs,
            by_addr: &self.by_addr,
            cuts: &self.cuts,
        };
        let whole = Shard {
            base: 0,
            nodes: &mut self.nodes,
            routes: self.routes.slice(),
            rngs: &mut self.rngs,
        };
        let sink = Sink {
            now: self.now,
            queue: &mut self.queue,
            observer: &mut self.observer,
            stats: &mut self.stats,
            spare: &mut self.spare,
            keep: self.threads * PIECES_PER_THREAD + 1,
        };
        (net, whole, sink)
    }

    pub fn run_for(&mut self, duration: Millis) {
        self.run_until(self.now + duration);
    }

    fn schedule(&mut self, at: Millis, node: u32, input: Input) {
        self.queue.push(at, Scheduled::new(node, input));
    }
}

/// Writes to every 4 KiB page of `room` (reserved, not used yet) on up to `threads`
/// threads, so that the kernel backs it with memory on all of them at once, not page by
/// page as nodes are added on one thread. At a million peers the node table is 1 GiB and
/// backing it was most of the setup's time. The nodes written later overwrite the zeros.
fn fault_in<T: Send>(room: &mut [MaybeUninit<T>], threads: usize) {
    let size = std::mem::size_of::<T>();
    // A vector of zero-sized values has room for usize::MAX of them and no memory.
    if threads < 2 || room.is_empty() || size == 0 {
        return;
    }
    let per_page = (4096 / size).max(1);
    let share = room.len().div_ceil(threads);
    std::thread::scope(|s| {
        for part in room.chunks_mut(share) {
            s.spawn(move || {
                for slot in part.iter_mut().step_by(per_page) {
                    *slot = MaybeUninit::zeroed();
                }
                std::hint::black_box(part);
            });
        }
    });
}

/// Below this many nodes the node table is backed as it fills (threads cost more).
const FAULT_IN_MIN: usize = 100_000;

/// Where a shard's output goes: queued, and its events shown to the observer, in order.
struct Sink<'a, O> {
    now: Millis,
    queue: &'a mut Calendar<Scheduled>,
    observer: &'a mut O,
    stats: &'a mut NetStats,
    spare: &'a mut Vec<Output>,
    /// Emptied outputs kept for their memory.
    keep: usize,
}

impl<O: Observer> Sink<'_, O> {
    fn apply(&mut self, mut out: Output) {
        for (at, s) in out.scheduled.drain(..) {
            self.queue.push(at, s);
        }
        for (addr, event) in out.logged.drain(..) {
            self.observer.event(self.now, addr, &event);
        }
        self.stats.add(&out.stats);
        out.stats = NetStats::default();
        if self.spare.len() < self.keep {
            self.spare.push(out);
        }
    }
}

/// Cuts `whole` and `batch` at `cuts`: each piece of the batch with the shard of nodes
/// it is for.
fn split<'s, 'b>(
    whole: Shard<'s>,
    batch: &'b mut [Scheduled],
    cuts: &[Cut],
) -> Vec<(Shard<'s>, &'b mut [Scheduled])> {
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let (mut shard, mut rest, mut done) = (whole, batch, 0);
    for cut in cuts {
        let (low, high) = match shard.split_at(cut.node) {
            Ok(halves) => halves,
            Err(same) => {
                shard = same;
                continue;
            }
        };
        let (mine, theirs) = rest.split_at_mut(cut.at - done);
        parts.push((low, mine));
        (shard, rest, done) = (high, theirs, cut.at);
    }
    parts.push((shard, rest));
    parts
}

/// Runs the parts on up to `threads` threads, this one among them, each thread taking the
/// next part not yet taken as it comes free; each part runs into one of `spare`'s outputs
/// (ordering its inputs first when `numbered`). The outputs go to `apply` in the parts'
/// order, on this thread: each as soon as it and those before it are done.
fn run_parts(
    parts: Vec<(Shard<'_>, &mut [Scheduled])>,
    threads: usize,
    net: &Net<'_>,
    spare: Vec<Output>,
    numbered: bool,
    mut apply: impl FnMut(Output),
) {
    let count = parts.len();
    let mut spare = spare.into_iter();
    let work: Vec<_> = (parts.into_iter().enumerate())
        .map(|(i, (shard, batch))| {
            let out = spare.next().unwrap_or_default();
            (i, Worker::new(shard, net, out), batch)
        })
        .collect();
    let todo = Mutex::new(work.into_iter());
    let done = Mutex::new(Done::new(count));
    // Runs the next part not yet taken; false when none is left.
    let run_next = || {
        let Some((i, worker, batch)) = lock(&todo).next() else {
            return false;
        };
        if numbered {
            batch::by_node(batch);
        }
        let out = worker.run(batch);
        lock(&done).put(i, out);
        true
    };
    std::thread::scope(|scope| {
        for _ in 1..threads.min(count) {
            scope.spawn(move || while run_next() {});
        }
        while run_next() {
            // Queued while the other threads run theirs.
            let ready = lock(&done).take_ready();
            ready.into_iter().for_each(&mut apply);
        }
    });
    lock(&done).take_ready().into_iter().for_each(apply);
}

/// The parts' outputs as they come in, handed on in order.
struct Done {
    outs: Vec<Option<Output>>,
    next: usize,
}

impl Done {
    fn new(count: usize) -> Self {
        Done {
            outs: (0..count).map(|_| None).collect(),
            next: 0,
        }
    }

    fn put(&mut self, i: usize, out: Output) {
        if let Some(slot) = self.outs.get_mut(i) {
            *slot = Some(out);
        }
    }

    /// The outputs from the next one on that are in, up to the first missing.
    fn take_ready(&mut self) -> Vec<Output> {
        let mut ready = Vec::new();
        while let Some(out) = self.outs.get_mut(self.next).and_then(Option::take) {
            ready.push(out);
            self.next += 1;
        }
        ready
    }
}

/// Locks `m`; a thread that panicked while holding it has already failed the run (the
/// scope re-raises its panic), so a poisoned lock is used as it is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{PeerConfig, PeerCore, SeedConfig, SeedCore};

    fn seed() -> Node {
        let addr = SocketAddr::from(([10, 0, 0, 1], 7000));
        Node::Seed(SeedCore::new(SeedConfig::new(addr), 1))
    }

    fn peer(i: u8, rng_seed: u64) -> Node {
        let addr = SocketAddr::from(([10, 0, 1, i], 9000));
        let mut cfg = PeerConfig::new(addr, vec![SocketAddr::from(([10, 0, 0, 1], 7000))]);
        cfg.gossip_interval = 20;
        cfg.messages = 1_000;
        Node::Peer(PeerCore::new(cfg, rng_seed))
    }

    /// Three peers gossiping every 20 ms; the middle one is restarted the instant it
    /// crashes, with gossip to it in flight on connection ids its new core reuses.
    fn restarted_mid_gossip(how: Failure) -> Sim {
        let mut sim = Sim::new(NetModel::default(), 4);
        sim.add(seed(), 0);
        for i in 1..=3 {
            sim.add(peer(i, u64::from(i)), u64::from(i));
        }
        sim.run_for(1_000);
        sim.fail(2, how);
        assert!(sim.restart(2, peer(2, 99)));
        sim.run_for(2_000);
        sim
    }

    #[test]
    fn a_restarted_node_gets_nothing_meant_for_its_old_incarnation() {
        for how in [Failure::Crash, Failure::Silent] {
            let sim = restarted_mid_gossip(how);
            let bad: Vec<&Logged> = (sim.events().iter())
                .filter(|l| matches!(l.event, Event::BadFrame { .. }))
                .collect();
            assert!(bad.is_empty(), "{how:?}: {bad:?}");
            let Some(Node::Peer(p)) = sim.node(2) else {
                panic!("node 2 is a peer")
            };
            assert_eq!(p.registered_seeds().count(), 1, "{how:?}");
            assert_eq!(p.connected_neighbors().count(), 2, "{how:?}");
            assert!(p.stats().gossip_first_receipts > 0, "{how:?}");
        }
    }

    /// A run with loss, crashes and a restart, every millisecond split as finely as asked:
    /// what every node logged, when, and the network's counters.
    fn threaded_run(threads: usize) -> (Vec<String>, NetStats, u64) {
        let model = NetModel {
            latency_min: 1,
            latency_max: 20,
            loss: 0.05,
        };
        let mut sim = Sim::new(model, 9);
        sim.set_threads(threads);
        sim.split_min = 1;
        sim.add(seed(), 0);
        for i in 1..=60 {
            sim.add(peer(i, u64::from(i)), u64::from(i % 7));
        }
        sim.run_for(1_500);
        sim.fail(5, Failure::Crash);
        sim.fail(9, Failure::Silent);
        sim.run_for(1_000);
        assert!(sim.restart(5, peer(5, 77)));
        sim.run_for(2_000);
        let log = sim.events().iter();
        let log = log.map(|l| format!("{} {} {:?}", l.at, l.node, l.event));
        (log.collect(), sim.stats(), sim.split_batches)
    }

    #[test]
    fn backing_reserved_room_on_several_threads_leaves_the_vector_as_it_was() {
        for threads in [1, 2, 3, 8] {
            for room in [0, 1, 5, 1_000, 4_099] {
                let mut v: Vec<[u64; 5]> = vec![[7; 5]; 3];
                v.reserve_exact(room);
                fault_in(v.spare_capacity_mut(), threads);
                assert_eq!(v, vec![[7; 5]; 3], "{threads} threads, room {room}");
                v.extend((0..room as u64).map(|i| [i; 5]));
                assert_eq!(v.len(), 3 + room);
                let pushed = v.get(3..).unwrap_or_default();
                assert!(pushed.iter().zip(0..).all(|(e, i)| *e == [i; 5]));
            }
        }
        let mut empty: Vec<()> = Vec::with_capacity(10);
        fault_in(empty.spare_capacity_mut(), 2);
        assert!(empty.is_empty());
    }

    #[test]
    fn a_run_is_the_same_on_any_number_of_threads() {
        let (log, stats, split) = threaded_run(1);
        assert_eq!(split, 0);
        assert!(stats.frames_lost > 0 && log.len() > 10_000, "{stats:?}");
        for threads in [2, 3, 8] {
            let (other_log, other_stats, split) = threaded_run(threads);
            assert!(split > 1_000, "{threads} threads: {split} batches split");
            assert_eq!(other_stats, stats, "{threads} threads");
            let first_difference = log.iter().zip(&other_log).position(|(a, b)| a != b);
            assert_eq!(first_difference, None, "{threads} threads");
            assert_eq!(other_log.len(), log.len(), "{threads} threads");
        }
    }

    #[test]
    fn only_a_failed_node_restarts_and_only_on_its_own_address() {
        let mut sim = Sim::new(NetModel::default(), 1);
        sim.add(seed(), 0);
        sim.add(peer(1, 1), 0);
        assert!(!sim.restart(1, peer(1, 2)), "running");
        sim.fail(1, Failure::Crash);
        assert!(!sim.restart(1, peer(2, 2)), "another address");
        assert!(!sim.restart(7, peer(1, 2)), "no such node");
        assert!(sim.restart(1, peer(1, 2)) && sim.is_up(1));
    }

    /// The seed's connection count once a dial from a peer that crashed (or restarted)
    /// after dialling has run its course, with the seed's acceptance counted.
    fn seed_conns_after_dialler_fails(restart: bool) -> (usize, u64) {
        let model = NetModel {
            latency_min: 5,
            latency_max: 5,
            loss: 0.0,
        };
        let mut sim = Sim::new(model, 1);
        sim.add(seed(), 0);
        sim.add(peer(1, 1), 0);
        // The peer starts and dials the seed; the dial arrives 5 ms later.
        sim.run_for(1);
        sim.fail(1, Failure::Crash);
        if restart {
            // After the seed accepted, before the peer heard it.
            sim.run_for(6);
            assert!(sim.restart(1, peer(1, 2)));
        }
        sim.run_for(100);
        let Some(Node::Seed(s)) = sim.node(0) else {
            panic!("node 0 is a seed")
        };
        let [conns, ..] = s.footprint();
        (conns, sim.stats().connections_opened)
    }

    #[test]
    fn an_accepted_dial_whose_dialler_is_gone_is_closed_at_the_acceptor() {
        // Crashed: the seed accepts, and hears the end close.
        let (conns, opened) = seed_conns_after_dialler_fails(false);
        assert_eq!((conns, opened), (0, 1));
        // Restarted: the old dial is reset; the new process registers afresh.
        let (conns, opened) = seed_conns_after_dialler_fails(true);
        assert_eq!((conns, opened), (1, 2));
    }
}
