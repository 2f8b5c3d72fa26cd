//! The pure protocol core: seed and peer state machines, their messages and events.
//!
//! Nothing here opens a socket, reads a clock or touches a global RNG. Each entry point
//! takes `now` (milliseconds since the Unix epoch, supplied by the caller) and queues
//! [`Action`]s that the shell (`net`) or the simulator (`sim`) carries out: connect,
//! send, close, set a timer, log an event.

pub mod event;
pub mod message;
pub mod peek;
pub mod peer;
pub mod seed;
mod seed_list;
pub mod seen;
pub mod table;

#[cfg(test)]
mod fuzz_tests;

use std::net::SocketAddr;
use std::sync::Arc;

pub use event::{Event, Severity};
pub use message::{Gossip, Message};
pub use peek::{peek_gossip, GossipId};
pub use peer::{PeerConfig, PeerCore};
pub use seed::{SeedConfig, SeedCore};

/// Milliseconds since the Unix epoch (real or virtual).
pub type Millis = u64;

/// A connection as a core names it. Allocated by the core, never reused by it, so a
/// late input about a closed connection cannot be mistaken for a newer one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The deadlines a core asks to be woken for. A core may be woken early or more than
/// once for the same deadline: it checks its own state and ignores a stale wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Peer: create the next gossip message.
    Gossip,
    /// Send liveness requests and count misses.
    Liveness,
    /// Peer: retry seeds that did not answer.
    SeedRetry,
    /// Close connections that stayed silent past the idle timeout.
    IdleSweep,
    /// Seed: the check of a dead-node report is due.
    Verify,
    /// Judge the liveness requests due: a peer's, half an interval after they went out;
    /// a remote a check excused while the loop was behind, again a quarter interval on.
    Recheck,
}

/// What a core asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a TCP connection to `addr`; report `connected` or `closed` for `conn`.
    Connect { conn: ConnId, addr: SocketAddr },
    /// Queue one frame on `conn`. The same `Arc` may be sent on several connections.
    Send { conn: ConnId, msg: Arc<Message> },
    /// Close `conn` (after flushing what is queued). No `closed` input follows.
    Close { conn: ConnId },
    /// Call `timer` at or after `at`.
    SetTimer { at: Millis, timer: Timer },
    /// Log this event.
    Log(Event),
}

/// Why a connection ended, as the driver reports it to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// An outgoing connect did not succeed.
    ConnectFailed(String),
    /// The remote closed the connection at a frame boundary.
    Closed,
    /// A socket error, or the remote closed in the middle of a frame.
    Error(String),
    /// The remote sent a frame that cannot be decoded or parsed.
    BadFrame(String),
}

impl std::fmt::Display for Disconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Disconnect::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            Disconnect::Closed => write!(f, "connection closed by remote"),
            Disconnect::Error(e) => write!(f, "connection error: {e}"),
            Disconnect::BadFrame(e) => write!(f, "bad frame: {e}"),
        }
    }
}

/// A node's role, for log file names and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Seed,
    Peer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Seed => "seed",
            Role::Peer => "peer",
        }
    }
}

/// A seed or a peer: one node, as the driver and the simulator host it.
// Nearly every hosted node is a peer, so boxing the larger variant would add an
// indirection per node without saving memory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Node {
    Seed(SeedCore),
    Peer(PeerCore),
}

macro_rules! dispatch {
    ($self:ident, $core:ident => $e:expr) => {
        match $self {
            Node::Seed($core) => $e,
            Node::Peer($core) => $e,
        }
    };
}

