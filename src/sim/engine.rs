//! The simulator's inner loop: hands each due input to its node's core and carries out the
//! actions the core queues in answer (connect, send, close, set a timer, log).
//!
//! The work of one virtual millisecond is split by node into shards that may run on
//! separate threads. A shard changes only its own nodes, their connection tables and
//! their network RNGs; what reaches other nodes (frames, dials, closes, timers) and what
//! nodes log it hands back in order, and the simulator queues it shard by shard. A dial
//! too is two steps, one per end: the acceptor links its end and answers `connected`,
//! which links the dialler's (or, if the dialler gave up meanwhile, closes the
//! acceptor's). Every input due in a millisecond is scheduled at least a millisecond
//! after it was sent, or in a later batch of the same one, so no shard can see another's
//! output early: the run is the same whatever the number of shards.
//!
//! This is the hot path of a large run (tens of millions of gossip frames), so it avoids
//! work per frame: a frame shared by a broadcast is sized once and is one `Arc` on every
//! connection, or for standard gossip its numbers alone (`compact.rs`); a duplicate is
//! absorbed by the core without a copy, and the queue entry carries the input itself.

use super::ByAddr;
use rand::rngs::SmallRng;
use rand::Rng;
use std::net::SocketAddr;
use std::sync::Arc;

use super::compact::{Compact, Compactor};
use super::frames::{FrameKinds, FrameSizer};
use super::routes::{Cuts, Route, RouteSlice};
use super::{NetModel, NetStats};
use crate::proto::{Action, ConnId, Disconnect, Event, Message, Millis, Node, Timer};

/// Why the simulator ends a connection, turned into a [`Disconnect`] only when it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    Refused,
    Closed,
}

impl Why {
    fn disconnect(self) -> Disconnect {
        match self {
            Why::Refused => Disconnect::ConnectFailed("connection refused".into()),
            Why::Closed => Disconnect::Closed,
        }
    }
}

/// What a queued entry hands to its node.
#[derive(Debug)]
pub(crate) enum Input {
    Start,
    Timer(Timer),
    /// A dial from `from`'s connection `from_conn` reaches this node.
    Accept {
        from: u32,
        from_conn: ConnId,
    },
    /// This node's dial on `conn` was accepted by `peer`, whose end is `peer_conn`.
    Connected {
        conn: ConnId,
        peer: u32,
        peer_conn: ConnId,
    },
    Closed(ConnId, Why),
    Deliver(ConnId, Arc<Message>),
    /// A standard gossip frame, by its numbers.
    Gossip(Compact),
}

/// How far ahead in a batch the simulator hints at the nodes' tables, and then at the
/// entries in them (see [`crate::hint`]): a few inputs' work covers a memory read.
const FAR: usize = 8;
const NEAR: usize = 4;

/// One queue entry: the input and the node it is for.
#[derive(Debug)]
pub(crate) struct Scheduled {
    pub(crate) node: u32,
    /// The entry's place in its batch, set just before the batch is ordered (it sits in
    /// what would be padding: the entry stays 32 bytes).
    pub(crate) seq: u32,
    pub(crate) input: Input,
}

impl Scheduled {
    pub(crate) fn new(node: u32, input: Input) -> Self {
        Scheduled {
            node,
            seq: 0,
            input,
        }
    }

    /// A `connected` for `node`: the acceptor to tell if the dialler is gone.
    pub(crate) fn accepted_by(&self, node: u32) -> Option<(u32, ConnId)> {
        match self.input {
            Input::Connected {
                peer, peer_conn, ..
            } if self.node == node => Some((peer, peer_conn)),
            _ => None,
        }
    }
}

/// What every shard reads and none changes while a millisecond runs.
pub(crate) struct Net<'a> {
    pub(crate) now: Millis,
    pub(crate) model: &'a NetModel,
    pub(crate) lossy: FrameKinds,
    pub(crate) up: &'a [bool],
    /// Every node's address, by index.
    pub(crate) addrs: &'a [SocketAddr],
    pub(crate) by_addr: &'a ByAddr,
    pub(crate) cuts: &'a Cuts,
}

/// What a shard hands back, in the order it happened.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) scheduled: Vec<(Millis, Scheduled)>,
    pub(crate) logged: Vec<(SocketAddr, Event)>,
    pub(crate) stats: NetStats,
}

