//! The mio shell: one `Poll`, one thread, a slab of listeners and connections, one timer
//! wheel. It maps readiness to core inputs and core actions to syscalls, and sleeps until
//! the next deadline. One driver hosts one node or thousands.
//!
//! The only module that owns sockets and reads the clock. Fair by construction: each
//! connection gets a bounded read per turn, and every turn fires the due timers and
//! flushes every connection written to, so one busy socket cannot starve the others'
//! liveness replies.

pub mod accept;
pub mod conn;
mod fail;
mod io;
pub mod listener;
pub mod sendq;
pub mod signals;
mod strain;

use mio::event::Source;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::auth::{ClusterKey, TAG_LEN};
use crate::proto::{ConnId, Event, Message, Millis, Node, Role, Timer};
use crate::wheel::TimerWheel;
use conn::Conn;

pub use fail::NodeState;

/// Where hosted nodes' events go.
pub trait Sink {
    fn event(&mut self, now: Millis, node: usize, addr: SocketAddr, role: Role, event: &Event);
    /// Called once when the driver stops.
    fn flush(&mut self) {}
}

/// The wall clock as milliseconds since the Unix epoch, advancing monotonically.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_ms: Millis,
}

impl Clock {
    pub fn new() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            start: Instant::now(),
            start_ms: since.as_millis() as Millis,
        }
    }
    pub fn now(&self) -> Millis {
        self.start_ms + self.start.elapsed().as_millis() as Millis
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Driver-wide counters (for the swarm report). Mergeable across drivers with
/// [`NetStats::add`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NetStats {
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub write_calls: u64,
    pub frames_received: u64,
    pub read_calls: u64,
    pub connections_opened: u64,
    /// Accepted connections closed at once because their node was at its cap.
    #[serde(default)]
    pub connections_refused: u64,
    /// Loop turns, and those that left some connection's input for the next turn.
    pub turns: u64,
    pub turns_over_budget: u64,
    /// Time spent working (not waiting in poll), the longest turn, and the latest a
    /// timer fired.
    pub busy_ms: u64,
    pub max_turn_ms: u64,
    pub max_timer_lag_ms: u64,
    /// How long the host's TCP memory excused every remote's silence (see `strain`).
    #[serde(default)]
    pub strained_ms: u64,
}

impl NetStats {
    pub fn add(&mut self, o: &NetStats) {
        self.frames_sent += o.frames_sent;
        self.bytes_sent += o.bytes_sent;
        self.write_calls += o.write_calls;
        self.frames_received += o.frames_received;
        self.read_calls += o.read_calls;
        self.connections_opened += o.connections_opened;
        self.connections_refused += o.connections_refused;
        self.turns += o.turns;
        self.turns_over_budget += o.turns_over_budget;
        self.busy_ms += o.busy_ms;
        self.max_turn_ms = self.max_turn_ms.max(o.max_turn_ms);
        self.max_timer_lag_ms = self.max_timer_lag_ms.max(o.max_timer_lag_ms);
        self.strained_ms = self.strained_ms.max(o.strained_ms);
    }
}

enum Entry {
    Listener { node: usize, listener: TcpListener },
    Conn(Box<Conn>),
}

struct Hosted {
    core: Node,
    conns: HashMap<ConnId, usize>,
    listener: usize,
    state: NodeState,
    refusals: accept::Refusals,
}

/// A connection with input left for a later turn: (slab key, node, conn, when it joined
/// the backlog).
type Unread = (usize, usize, ConnId, Instant);

/// The stop signals' pipe (external slots end just below).
const SIGNALS: Token = Token(usize::MAX - 1);
/// Tokens below this are the slab's; the ones above, up to the signals', are the host's.
const EXTERNAL_BASE: usize = usize::MAX - 64;
/// One read of this size per connection in the backlog per visit: about 500 gossip
/// frames, so a visit's fixed cost (a cold connection and core) is spread over many.
const READ_CHUNK: usize = 64 * 1024;
/// The first read of fresh input: a seed's request or a quiet neighbour's reply fits
/// whole; a busy connection's input joins the backlog after it.
pub(super) const FRESH_READ: usize = 4 * 1024;
/// A loop whose oldest backlog entry has waited this long is behind on its input: its
/// nodes excuse the neighbours heard from lately, as the missing answer may be waiting
/// unread here, or at a remote as loaded as this loop (every node of a swarm's worker
/// shares it).
const BEHIND: Duration = Duration::from_secs(1);
/// How long a turn reads before it fires the due timers (and may flush).
const TURN_BUDGET: Duration = Duration::from_millis(10);
/// Queued frames go out when the loop finds nothing more to read, or after this long
/// at the latest. On loopback a write costs about 3 us of kernel time however small, so
/// a saturated loop that wrote after every short turn would spend most of its time
/// writing single frames; this way the busier the loop, the more frames per write,
/// while an idle loop adds no latency.
const FLUSH_MAX: Duration = Duration::from_millis(10);

