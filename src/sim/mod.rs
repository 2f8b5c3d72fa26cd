//! The simulator: drives the same seed and peer cores over a virtual network with a
//! virtual clock.
//!
//! Deterministic: one seeded RNG draws every latency and loss, events at the same instant
//! run in the order they were scheduled, and no wall clock is read. A minute of protocol
//! runs in milliseconds, and the same seed replays the same run exactly.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::proto::{Action, ConnId, Disconnect, Event, Message, Millis, Node, Timer};

/// `gossipd sim` flags (being written).
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    #[command(flatten)]
    pub stress: crate::stress::StressArgs,
}

/// Runs `gossipd sim` (being written).
pub fn run(_args: &SimArgs) -> anyhow::Result<bool> {
    anyhow::bail!("gossipd sim is not written yet")
}

/// The virtual network's behaviour.
#[derive(Debug, Clone)]
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

#[derive(Debug)]
enum Input {
    Timer(Timer),
    Accept { from: usize, from_conn: ConnId },
    Connected(ConnId),
    Closed(ConnId, Disconnect),
    Deliver(ConnId, Arc<Message>),
    Start,
}

#[derive(Debug)]
struct Scheduled {
    node: usize,
    input: Input,
}

/// One direction of a connection: where frames sent on (node, conn) arrive.
#[derive(Debug, Clone, Copy)]
struct Route {
    node: usize,
    conn: ConnId,
    /// Frames on a connection arrive in order: never before the previous one.
    last_arrival: Millis,
}

#[derive(Debug)]
struct SimNode {
    core: Node,
    up: bool,
}