/// The nodes `base`, `base + 1`, ... with their connection tables and network RNGs.
pub(crate) struct Shard<'a> {
    pub(crate) base: u32,
    pub(crate) nodes: &'a mut [Node],
    pub(crate) routes: RouteSlice<'a>,
    pub(crate) rngs: &'a mut [SmallRng],
}

impl<'a> Shard<'a> {
    /// Splits before node `at` (the shard itself back when `at` is not inside it).
    pub(crate) fn split_at(self, at: u32) -> Result<(Shard<'a>, Shard<'a>), Shard<'a>> {
        let Shard {
            base,
            nodes,
            routes,
            rngs,
        } = self;
        let mid = at.checked_sub(base).map_or(0, |m| m as usize);
        if mid == 0 || mid >= nodes.len() || mid >= rngs.len() {
            return Err(Shard {
                base,
                nodes,
                routes,
                rngs,
            });
        }
        let (low_routes, high_routes) = match routes.split_at(at) {
            Ok(halves) => halves,
            Err(routes) => {
                return Err(Shard {
                    base,
                    nodes,
                    routes,
                    rngs,
                })
            }
        };
        let (low_nodes, high_nodes) = nodes.split_at_mut(mid);
        let (low_rngs, high_rngs) = rngs.split_at_mut(mid);
        Ok((
            Shard {
                base,
                nodes: low_nodes,
                routes: low_routes,
                rngs: low_rngs,
            },
            Shard {
                base: at,
                nodes: high_nodes,
                routes: high_routes,
                rngs: high_rngs,
            },
        ))
    }
}

/// A shard at work on one millisecond's inputs, collecting what it hands back.
pub(crate) struct Worker<'s, 'n> {
    shard: Shard<'s>,
    net: &'n Net<'n>,
    sizer: FrameSizer,
    compactor: Compactor,
    out: Output,
}

impl<'s, 'n> Worker<'s, 'n> {
    /// `out` lends its buffers' memory; it should be empty.
    pub(crate) fn new(shard: Shard<'s>, net: &'n Net<'n>, out: Output) -> Self {
        Worker {
            shard,
            net,
            sizer: FrameSizer::default(),
            compactor: Compactor::default(),
            out,
        }
    }

    /// Runs `batch` (entries for this shard's nodes, in order) and hands back the output.
    /// The entries are left holding a spent placeholder input.
    pub(crate) fn run(mut self, batch: &mut [Scheduled]) -> Output {
        for i in 0..batch.len() {
            if let Some(ahead) = batch.get(i + FAR) {
                self.prefetch_tables(ahead.node);
            }
            if let Some(ahead) = batch.get(i + NEAR) {
                self.prefetch_entries(ahead);
            }
            let Some(s) = batch.get_mut(i) else {
                break;
            };
            let input = std::mem::replace(&mut s.input, Input::Start);
            self.step(s.node, input);
        }
        self.out
    }

    /// Cache hints for an input `FAR` places ahead: its node's tables.
    fn prefetch_tables(&self, node: u32) {
        if let Some(n) = self.node(node) {
            n.prefetch_tables();
        }
        self.shard.routes.prefetch_table(node);
    }

    /// Cache hints for an input `NEAR` places ahead, whose node's tables were hinted
    /// before: the entries it will read in them.
    fn prefetch_entries(&self, s: &Scheduled) {
        let (conn, origin) = match &s.input {
            Input::Gossip(g) => (g.conn(), self.net.addrs.get(g.origin())),
            Input::Deliver(conn, _) | Input::Closed(conn, _) => (*conn, None),
            Input::Connected { conn, .. } => (*conn, None),
            Input::Start | Input::Timer(_) | Input::Accept { .. } => return,
        };
        if let Some(n) = self.node(s.node) {
            n.prefetch_entries(conn, origin);
        }
        self.shard.routes.prefetch_routes(s.node);
    }

    pub(crate) fn into_output(self) -> Output {
        self.out
    }

