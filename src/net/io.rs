//! The driver's socket work: accepting, connecting, reading frames into cores, carrying
//! out the cores' actions, and flushing send queues once per turn.
//!
//! Knows sockets and frames; what a frame means is the cores' business.

use mio::net::TcpStream;
use mio::{Interest, Token};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::conn::{Conn, ReadOutcome};
use super::{Driver, Entry, NodeState, Sink, FRESH_READ};
use crate::codec::encode_json;
use crate::proto::{peek_gossip, Action, ConnId, Disconnect, Event, Message, Millis};

impl<S: Sink> Driver<S> {
    pub(super) fn ready(&mut self, key: usize, readable: bool, writable: bool, to_end: bool) {
        let node = match self.entries.get(key) {
            Some(Entry::Listener { node, .. }) => *node,
            Some(Entry::Conn(c)) => c.node,
            None => return,
        };
        // A frozen node takes no input: its sockets stay open and fill up.
        if !self.is_live(node) {
            return;
        }
        match self.entries.get(key) {
            Some(Entry::Listener { .. }) => self.accept_all(key, node),
            Some(Entry::Conn(_)) => self.conn_ready(key, readable, writable, to_end),
            None => {}
        }
    }

    /// Registers an accepted connection and tells its node.
    pub(super) fn adopt(&mut self, node: usize, mut stream: TcpStream, remote: SocketAddr) {
        let now = self.now();
        let max_payload = self.max_payload();
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
        let conn = Conn::new(node, id, stream, max_payload);
        entry.insert(Entry::Conn(Box::new(conn)));
        self.stats.connections_opened += 1;
        self.drain(node);
    }

    fn conn_ready(&mut self, key: usize, readable: bool, writable: bool, to_end: bool) {
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
        if readable || to_end {
            if let Some(Entry::Conn(c)) = self.entries.get_mut(key) {
                c.to_end |= to_end;
            }
            self.read_conn(key, FRESH_READ, now);
        }
    }

    /// Reads up to `budget` bytes from a connection into its node's core; what is left
    /// puts it on the backlog.
    pub(super) fn read_conn(&mut self, key: usize, budget: usize, now: Millis) {
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        let (node, id) = (c.node, c.id);
        let arrived = c.arrived.unwrap_or(now).min(now);
        if !self
            .nodes
            .get(node)
            .is_some_and(|h| h.state == NodeState::Live)
        {
            return;
        }
        let budget = budget.clamp(1, self.scratch.len());
        let scratch = self.scratch.get_mut(..budget).unwrap_or_default();
        let mut inbox = std::mem::take(&mut self.inbox);
        let reads = &mut self.stats.read_calls;
        let auth = self.key.as_ref();
        let mut core = self.nodes.get_mut(node).map(|h| &mut h.core);
        let mut dropped = 0;
        // A duplicate gossip frame is dropped from its identity, unparsed. (Frames still
        // in the inbox are not in the seen-cache yet: a duplicate of one of them is
        // parsed and dropped by the core as before.)
        let mut duplicate = |body: &[u8]| {
            let dup = peek_gossip(body).zip(core.as_deref_mut());
            let dup = dup.is_some_and(|(g, core)| core.absorb_duplicate_id(id, &g, now));
            dropped += u64::from(dup);
            dup
        };
        let outcome = c.read(scratch, budget, reads, auth, &mut duplicate, |msg| {
            inbox.push(msg)
        });
        c.release_idle_buffer();
        self.stats.frames_received += inbox.len() as u64 + dropped;
        // One message at a time, each one's actions carried out before the next: a core
        // given a whole read at once would queue hundreds of actions, and its queue would
        // keep that capacity for good, in every one of thousands of peers.
        let heard = !inbox.is_empty() || dropped > 0;
        for msg in inbox.drain(..) {
            self.core(node, |core| core.message(id, msg, now));
        }
        self.inbox = inbox;
        // What was read came by `arrived`, however late this loop read it.
        if heard && arrived < now {
            self.core(node, |core| core.arrived(id, arrived));
        }
        match outcome {
            ReadOutcome::Open => {}
            ReadOutcome::More => self.defer_read(key),
            // The core may have closed this connection meanwhile, and the key been reused.
            ReadOutcome::Ended(why) if self.holds(key, node, id) => self.drop_conn(key, why),
            ReadOutcome::Ended(_) => {}
        }
    }