/// The simulator.
pub struct Sim<O: Observer = Recorder> {
    now: Millis,
    rng: SmallRng,
    model: NetModel,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    routes: HashMap<(usize, ConnId), Route>,
    queue: BinaryHeap<Reverse<(Millis, u64)>>,
    pending: HashMap<u64, Scheduled>,
    next_seq: u64,
    /// Frames delivered and lost so far.
    pub frames_delivered: u64,
    pub frames_lost: u64,
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
            rng: SmallRng::seed_from_u64(rng_seed),
            model,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            routes: HashMap::new(),
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            next_seq: 0,
            frames_delivered: 0,
            frames_lost: 0,
            observer,
        }
    }

    pub fn now(&self) -> Millis {
        self.now
    }

    /// Adds a node; it starts at `now + delay`. Returns its index.
    pub fn add(&mut self, core: Node, delay: Millis) -> usize {
        let idx = self.nodes.len();
        self.by_addr.insert(core.addr(), idx);
        self.nodes.push(SimNode { core, up: true });
        self.schedule(self.now + delay, idx, Input::Start);
        idx
    }

    pub fn node(&self, idx: usize) -> Option<&Node> {
        self.nodes.get(idx).map(|n| &n.core)
    }

    pub fn is_up(&self, idx: usize) -> bool {
        self.nodes.get(idx).is_some_and(|n| n.up)
    }

    /// Stops a node now.
    pub fn fail(&mut self, idx: usize, how: Failure) {
        let Some(n) = self.nodes.get_mut(idx) else {
            return;
        };
        n.up = false;
        if how == Failure::Silent {
            return;
        }
        let ends: Vec<ConnId> = self
            .routes
            .keys()
            .filter(|(node, _)| *node == idx)
            .map(|(_, c)| *c)
            .collect();
        for conn in ends {
            self.close_route(idx, conn);
        }
    }

    /// Runs every event due up to and including `until`.
    pub fn run_until(&mut self, until: Millis) {
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            if let Some(s) = self.pending.remove(&seq) {
                self.step(s.node, s.input);
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, duration: Millis) {
        self.run_until(self.now + duration);
    }

    fn schedule(&mut self, at: Millis, node: usize, input: Input) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(seq, Scheduled { node, input });
        self.queue.push(Reverse((at, seq)));
    }

    fn latency(&mut self) -> Millis {
        let (lo, hi) = (
            self.model.latency_min,
            self.model.latency_max.max(self.model.latency_min),
        );
        self.rng.random_range(lo..=hi)
    }

    fn step(&mut self, idx: usize, input: Input) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(idx) else {
            return;
        };
        if !n.up {
            return;
        }
        match input {
            Input::Start => n.core.start(now),
            Input::Timer(t) => n.core.timer(t, now),
            Input::Connected(conn) => n.core.connected(conn, now),
            Input::Closed(conn, why) => {
                self.routes.remove(&(idx, conn));
                n.core.closed(conn, why, now)
            }
            Input::Deliver(conn, msg) => {
                self.frames_delivered += 1;
                n.core.deliver(conn, &msg, now)
            }
            Input::Accept { from, from_conn } => {
                let remote = self.nodes.get(from).map(|f| f.core.addr());
                let (Some(n), Some(remote)) = (self.nodes.get_mut(idx), remote) else {
                    return;
                };
                let conn = n.core.accept(remote, now);
                self.join(idx, conn, from, from_conn);
            }
        }
        self.drain(idx);
    }

    /// Links both ends of a new connection and tells the dialler it is connected.
    fn join(&mut self, idx: usize, conn: ConnId, from: usize, from_conn: ConnId) {
        let now = self.now;
        let back = Route {
            node: from,
            conn: from_conn,
            last_arrival: now,
        };
        self.routes.insert((idx, conn), back);
        let forth = Route {
            node: idx,
            conn,
            last_arrival: now,
        };
        self.routes.insert((from, from_conn), forth);
        let lat = self.latency();
        self.schedule(now + lat, from, Input::Connected(from_conn));
    }

    fn drain(&mut self, idx: usize) {
        loop {
            let Some(action) = self.nodes.get_mut(idx).and_then(|n| n.core.poll_action()) else {
                return;
            };
            self.act(idx, action);
        }
    }

    fn act(&mut self, idx: usize, action: Action) {
        let now = self.now;
        match action {
            Action::Connect { conn, addr } => self.dial(idx, conn, addr),
            Action::Send { conn, msg } => self.send(idx, conn, msg),
            Action::Close { conn } => self.close_route(idx, conn),
            Action::SetTimer { at, timer } => self.schedule(at.max(now), idx, Input::Timer(timer)),
            Action::Log(event) => {
                if let Some(n) = self.nodes.get(idx) {
                    self.observer.event(now, n.core.addr(), &event);
                }
            }
        }
    }

    fn dial(&mut self, idx: usize, conn: ConnId, addr: SocketAddr) {
        let lat = self.latency();
        let at = self.now + lat;
        match self.by_addr.get(&addr).copied() {
            Some(to) if self.is_up(to) => {
                let input = Input::Accept {
                    from: idx,
                    from_conn: conn,
                };
                self.schedule(at, to, input);
            }
            _ => {
                let why = Disconnect::ConnectFailed("connection refused".into());
                self.schedule(at, idx, Input::Closed(conn, why));
            }
        }
    }

    fn send(&mut self, idx: usize, conn: ConnId, msg: Arc<Message>) {
        if self.model.loss > 0.0 && self.rng.random_bool(self.model.loss.min(1.0)) {
            self.frames_lost += 1;
            return;
        }
        let lat = self.latency();
        let Some(route) = self.routes.get_mut(&(idx, conn)) else {
            return;
        };
        let at = (self.now + lat).max(route.last_arrival);
        route.last_arrival = at;
        let (to, to_conn) = (route.node, route.conn);
        self.schedule(at, to, Input::Deliver(to_conn, msg));
    }

    /// Closes this end; the other end hears of it after a latency (a FIN).
    fn close_route(&mut self, idx: usize, conn: ConnId) {
        let Some(route) = self.routes.remove(&(idx, conn)) else {
            return;
        };
        let lat = self.latency();
        let at = (self.now + lat).max(route.last_arrival);
        self.schedule(
            at,
            route.node,
            Input::Closed(route.conn, Disconnect::Closed),
        );
    }
}