impl Node {
    pub fn role(&self) -> Role {
        match self {
            Node::Seed(_) => Role::Seed,
            Node::Peer(_) => Role::Peer,
        }
    }
    pub fn addr(&self) -> SocketAddr {
        dispatch!(self, c => c.addr())
    }
    /// Arms the first timers (and, for a peer, contacts its seeds).
    pub fn start(&mut self, now: Millis) {
        dispatch!(self, c => c.start(now))
    }
    /// A connection from `remote` was accepted; returns the id the core gives it.
    pub fn accept(&mut self, remote: SocketAddr, now: Millis) -> ConnId {
        dispatch!(self, c => c.accept(remote, now))
    }
    /// An outgoing connection asked for with [`Action::Connect`] is established.
    pub fn connected(&mut self, conn: ConnId, now: Millis) {
        dispatch!(self, c => c.connected(conn, now))
    }
    /// A connection ended without the core asking for it.
    pub fn closed(&mut self, conn: ConnId, why: Disconnect, now: Millis) {
        dispatch!(self, c => c.closed(conn, why, now))
    }
    /// Bytes from the remote of `conn` wait unread (the loop is behind): the remote is
    /// alive, as if a frame had come at `at`, when they arrived.
    pub fn input_waiting(&mut self, conn: ConnId, at: Millis) {
        dispatch!(self, c => c.input_waiting(conn, at))
    }
    /// The frames just handed in on `conn` arrived by `at`, before the `now` they were
    /// handed in with (the loop read them late): the remote was last heard at `at`.
    pub fn arrived(&mut self, conn: ConnId, at: Millis) {
        dispatch!(self, c => c.arrived(conn, at))
    }
    /// The loop is behind on its input (its oldest unread input has waited a second or
    /// more): an answer may be waiting unread here, or at a remote as loaded. The timer
    /// fired next (a liveness check, a report's verification, an idle sweep) excuses a
    /// remote heard from within [`EXCUSED_SILENCE`] liveness intervals, counting neither
    /// a miss nor an answer, and closes nothing for being idle.
    pub fn loop_behind(&mut self) {
        dispatch!(self, c => c.loop_behind())
    }
    /// A frame arrived on `conn`.
    pub fn message(&mut self, conn: ConnId, msg: Message, now: Millis) {
        dispatch!(self, c => c.message(conn, msg, now))
    }
    /// A frame shared with other receivers arrived on `conn`: a duplicate gossip is
    /// dropped without a copy; anything else is handled as [`Node::message`].
    pub fn deliver(&mut self, conn: ConnId, msg: &Arc<Message>, now: Millis) {
        if let (Node::Peer(p), Message::Gossip(g)) = (&mut *self, msg.as_ref()) {
            if p.absorb_duplicate(conn, g, now) {
                return;
            }
        }
        self.message(conn, Message::clone(msg), now)
    }
    /// Cache hints for an input coming to this node soon (see [`crate::hint`]): the
    /// tables that handling a frame reads first. They change nothing the node does.
    pub fn prefetch_tables(&self) {
        if let Node::Peer(p) = self {
            p.prefetch_tables();
        }
    }
    /// Cache hints for a frame coming on `conn` (gossip from `origin`, if known), once
    /// the tables are in cache: the connection's entry and the origin's seen window.
    pub fn prefetch_entries(&self, conn: ConnId, origin: Option<&SocketAddr>) {
        if let Node::Peer(p) = self {
            p.prefetch_entries(conn, origin);
        }
    }
    /// A gossip frame known only by its identity (see [`peek_gossip`]): true when the
    /// node dropped it as a duplicate, false when the whole frame must be parsed and
    /// handed in as usual.
    pub fn absorb_duplicate_id(&mut self, conn: ConnId, id: &GossipId, now: Millis) -> bool {
        match self {
            Node::Peer(p) => p.absorb_duplicate_id(conn, id, now),
            Node::Seed(_) => false,
        }
    }
    /// As [`Node::deliver`], taking the frame: one that no other receiver shares (a peer
    /// list, a liveness request) is handled without a copy.
    pub fn deliver_owned(&mut self, conn: ConnId, msg: Arc<Message>, now: Millis) {
        if let (Node::Peer(p), Message::Gossip(g)) = (&mut *self, msg.as_ref()) {
            if p.absorb_duplicate(conn, g, now) {
                return;
            }
        }
        let msg = Arc::try_unwrap(msg).unwrap_or_else(|shared| Message::clone(&shared));
        self.message(conn, msg, now)
    }
    /// A timer set with [`Action::SetTimer`] is due.
    pub fn timer(&mut self, timer: Timer, now: Millis) {
        dispatch!(self, c => c.timer(timer, now))
    }
    /// The next action to carry out, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        dispatch!(self, c => c.poll_action())
    }
}

/// The queue of actions a core has decided on, and its connection-id counter.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    actions: std::collections::VecDeque<Action>,
    next_conn: u64,
}