    /// Puts a connection with input left on the list for next turn, once.
    pub(super) fn defer_read(&mut self, key: usize) {
        if let Some(Entry::Conn(c)) = self.entries.get_mut(key) {
            if !c.unread {
                c.unread = true;
                let since = std::time::Instant::now();
                self.unread.push_back((key, c.node, c.id, since));
            }
        }
    }

    /// Closes a connection the core did not ask to close, and tells the core why.
    pub(super) fn drop_conn(&mut self, key: usize, why: Disconnect) {
        let Some((node, id)) = self.forget(key) else {
            return;
        };
        let now = self.now();
        self.core(node, |core| core.closed(id, why, now));
    }

    /// Deregisters and drops a connection; returns whose it was.
    pub(super) fn forget(&mut self, key: usize) -> Option<(usize, ConnId)> {
        if !matches!(self.entries.get(key), Some(Entry::Conn(_))) {
            return None;
        }
        let Entry::Conn(mut c) = self.entries.remove(key) else {
            return None;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        if let Some(h) = self.nodes.get_mut(c.node) {
            h.conns.remove(&c.id);
            shrink_if_sparse(&mut h.conns);
        }
        Some((c.node, c.id))
    }

    pub(super) fn drain(&mut self, node: usize) {
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
            Action::Log(event) => self.log(node, &event),
        }
    }

    /// Hands one of a node's events to the sink.
    pub(super) fn log(&mut self, node: usize, event: &Event) {
        if let Some(h) = self.nodes.get(node) {
            let (addr, role) = (h.core.addr(), h.core.role());
            self.sink.event(self.clock.now(), node, addr, role, event);
        }
    }

    fn connect(&mut self, node: usize, id: ConnId, addr: SocketAddr) {
        let max_payload = self.max_payload();
        let registered = TcpStream::connect(addr).and_then(|mut stream| {
            let _ = stream.set_nodelay(true);
            let entry = self.entries.vacant_entry();
            let key = entry.key();
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll
                .registry()
                .register(&mut stream, Token(key), interest)?;
            let mut c = Conn::new(node, id, stream, max_payload);
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

    pub(super) fn key_of(&self, node: usize, id: ConnId) -> Option<usize> {
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
        // Liveness, dead-node reports and the like must not wait behind forwarded gossip.
        let control = !matches!(*msg, Message::Gossip(_));
        match c.queue_encoded(frame, control) {
            Ok(()) => {
                self.stats.frames_sent += 1;
                self.stats.bytes_sent += frame.len() as u64;
                // Only the first frame of a turn marks it; later ones ride the same write.
                if c.frames_queued_since_flush() == 1 {
                    self.dirty.push(key);
                }
            }
            Err(why) => {
                let remote = c.stream.peer_addr().ok();
                let queued = c.queued();
                if let Some(remote) = remote {
                    self.log(node, &Event::SendQueueFull { remote, queued });
                }
                self.drop_conn(key, why);
            }
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
                if let Some(k) = &self.key {
                    k.seal(&mut buf, 0);
                }
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

    pub(super) fn flush_dirty(&mut self) {
        self.last_flush = std::time::Instant::now();
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            self.flush_conn(key);
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    pub(super) fn flush_conn(&mut self, key: usize) {
        let Some(Entry::Conn(c)) = self.entries.get(key) else {
            return;
        };
        // A frozen node writes nothing more; what it queued stays queued.
        if c.connecting || !c.has_output() || !self.is_live(c.node) {
            return;
        }
        let Some(Entry::Conn(c)) = self.entries.get_mut(key) else {
            return;
        };
        match c.flush() {
            Ok(writes) => self.stats.write_calls += writes,
            Err(why) => self.drop_conn(key, why),
        }
    }
}

/// A seed's map of thousands of connections would keep its peak size after they go.
fn shrink_if_sparse(conns: &mut HashMap<ConnId, usize>) {
    if conns.capacity() > 64 && conns.len() < conns.capacity() / 4 {
        conns.shrink_to_fit();
    }
}