    fn step(&mut self, node: u32, input: Input) {
        let now = self.net.now;
        self.out.stats.inputs += 1;
        match input {
            Input::Accept { from, from_conn } => return self.accept(node, from, from_conn),
            Input::Connected {
                conn,
                peer,
                peer_conn,
            } => return self.connected(node, conn, peer, peer_conn),
            _ => {}
        }
        if !self.is_up(node) {
            return;
        }
        let addrs = self.net.addrs;
        let Some(n) = self.node_mut(node) else {
            return;
        };
        match input {
            Input::Start => n.start(now),
            Input::Timer(t) => n.timer(t, now),
            Input::Closed(conn, why) => {
                n.closed(conn, why.disconnect(), now);
                self.shard.routes.remove(node, conn);
            }
            Input::Deliver(conn, msg) => {
                n.deliver_owned(conn, msg, now);
                self.out.stats.frames_delivered += 1;
            }
            Input::Gossip(g) => {
                deliver_compact(n, g, addrs, now);
                self.out.stats.frames_delivered += 1;
            }
            Input::Accept { .. } | Input::Connected { .. } => {}
        }
        self.drain(node);
    }

    fn is_up(&self, node: u32) -> bool {
        self.net.up.get(node as usize).copied().unwrap_or(false)
    }

    fn node(&self, node: u32) -> Option<&Node> {
        let i = node.checked_sub(self.shard.base)?;
        self.shard.nodes.get(i as usize)
    }

    fn node_mut(&mut self, node: u32) -> Option<&mut Node> {
        local(&mut *self.shard.nodes, self.shard.base, node)
    }

    fn addr(&self, node: u32) -> Option<SocketAddr> {
        let i = node.checked_sub(self.shard.base)?;
        self.shard.nodes.get(i as usize).map(Node::addr)
    }

    /// A dial arrives: a running node accepts it and links its end; otherwise the
    /// dialler is refused.
    fn accept(&mut self, node: u32, from: u32, from_conn: ConnId) {
        let now = self.net.now;
        let lat = self.latency(node);
        let remote = self.net.addrs.get(from as usize).copied();
        let up = self.is_up(node);
        let target = self.node_mut(node).filter(|_| up);
        let (Some(n), Some(remote)) = (target, remote) else {
            self.out.stats.connects_refused += 1;
            self.schedule(now + lat, from, Input::Closed(from_conn, Why::Refused));
            return;
        };
        let conn = n.accept(remote, now);
        self.out.stats.connections_opened += 1;
        // The acceptor's first frames must not overtake the dialler's `connected`.
        let back = Route {
            conn,
            peer: from,
            peer_conn: from_conn,
            last_arrival: now + lat,
            open: true,
        };
        self.shard.routes.insert(node, back);
        let connected = Input::Connected {
            conn: from_conn,
            peer: node,
            peer_conn: conn,
        };
        self.schedule(now + lat, from, connected);
        self.drain(node);
    }

    /// The dial on `conn` was accepted: its end is linked and the core told, unless the
    /// dialler closed it or crashed meanwhile: then the acceptor hears its end close.
    fn connected(&mut self, node: u32, conn: ConnId, peer: u32, peer_conn: ConnId) {
        let now = self.net.now;
        let Some(route) = self.shard.routes.get_mut(node, conn) else {
            let gone = Route {
                conn,
                peer,
                peer_conn,
                last_arrival: now,
                open: true,
            };
            return self.send_fin(node, gone);
        };
        route.peer_conn = peer_conn;
        route.last_arrival = now;
        route.open = true;
        if !self.is_up(node) {
            return;
        }
        if let Some(n) = self.node_mut(node) {
            n.connected(conn, now);
        }
        self.drain(node);
    }

    fn drain(&mut self, node: u32) {
        while let Some(action) = self.node_mut(node).and_then(Node::poll_action) {
            self.act(node, action);
        }
    }

    fn act(&mut self, node: u32, action: Action) {
        let now = self.net.now;
        match action {
            Action::Connect { conn, addr } => self.dial(node, conn, addr),
            Action::Send { conn, msg } => self.send(node, conn, msg),
            Action::Close { conn } => self.close(node, conn),
            Action::SetTimer { at, timer } => self.schedule(at.max(now), node, Input::Timer(timer)),
            Action::Log(event) => {
                if let Some(addr) = self.addr(node) {
                    self.out.logged.push((addr, event));
                }
            }
        }
    }

    fn dial(&mut self, node: u32, conn: ConnId, addr: SocketAddr) {
        let at = self.net.now + self.latency(node);
        match self.net.by_addr.get(&addr).copied() {
            Some(to) if !self.net.cuts.separates(node, to) => {
                self.shard.routes.insert(node, Route::dialing(conn, to));
                let input = Input::Accept {
                    from: node,
                    from_conn: conn,
                };
                self.schedule(at, to, input);
            }
            _ => {
                self.out.stats.connects_refused += 1;
                self.schedule(at, node, Input::Closed(conn, Why::Refused));
            }
        }
    }