/// The room an outbox takes when its first action comes: a relayed message is a send to
/// each neighbour and a few log lines, which growing from nothing would copy three times.
const OUTBOX_ROOM: usize = 16;

impl Outbox {
    fn push(&mut self, action: Action) {
        if self.actions.capacity() == 0 {
            self.actions.reserve_exact(OUTBOX_ROOM);
        }
        self.actions.push_back(action);
    }
    pub(crate) fn new_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }
    pub(crate) fn connect(&mut self, addr: SocketAddr) -> ConnId {
        let conn = self.new_conn();
        self.push(Action::Connect { conn, addr });
        conn
    }
    pub(crate) fn send(&mut self, conn: ConnId, msg: Arc<Message>) {
        self.push(Action::Send { conn, msg });
    }
    pub(crate) fn send_msg(&mut self, conn: ConnId, msg: Message) {
        self.send(conn, Arc::new(msg));
    }
    pub(crate) fn close(&mut self, conn: ConnId) {
        self.push(Action::Close { conn });
    }
    pub(crate) fn timer(&mut self, at: Millis, timer: Timer) {
        self.push(Action::SetTimer { at, timer });
    }
    pub(crate) fn log(&mut self, event: Event) {
        self.push(Action::Log(event));
    }
    pub(crate) fn pop(&mut self) -> Option<Action> {
        let action = self.actions.pop_front();
        if action.is_none() && self.actions.capacity() > 0 {
            // Drained: give the memory back, or a host of a million cores keeps each
            // one's busiest moment (a broadcast's worth of 112-byte actions).
            self.actions = std::collections::VecDeque::new();
        }
        action
    }
}

/// A connection's bookkeeping common to both roles.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub(crate) remote: SocketAddr,
    pub(crate) last_heard: Millis,
}

impl Link {
    pub(crate) fn new(remote: SocketAddr, now: Millis) -> Self {
        Link {
            remote,
            last_heard: now,
        }
    }
    pub(crate) fn is_idle(&self, now: Millis, idle_timeout: Millis) -> bool {
        now.saturating_sub(self.last_heard) >= idle_timeout
    }
}

/// While the loop is behind, a remote silent for this many liveness intervals or more is
/// judged all the same: a frozen node sends nothing at all, while a live one, however far
/// behind its own loop, keeps forwarding gossip or takes what we write. So a failure is
/// still found, about this many intervals later than on an idle host, and not never.
/// Silence counts from when the remote's last input arrived, not from when this loop got
/// round to reading it: a frozen peer's last frames, read late, are no answer.
pub const EXCUSED_SILENCE: u64 = 2;

/// Whether a check made while the loop is behind excuses a remote last heard at `heard`.
pub(crate) fn excused(heard: Millis, now: Millis, liveness_interval: Millis) -> bool {
    now.saturating_sub(heard) < EXCUSED_SILENCE.saturating_mul(liveness_interval)
}

/// How long a peer's liveness request has to be answered before it counts as a miss: half
/// an interval, so a neighbour frozen just after an answer is reported within
/// (misses + 1/2) intervals rather than at the bound of (misses + 1).
pub(crate) fn judged_after(liveness_interval: Millis) -> Millis {
    (liveness_interval / 2).max(1)
}

/// How long after a check that excused a remote it is judged again: an excuse lasts as
/// long as the loop stays behind, in steps of a quarter interval, never a whole interval.
pub(crate) fn recheck_after(liveness_interval: Millis) -> Millis {
    (liveness_interval / 4).max(1)
}

/// How often to sweep for idle connections: twice per timeout, never more than once a ms.
pub(crate) fn sweep_period(idle_timeout: Millis) -> Millis {
    (idle_timeout / 2).max(1)
}

/// The connections silent for `idle_timeout` or longer, in id order.
pub(crate) fn idle_conns<'a>(
    links: impl Iterator<Item = (&'a ConnId, &'a Link)>,
    now: Millis,
    idle_timeout: Millis,
) -> Vec<ConnId> {
    links
        .filter(|(_, l)| l.is_idle(now, idle_timeout))
        .map(|(id, _)| *id)
        .collect()
}
