//! The mio shell: one `Poll`, one thread, a slab of listeners and connections, one timer
//! wheel. It maps readiness to core inputs and core actions to syscalls, and sleeps until
//! the next deadline. One driver hosts one node or thousands.
//!
//! The only module that owns sockets and reads the clock.

pub mod conn;
pub mod listener;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::codec::encode_json;
use crate::proto::{Action, ConnId, Disconnect, Event, Message, Millis, Node, Role, Timer};
use crate::wheel::TimerWheel;
use conn::{Conn, ReadOutcome};

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

/// Driver-wide counters (for the swarm report).
#[derive(Debug, Clone, Copy, Default)]
pub struct NetStats {
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub write_calls: u64,
    pub connections_opened: u64,
}

enum Entry {
    Listener { node: usize, listener: TcpListener },
    Conn(Box<Conn>),
}

struct Hosted {
    core: Node,
    conns: HashMap<ConnId, usize>,
}

const WAKER: Token = Token(usize::MAX);
const READ_CHUNK: usize = 64 * 1024;

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
    /// The last message encoded, kept alive so a pointer match is sound.
    encoded: Option<(Arc<Message>, Vec<u8>)>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    pub stats: NetStats,
}

impl<S: Sink> Driver<S> {
    pub fn new(sink: S, max_frame: usize) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
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
            encoded: None,
            stop: Arc::new(AtomicBool::new(false)),
            waker,
            stats: NetStats::default(),
        })
    }

    /// A handle that stops the loop from a signal handler: set the flag, then wake.
    pub fn stopper(&self) -> (Arc<AtomicBool>, Arc<Waker>) {
        (Arc::clone(&self.stop), Arc::clone(&self.waker))
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

    /// Hosts `core` on `listener` (already bound to `core.addr()`) and starts it.
    pub fn add(&mut self, core: Node, mut listener: TcpListener) -> io::Result<usize> {
        let node = self.nodes.len();
        let entry = self.entries.vacant_entry();
        self.poll
            .registry()
            .register(&mut listener, Token(entry.key()), Interest::READABLE)?;
        entry.insert(Entry::Listener { node, listener });
        self.nodes.push(Hosted {
            core,
            conns: HashMap::new(),
        });
        let now = self.now();
        if let Some(h) = self.nodes.get_mut(node) {
            h.core.start(now);
        }
        self.drain(node);
        self.flush_dirty();
        Ok(node)
    }

    /// Runs until the stop flag is set.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !self.stop.load(Ordering::Relaxed) {
            self.turn(&mut events, None)?;
        }
        self.shutdown();
        Ok(())
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// One pass: wait for readiness or the next deadline (at most `max_wait`), then handle
    /// every ready socket and every due timer, and flush what they queued.
    pub fn turn(&mut self, events: &mut Events, max_wait: Option<Duration>) -> io::Result<()> {
        let timeout = self.poll_timeout(max_wait);
        match self.poll.poll(events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            if ev.token() != WAKER {
                self.ready(
                    ev.token().0,
                    ev.is_readable(),
                    ev.is_writable() || ev.is_error(),
                );
            }
        }
        self.fire_timers();
        self.flush_dirty();
        Ok(())
    }

    fn poll_timeout(&self, max_wait: Option<Duration>) -> Option<Duration> {
        let now = self.now();
        let to_deadline = self
            .wheel
            .next_deadline()
            .map(|d| Duration::from_millis(d.saturating_sub(now)));
        match (to_deadline, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now();
        while let Some((_, (node, timer))) = self.wheel.poll(now) {
            if let Some(h) = self.nodes.get_mut(node) {
                h.core.timer(timer, now);
                self.drain(node);
            }
        }
    }

    fn ready(&mut self, key: usize, readable: bool, writable: bool) {
        match self.entries.get(key) {
            Some(Entry::Listener { node, .. }) => {
                let node = *node;
                self.accept_all(key, node);
            }
            Some(Entry::Conn(_)) => self.conn_ready(key, readable, writable),
            None => {}
        }
    }

    fn accept_all(&mut self, key: usize, node: usize) {
        loop {
            let Some(Entry::Listener { listener, .. }) = self.entries.get(key) else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => self.adopt(node, stream, remote),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Registers an accepted connection and tells its node.
    fn adopt(&mut self, node: usize, mut stream: TcpStream, remote: SocketAddr) {
        let now = self.now();
        let _ = stream.set_nodelay(true);
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            log::warn!("cannot register connection from {remote}: {e}");
            return;
        }
        let Some(h) = self.nodes.get_mut(node) else {
            return;
        };
        let id = h.core.accept(remote, now);
        h.conns.insert(id, key);
        entry.insert(Entry::Conn(Box::new(Conn::new(
            node,
            id,
            stream,
            remote,
            self.max_frame,
        ))));
        self.stats.connections_opened += 1;
        self.drain(node);
    }

    fn conn_ready(&mut self, key: usize, readable: bool, writable: bool) {
        let now = self.now();
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        let (node, id) = (c.node, c.id);
        if c.connecting {
            match c.finish_connect() {
                Ok(true) => self.core(node, |core| core.connected(id, now)),
                Ok(false) => return,
                Err(e) => return self.drop_conn(key, Disconnect::ConnectFailed(e.to_string())),
            }
            if !self.holds(key, node, id) {
                return;
            }
        }
        if writable {
            self.flush_conn(key);
        }
        if readable {
            self.read_conn(key, now);
        }
    }

    fn read_conn(&mut self, key: usize, now: Millis) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        let (node, id) = (c.node, c.id);
        let Some(h) = self.nodes.get_mut(node) else {
            return;
        };
        let outcome = c.read(&mut self.scratch, |msg| h.core.message(id, msg, now));
        self.drain(node);
        // The core may have closed this connection meanwhile, and the key been reused.
        if let ReadOutcome::Ended(why) = outcome {
            if self.holds(key, node, id) {
                self.drop_conn(key, why);
            }
        }
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

    /// Closes a connection the core did not ask to close, and tells the core why.
    fn drop_conn(&mut self, key: usize, why: Disconnect) {
        let Some((node, id)) = self.forget(key) else {
            return;
        };
        let now = self.now();
        self.core(node, |core| core.closed(id, why, now));
    }

    /// Deregisters and drops a connection; returns whose it was.
    fn forget(&mut self, key: usize) -> Option<(usize, ConnId)> {
        if !matches!(self.entries.get(key), Some(Entry::Conn(_))) {
            return None;
        }
        let Entry::Conn(mut c) = self.entries.remove(key) else {
            return None;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        if let Some(h) = self.nodes.get_mut(c.node) {
            h.conns.remove(&c.id);
        }
        Some((c.node, c.id))
    }

    fn drain(&mut self, node: usize) {
        loop {
            let Some(action) = self.nodes.get_mut(node).and_then(|h| h.core.poll_action()) else {
                return;
            };
            self.act(node, action);
        }
    }

    fn act(&mut self, node: usize, action: Action) {
        match action {
            Action::Connect { conn, addr } => self.connect(node, conn, addr),
            Action::Send { conn, msg } => self.send(node, conn, msg),
            Action::Close { conn } => self.close(node, conn),
            Action::SetTimer { at, timer } => {
                self.wheel.insert(at, (node, timer));
            }
            Action::Log(event) => {
                if let Some(h) = self.nodes.get(node) {
                    let (addr, role) = (h.core.addr(), h.core.role());
                    self.sink.event(self.clock.now(), node, addr, role, &event);
                }
            }
        }
    }

    fn connect(&mut self, node: usize, id: ConnId, addr: SocketAddr) {
        let registered = TcpStream::connect(addr).and_then(|mut stream| {
            let _ = stream.set_nodelay(true);
            let entry = self.entries.vacant_entry();
            let key = entry.key();
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll
                .registry()
                .register(&mut stream, Token(key), interest)?;
            let mut c = Conn::new(node, id, stream, addr, self.max_frame);
            c.connecting = true;
            entry.insert(Entry::Conn(Box::new(c)));
            Ok(key)
        });
        match registered {
            Ok(key) => {
                if let Some(h) = self.nodes.get_mut(node) {
                    h.conns.insert(id, key);
                }
                self.stats.connections_opened += 1;
            }
            Err(e) => {
                let now = self.now();
                let why = Disconnect::ConnectFailed(e.to_string());
                self.core(node, |core| core.closed(id, why, now));
            }
        }
    }

    fn key_of(&self, node: usize, id: ConnId) -> Option<usize> {
        self.nodes.get(node).and_then(|h| h.conns.get(&id)).copied()
    }

    fn send(&mut self, node: usize, id: ConnId, msg: Arc<Message>) {
        let Some(key) = self.key_of(node, id) else {
            return;
        };
        if !self.encode(&msg) {
            return;
        }
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        let frame = self
            .encoded
            .as_ref()
            .map(|(_, b)| b.as_slice())
            .unwrap_or_default();
        match c.queue_encoded(frame) {
            Ok(()) => {
                self.stats.frames_sent += 1;
                self.stats.bytes_sent += frame.len() as u64;
                self.dirty.push(key);
            }
            Err(why) => self.drop_conn(key, why),
        }
    }

    /// Encodes `msg` into the one-entry cache unless it is already there.
    fn encode(&mut self, msg: &Arc<Message>) -> bool {
        if self
            .encoded
            .as_ref()
            .is_some_and(|(m, _)| Arc::ptr_eq(m, msg))
        {
            return true;
        }
        let mut buf = self.encoded.take().map(|(_, b)| b).unwrap_or_default();
        buf.clear();
        match encode_json(msg.as_ref(), self.max_frame, &mut buf) {
            Ok(()) => {
                self.encoded = Some((Arc::clone(msg), buf));
                true
            }
            Err(e) => {
                log::warn!("cannot encode a {} frame: {e}", msg.kind());
                false
            }
        }
    }

    /// Closes at the core's request: a last non-blocking flush, then the socket goes.
    fn close(&mut self, node: usize, id: ConnId) {
        if let Some(key) = self.key_of(node, id) {
            if let Some(Entry::Conn(c)) = self.entries.get_mut(key) {
                let _ = c.flush();
            }
            self.forget(key);
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for key in dirty.drain(..) {
            self.flush_conn(key);
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn flush_conn(&mut self, key: usize) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        if c.connecting || !c.has_output() {
            return;
        }
        match c.flush() {
            Ok(writes) => self.stats.write_calls += writes,
            Err(why) => self.drop_conn(key, why),
        }
    }

    /// Flushes what can be flushed and closes every socket.
    pub fn shutdown(&mut self) {
        self.flush_dirty();
        self.entries.clear();
        self.sink.flush();
    }
}