/// The event loop.
pub struct Driver<S: Sink> {
    poll: Poll,
    entries: Slab<Entry>,
    nodes: Vec<Hosted>,
    wheel: TimerWheel<(usize, Timer)>,
    clock: Clock,
    pub sink: S,
    max_frame: usize,
    scratch: Vec<u8>,
    dirty: Vec<usize>,
    /// The backlog: connections with input left, read in the order they were left.
    unread: VecDeque<Unread>,
    /// The messages of one read, handed to the core one by one.
    inbox: Vec<Message>,
    /// The last message encoded, kept alive so a pointer match is sound.
    encoded: Option<(Arc<Message>, Vec<u8>)>,
    /// Set by a stop signal: the loop ends after this turn.
    stop: bool,
    signals: Option<signals::StopSignals>,
    pub stats: NetStats,
    busy_us: u64,
    last_flush: Instant,
    /// Most connections a node may have; accepts past it are closed at once.
    max_connections: usize,
    /// Nodes with refusals not yet reported.
    refusing: Vec<usize>,
    /// Listeners resting after accept ran out of resources.
    paused: Vec<accept::Paused>,
    /// With a cluster key every frame sent is sealed and every frame read must open.
    key: Option<ClusterKey>,
    /// Whether the host's kernel may be dropping what remotes send.
    strain: strain::Strain,
}

