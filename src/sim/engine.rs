//! The simulator's inner loop: hands each due input to its node's core and carries out the
//! actions the core queues in answer (connect, send, close, set a timer, log).
//!
//! This is the hot path of a large run (tens of millions of gossip frames), so it avoids
//! work per frame: a frame shared by a broadcast is one `Arc` on every connection and is
//! sized once, a duplicate is absorbed by the core without a copy, and the queue entry
//! carries the input itself.

use rand::rngs::SmallRng;
use rand::Rng;
use std::sync::Arc;

use super::routes::Route;
use super::{NetModel, Observer, Sim};
use crate::proto::{Action, ConnId, Disconnect, Message, Millis, Node, Timer};

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
    Connected(ConnId),
    Closed(ConnId, Why),
    Deliver(ConnId, Arc<Message>),
}

/// One queue entry: the input and the node it is for.
#[derive(Debug)]
pub(crate) struct Scheduled {
    pub(crate) node: u32,
    pub(crate) input: Input,
}

impl<O: Observer> Sim<O> {
    pub(super) fn step(&mut self, s: Scheduled) {
        let now = self.now;
        let node = s.node;
        self.stats.inputs += 1;
        if let Input::Accept { from, from_conn } = s.input {
            self.accept(node, from, from_conn);
            return;
        }
        if !self.up.get(node as usize).copied().unwrap_or(false) {
            return;
        }
        let Some(n) = self.nodes.get_mut(node as usize) else {
            return;
        };
        match s.input {
            Input::Start => n.start(now),
            Input::Timer(t) => n.timer(t, now),
            Input::Connected(conn) => n.connected(conn, now),
            Input::Closed(conn, why) => {
                self.routes.remove(node, conn);
                n.closed(conn, why.disconnect(), now);
            }
            Input::Deliver(conn, msg) => {
                self.stats.frames_delivered += 1;
                n.deliver_owned(conn, msg, now);
            }
            Input::Accept { .. } => {}
        }
        self.drain(node);
    }

    /// A dial arrives: a running node accepts it (unless the dialler gave up meanwhile),
    /// and both ends are linked; otherwise the dialler is refused.
    fn accept(&mut self, node: u32, from: u32, from_conn: ConnId) {
        if !self.routes.contains(from, from_conn) {
            return;
        }
        let now = self.now;
        let lat = self.latency();
        let remote = self.nodes.get(from as usize).map(Node::addr);
        let up = self.up.get(node as usize).copied().unwrap_or(false);
        let target = self.nodes.get_mut(node as usize).filter(|_| up);
        let (Some(n), Some(remote)) = (target, remote) else {
            self.stats.connects_refused += 1;
            self.schedule(now + lat, from, Input::Closed(from_conn, Why::Refused));
            return;
        };
        let conn = n.accept(remote, now);
        self.stats.connections_opened += 1;
        // The acceptor's first frames must not overtake the dialler's `connected`.
        let back = Route {
            conn,
            peer: from,
            peer_conn: from_conn,
            last_arrival: now + lat,
            open: true,
        };
        self.routes.insert(node, back);
        let forth = Route {
            conn: from_conn,
            peer: node,
            peer_conn: conn,
            last_arrival: now,
            open: true,
        };
        self.routes.insert(from, forth);
        self.schedule(now + lat, from, Input::Connected(from_conn));
        self.drain(node);
    }

    fn drain(&mut self, node: u32) {
        loop {
            let Some(n) = self.nodes.get_mut(node as usize) else {
                return;
            };
            let Some(action) = n.poll_action() else {
                return;
            };
            self.act(node, action);
        }
    }

    fn act(&mut self, node: u32, action: Action) {
        let now = self.now;
        match action {
            Action::Connect { conn, addr } => self.dial(node, conn, addr),
            Action::Send { conn, msg } => self.send(node, conn, msg),
            Action::Close { conn } => self.close(node, conn),
            Action::SetTimer { at, timer } => self.schedule(at.max(now), node, Input::Timer(timer)),
            Action::Log(event) => {
                if let Some(n) = self.nodes.get(node as usize) {
                    self.observer.event(now, n.addr(), &event);
                }
            }
        }
    }

    fn dial(&mut self, node: u32, conn: ConnId, addr: std::net::SocketAddr) {
        let at = self.now + self.latency();
        match self.by_addr.get(&addr).copied() {
            Some(to) if !self.cuts.separates(node, to) => {
                self.routes.insert(node, Route::dialing(conn, to));
                let input = Input::Accept {
                    from: node,
                    from_conn: conn,
                };
                self.schedule(at, to, input);
            }
            _ => {
                self.stats.connects_refused += 1;
                self.schedule(at, node, Input::Closed(conn, Why::Refused));
            }
        }
    }

    fn send(&mut self, node: u32, conn: ConnId, msg: Arc<Message>) {
        let Some(route) = self.routes.get_mut(node, conn).filter(|r| r.open) else {
            return;
        };
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += self.sizer.frame_len(&msg);
        if self.cuts.separates(node, route.peer) {
            self.stats.frames_cut += 1;
            return;
        }
        if self.lossy.contains(&msg) && lost(&mut self.rng, &self.model) {
            self.stats.frames_lost += 1;
            return;
        }
        let at = (self.now + latency(&mut self.rng, &self.model)).max(route.last_arrival);
        route.last_arrival = at;
        let input = Input::Deliver(route.peer_conn, msg);
        let node = route.peer;
        self.queue.push(at, Scheduled { node, input });
    }

    /// The core closed `conn`: the remote hears of it after a latency (a FIN). A dial not
    /// accepted yet is simply forgotten, and its acceptance will find nobody waiting.
    fn close(&mut self, node: u32, conn: ConnId) {
        if let Some(route) = self.routes.remove(node, conn).filter(|r| r.open) {
            self.send_fin(node, route);
        }
    }

    /// Tells the other end of `route` that `node` closed it: after the frames already on
    /// their way, and not before a partition between them heals.
    pub(super) fn send_fin(&mut self, node: u32, route: Route) {
        let mut at = (self.now + self.latency()).max(route.last_arrival);
        if self.cuts.separates(node, route.peer) {
            at = at.max(self.cuts.heals_between(node, route.peer) + self.latency());
        }
        let input = Input::Closed(route.peer_conn, Why::Closed);
        self.schedule(at, route.peer, input);
    }

    fn latency(&mut self) -> Millis {
        latency(&mut self.rng, &self.model)
    }
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