    fn send(&mut self, node: u32, conn: ConnId, msg: Arc<Message>) {
        let (net, stats) = (self.net, &mut self.out.stats);
        let Some(route) = self.shard.routes.get_mut(node, conn).filter(|r| r.open) else {
            return;
        };
        let Some(rng) = local(&mut *self.shard.rngs, self.shard.base, node) else {
            return;
        };
        stats.frames_sent += 1;
        stats.bytes_sent += self.sizer.frame_len(&msg);
        if net.cuts.separates(node, route.peer) {
            stats.frames_cut += 1;
            return;
        }
        if net.lossy.contains(&msg) && lost(rng, net.model) {
            stats.frames_lost += 1;
            return;
        }
        let at = (net.now + latency(rng, net.model)).max(route.last_arrival);
        route.last_arrival = at;
        let input = match self.compactor.compact(&msg, route.peer_conn, net.by_addr) {
            Some(g) => Input::Gossip(g),
            None => Input::Deliver(route.peer_conn, msg),
        };
        let node = route.peer;
        self.out.scheduled.push((at, Scheduled::new(node, input)));
    }

    /// The core closed `conn`: the remote hears of it after a latency (a FIN). A dial not
    /// accepted yet is simply forgotten, and its acceptance will find nobody waiting.
    fn close(&mut self, node: u32, conn: ConnId) {
        if let Some(route) = self.shard.routes.remove(node, conn).filter(|r| r.open) {
            self.send_fin(node, route);
        }
    }

    /// `node` crashed: the kernel closes every connection it had.
    pub(crate) fn close_all(&mut self, node: u32) {
        for route in self.shard.routes.take_all(node) {
            if route.open {
                self.send_fin(node, route);
            }
        }
    }

    /// Tells the other end of `route` that `node` closed it: after the frames already on
    /// their way, and not before a partition between them heals.
    fn send_fin(&mut self, node: u32, route: Route) {
        let cuts = self.net.cuts;
        let mut at = (self.net.now + self.latency(node)).max(route.last_arrival);
        if cuts.separates(node, route.peer) {
            at = at.max(cuts.heals_between(node, route.peer) + self.latency(node));
        }
        let input = Input::Closed(route.peer_conn, Why::Closed);
        self.schedule(at, route.peer, input);
    }

    /// A one-way latency drawn from `node`'s RNG.
    fn latency(&mut self, node: u32) -> Millis {
        let model = self.net.model;
        match local(&mut *self.shard.rngs, self.shard.base, node) {
            Some(rng) => latency(rng, model),
            None => model.latency_min,
        }
    }

    fn schedule(&mut self, at: Millis, node: u32, input: Input) {
        self.out.scheduled.push((at, Scheduled::new(node, input)));
    }
}

/// Hands `g` to node `n`: a duplicate is absorbed from its identity alone, anything else
/// gets the whole message, rebuilt.
fn deliver_compact(n: &mut Node, g: Compact, addrs: &[SocketAddr], now: Millis) {
    let Some(&origin) = addrs.get(g.origin()) else {
        return;
    };
    if !n.absorb_duplicate_id(g.conn(), &g.id(origin), now) {
        n.message(g.conn(), g.message(origin), now);
    }
}

/// Node `node`'s entry in a shard's slice that starts at node `base`.
fn local<T>(slice: &mut [T], base: u32, node: u32) -> Option<&mut T> {
    let i = node.checked_sub(base)?;
    slice.get_mut(i as usize)
}

/// One draw of the one-way latency.
fn latency(rng: &mut SmallRng, model: &NetModel) -> Millis {
    let (lo, hi) = (model.latency_min, model.latency_max);
    if hi <= lo {
        return lo;
    }
    rng.random_range(lo..=hi)
}

/// Whether the next frame is lost.
fn lost(rng: &mut SmallRng, model: &NetModel) -> bool {
    // `loss > 0.0` is false for NaN too.
    model.loss > 0.0 && rng.random_bool(model.loss.min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Millions of entries wait in the queue of a large run: each stays 32 bytes.
    #[test]
    fn a_queue_entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Scheduled>(), 32);
        assert_eq!(std::mem::size_of::<(Millis, Scheduled)>(), 40);
    }
}