impl<S: Sink> Driver<S> {
    pub fn new(sink: S, max_frame: usize) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let clock = Clock::new();
        Ok(Driver {
            poll,
            entries: Slab::new(),
            nodes: Vec::new(),
            wheel: TimerWheel::new(clock.now()),
            clock,
            sink,
            max_frame,
            scratch: vec![0; READ_CHUNK],
            dirty: Vec::new(),
            unread: VecDeque::new(),
            inbox: Vec::new(),
            encoded: None,
            stop: false,
            signals: None,
            stats: NetStats::default(),
            busy_us: 0,
            last_flush: Instant::now(),
            max_connections: usize::MAX,
            refusing: Vec::new(),
            paused: Vec::new(),
            key: None,
            strain: strain::Strain::default(),
        })
    }

    /// Authenticates every frame with `key` from now on (set before adding nodes).
    pub fn set_cluster_key(&mut self, key: ClusterKey) {
        self.key = Some(key);
    }

    /// Caps each hosted node's connections (accepted and dialled) at `max`: connections
    /// accepted past it are closed at once, and counted in one warning a second.
    pub fn set_max_connections(&mut self, max: usize) {
        self.max_connections = max;
    }

    /// The largest payload a connection accepts: a body of `max_frame` and its tag.
    fn max_payload(&self) -> usize {
        match self.key {
            Some(_) => self.max_frame.saturating_add(TAG_LEN),
            None => self.max_frame,
        }
    }

    /// A handle that stops the loop from a signal handler: set the flag, then wake.
    /// Stops the loop on SIGINT, SIGTERM or SIGHUP, seen
    /// by the loop itself: no signal thread.
    pub fn stop_on_signals(&mut self) -> std::io::Result<()> {
        self.signals = Some(signals::StopSignals::register(
            self.poll.registry(),
            SIGNALS,
        )?);
        Ok(())
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    pub fn node(&self, idx: usize) -> Option<&Node> {
        self.nodes.get(idx).map(|h| &h.core)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Makes room for `nodes` more nodes and `sockets` more sockets at once, so a host
    /// that knows its size does not pay for the slack of doubling growth.
    pub fn reserve(&mut self, nodes: usize, sockets: usize) {
        self.nodes.reserve_exact(nodes);
        self.entries.reserve_exact(sockets);
    }

    /// Open sockets: listeners and connections.
    pub fn socket_count(&self) -> usize {
        self.entries.len()
    }

    /// Hosts `core` on `listener` (already bound to `core.addr()`) and starts it.
    pub fn add(&mut self, core: Node, mut listener: TcpListener) -> std::io::Result<usize> {
        let node = self.nodes.len();
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        self.poll
            .registry()
            .register(&mut listener, Token(key), Interest::READABLE)?;
        entry.insert(Entry::Listener { node, listener });
        self.nodes.push(Hosted {
            core,
            conns: HashMap::new(),
            listener: key,
            state: NodeState::Live,
            refusals: accept::Refusals::default(),
        });
        let now = self.now();
        self.core(node, |core| core.start(now));
        self.flush_dirty();
        Ok(node)
    }

    /// Registers a socket the host owns (a control channel, say) on this loop, so that a
    /// turn returns when it is ready. `slot` (below 64) tells several apart; the driver
    /// itself ignores their readiness.
    pub fn register_external(&self, source: &mut impl Source, slot: usize) -> std::io::Result<()> {
        let token = Token(EXTERNAL_BASE + slot.min(62));
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll.registry().register(source, token, interest)
    }

    /// Runs until the stop flag is set.
    pub fn run(&mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !self.stopping() {
            self.turn(&mut events, None)?;
        }
        self.shutdown();
        Ok(())
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.stop
    }

    /// One pass: wait for readiness or the next deadline (at most `max_wait`; not at all
    /// while input or output is pending), then read the ready sockets (a bounded amount
    /// each, for a bounded time), fire every due timer, and flush what they queued if
    /// nothing else is ready or the last flush is [`FLUSH_MAX`] old.
    pub fn turn(&mut self, events: &mut Events, max_wait: Option<Duration>) -> std::io::Result<()> {
        let Some(idle) = self.wait(events, max_wait)? else {
            return Ok(());
        };
        let began = Instant::now();
        let end = began + TURN_BUDGET;
        // Fresh input goes first: a connection that emptied last turn (a seed's, a quiet
        // neighbour's) carries the liveness traffic, which must not wait a whole cycle
        // behind the backlog of busy ones. The backlog, in the order it formed, gets the
        // rest of the turn and at least half of it. Past the budget, input is left for
        // the next turn so that timers fire and replies go out on time.
        let polled = self.now();
        for ev in events.iter() {
            self.event(ev, began + TURN_BUDGET / 2, polled);
        }
        self.read_backlog(end);
        self.fire_timers();
        self.accept_limits_due();
        if idle || self.last_flush.elapsed() >= FLUSH_MAX {
            self.flush_dirty();
        }
        self.count_turn(began);
        Ok(())
    }

    /// Polls; Some(true) when nothing at all is ready, None when a signal interrupted.
    fn wait(
        &mut self,
        events: &mut Events,
        max_wait: Option<Duration>,
    ) -> std::io::Result<Option<bool>> {
        let pending = !self.unread.is_empty() || !self.dirty.is_empty();
        let timeout = match pending {
            true => Some(Duration::ZERO),
            false => self.poll_timeout(max_wait),
        };
        match self.poll.poll(events, timeout) {
            Ok(()) => Ok(Some(events.is_empty() && self.unread.is_empty())),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Handles one readiness event reported by the poll at `polled`, leaving its input
    /// for next turn past `end`.
    fn event(&mut self, ev: &mio::event::Event, end: Instant, polled: Millis) {
        let key = ev.token().0;
        if ev.token() == SIGNALS {
            if self.signals.as_mut().is_some_and(|s| s.arrived()) {
                self.stop = true;
            }
            return;
        }
        if key >= EXTERNAL_BASE {
            return;
        }
        let to_end = ev.is_read_closed() || ev.is_error();
        let writable = ev.is_writable() || ev.is_error();
        let readable = ev.is_readable() || to_end;
        if readable {
            if let Some(Entry::Conn(c)) = self.entries.get_mut(key) {
                c.arrived = Some(polled);
            }
        }
        // A connection in the backlog is read in its place there. A seed's are read at
        // once all the same: they carry only small control frames (registrations, dead-node
        // reports, liveness), and a report left behind busy peers' gossip would reach the
        // seed a whole backlog cycle late.
        let late = Instant::now() >= end && !self.seed_conn(key);
        if readable && (self.backlogged(key) || late) && self.defer(key, to_end) {
            if writable {
                self.ready(key, false, true, false);
            }
            return;
        }
        self.ready(key, readable, writable, to_end);
    }

    fn count_turn(&mut self, began: Instant) {
        self.stats.turns += 1;
        if !self.unread.is_empty() {
            self.stats.turns_over_budget += 1;
        }
        let us = began.elapsed().as_micros() as u64;
        self.busy_us += us;
        self.stats.busy_ms = self.busy_us / 1000;
        self.stats.max_turn_ms = self.stats.max_turn_ms.max(us / 1000);
    }

    /// Whether slab `key` is a connection of a hosted seed.
    fn seed_conn(&self, key: usize) -> bool {
        let Some(Entry::Conn(c)) = self.entries.get(key) else {
            return false;
        };
        let seed = self.nodes.get(c.node).map(|h| h.core.role());
        seed == Some(Role::Seed)
    }

    /// Whether slab `key` is a connection with input left from an earlier turn.
    fn backlogged(&self, key: usize) -> bool {
        matches!(self.entries.get(key), Some(Entry::Conn(c)) if c.unread)
    }

    /// Leaves a ready connection's input for the next turn; false for a listener or a
    /// pending connect (cheap, and they must not wait).
    fn defer(&mut self, key: usize, to_end: bool) -> bool {
        match self.entries.get_mut(key) {
            Some(Entry::Conn(c)) if !c.connecting => c.to_end |= to_end,
            _ => return false,
        }
        self.defer_read(key);
        true
    }

    /// Reads the backlog's connections, if still theirs, first come first served, each
    /// at most once, until `end` (at least one). One with input left after its read goes
    /// to the back.
    fn read_backlog(&mut self, end: Instant) {
        for _ in 0..self.unread.len() {
            let Some((key, node, id, _)) = self.unread.pop_front() else {
                break;
            };
            if let Some(Entry::Conn(c)) = self.entries.get_mut(key) {
                if c.node == node && c.id == id {
                    c.unread = false;
                    let now = self.now();
                    self.read_conn(key, READ_CHUNK, now);
                }
            }
            if Instant::now() >= end {
                break;
            }
        }
    }

    /// Whether the oldest input left in the backlog has waited [`BEHIND`] or longer.
    fn behind(&self) -> bool {
        self.unread.front().is_some_and(|u| u.3.elapsed() >= BEHIND)
    }

    fn poll_timeout(&self, max_wait: Option<Duration>) -> Option<Duration> {
        let now = self.now();
        let to_deadline = self
            .wheel
            .next_deadline()
            .map(|d| Duration::from_millis(d.saturating_sub(now)));
        let to_limit = self
            .accept_limits_deadline()
            .map(|t| t.saturating_duration_since(Instant::now()));
        let to_deadline = match (to_deadline, to_limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (to_deadline, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now();
        while let Some((due, (node, timer))) = self.wheel.poll(now) {
            let lag = now.saturating_sub(due);
            self.stats.max_timer_lag_ms = self.stats.max_timer_lag_ms.max(lag);
            // A frozen or killed node's timers are dropped: it never acts again.
            if self.is_live(node) {
                if matches!(
                    timer,
                    Timer::Liveness | Timer::Recheck | Timer::IdleSweep | Timer::Verify
                ) {
                    self.tell_input_waiting(node, now);
                }
                self.core(node, |core| core.timer(timer, now));
            }
        }
    }

    /// Before a node judges its connections' liveness: those whose input this loop has
    /// not read yet (it is behind) are alive as of when that input came, since their
    /// remotes sent it, and so are those whose remote read what we could not write
    /// before (it is behind). A loop [`BEHIND`] on its input also says so: the node then
    /// excuses remotes heard from lately, as their answers may be waiting (see
    /// [`Node::loop_behind`]). While the host's TCP memory is strained (see [`strain`])
    /// all count as alive: the kernel may be dropping what they send.
    fn tell_input_waiting(&mut self, node: usize, now: Millis) {
        let strained = self.strain.check_host(Instant::now());
        self.stats.strained_ms = self.strain.total.as_millis() as u64;
        let behind = self.behind();
        let Some(h) = self.nodes.get(node) else {
            return;
        };
        let mut alive = Vec::new();
        for (id, key) in &h.conns {
            if let Some(Entry::Conn(c)) = self.entries.get_mut(*key) {
                // Waiting input counts from when it came; a remote that read what we
                // wrote, or any remote on a strained host, counts as heard now.
                if c.take_remote_read() || strained {
                    alive.push((*id, now));
                } else if c.unread {
                    alive.push((*id, c.arrived.unwrap_or(now).min(now)));
                }
            }
        }
        for (id, at) in alive {
            self.core(node, |core| core.input_waiting(id, at));
        }
        if behind && !strained {
            self.core(node, Node::loop_behind);
        }
    }

    fn is_live(&self, node: usize) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|h| h.state == NodeState::Live)
    }

    /// Whether slab `key` still holds connection `id` of `node`.
    fn holds(&self, key: usize, node: usize, id: ConnId) -> bool {
        matches!(self.entries.get(key), Some(Entry::Conn(c)) if c.node == node && c.id == id)
    }

    /// Runs `f` on a node's core, then carries out what it decided.
    fn core(&mut self, node: usize, f: impl FnOnce(&mut Node)) {
        if let Some(h) = self.nodes.get_mut(node) {
            f(&mut h.core);
            self.drain(node);
        }
    }

    /// Flushes what can be flushed and closes every socket.
    pub fn shutdown(&mut self) {
        self.flush_dirty();
        self.entries.clear();
        self.sink.flush();
    }
}

#[cfg(test)]
mod tests;
