//! What the fuzz targets run: fuzzer bytes read as a script for one frame decoder, or
//! for a seed or peer core driven as the `net` driver drives it (a decoder per
//! connection, frames parsed and handed to the core, actions carried out, timers fired).
//! Only gossipd's public API is used. A panic anywhere is the finding; a decoder holding
//! more than one frame is one too.

use std::net::SocketAddr;

use gossipd::codec::{FrameDecoder, HEADER_LEN};
use gossipd::proto::{
    Action, ConnId, Disconnect, Message, Millis, Node, PeerConfig, PeerCore, SeedConfig, SeedCore,
    Timer,
};

const MAX_FRAME: usize = 4096;
const T0: Millis = 1_700_000_000_000;

/// Reads the script's bytes one field at a time; a field past the end reads as 0.
struct Script<'a> {
    rest: &'a [u8],
}

impl<'a> Script<'a> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.rest.split_first().unwrap_or((&0, &[]));
        self.rest = rest;
        *first
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }

    fn done(&self) -> bool {
        self.rest.is_empty()
    }
}

/// `data` = max-frame byte, then (chunk length byte, chunk) pairs.
pub fn decode_chunks(data: &[u8]) {
    let mut script = Script { rest: data };
    let max_frame = 1 + usize::from(script.byte()) * 64;
    let mut decoder = FrameDecoder::new(max_frame);
    while !script.done() {
        let len = usize::from(script.byte());
        decoder.extend(script.take(len));
        while let Ok(Some(body)) = decoder.next_frame() {
            assert!((1..=max_frame).contains(&body.len()));
        }
        assert!(decoder.buffered() < HEADER_LEN + max_frame);
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A peer core with three seeds and short intervals.
pub fn peer() -> Node {
    let seeds = vec![addr(8001), addr(8002), addr(8003)];
    let cfg = PeerConfig {
        liveness_interval: 1_000,
        idle_timeout: 4_000,
        gossip_interval: 300,
        seen_capacity: 32,
        max_candidates: 8,
        ..PeerConfig::new(addr(9000), seeds)
    };
    Node::Peer(PeerCore::new(cfg, 1))
}

/// A seed core with short intervals.
pub fn seed() -> Node {
    let cfg = SeedConfig {
        liveness_interval: 1_000,
        idle_timeout: 4_000,
        peer_list_max: 4,
        ..SeedConfig::new(addr(9000))
    };
    Node::Seed(SeedCore::new(cfg, 1))
}

struct Driver {
    node: Node,
    now: Millis,
    wires: Vec<(ConnId, FrameDecoder)>,
    timers: Vec<(Millis, Timer)>,
    next_port: u16,
}

/// Plays `data` into `node`: each op byte picks accept, close, wait or read; a read
/// names a connection and a chunk length, and the chunk follows.
pub fn play(mut node: Node, data: &[u8]) {
    node.start(T0);
    let mut d = Driver {
        node,
        now: T0,
        wires: Vec::new(),
        timers: Vec::new(),
        next_port: 40_000,
    };
    d.settle();
    let mut script = Script { rest: data };
    while !script.done() {
        match script.byte() % 8 {
            0 => d.accept(),
            1 => d.close(usize::from(script.byte())),
            2 => d.wait(u64::from(script.byte()) * 40),
            _ => {
                let conn = usize::from(script.byte());
                let len = usize::from(script.byte()) * 4;
                d.read(conn, script.take(len));
            }
        }
    }
}

impl Driver {
    fn accept(&mut self) {
        self.next_port = self.next_port.wrapping_add(1);
        let remote = SocketAddr::from(([127, 0, 0, 2], self.next_port));
        let conn = self.node.accept(remote, self.now);
        self.wires.push((conn, FrameDecoder::new(MAX_FRAME)));
    }

    fn pick(&self, index: usize) -> Option<ConnId> {
        let n = self.wires.len().max(1);
        self.wires.get(index % n).map(|(c, _)| *c)
    }

    fn close(&mut self, index: usize) {
        if let Some(conn) = self.pick(index) {
            self.end(conn, Disconnect::Closed);
        }
    }

    fn end(&mut self, conn: ConnId, why: Disconnect) {
        self.wires.retain(|(c, _)| *c != conn);
        self.node.closed(conn, why, self.now);
        self.settle();
    }

    fn read(&mut self, index: usize, chunk: &[u8]) {
        let Some(conn) = self.pick(index) else {
            return;
        };
        if let Some((_, dec)) = self.wires.iter_mut().find(|(c, _)| *c == conn) {
            dec.extend(chunk);
        }
        loop {
            let Some((_, dec)) = self.wires.iter_mut().find(|(c, _)| *c == conn) else {
                return;
            };
            let parsed = match dec.next_frame() {
                Ok(Some(body)) => Message::from_frame(body).map_err(|e| e.to_string()),
                Ok(None) => {
                    assert!(dec.buffered() < HEADER_LEN + MAX_FRAME);
                    return;
                }
                Err(e) => Err(e.to_string()),
            };
            match parsed {
                Ok(msg) => {
                    self.node.message(conn, msg, self.now);
                    self.settle();
                }
                Err(why) => return self.end(conn, Disconnect::BadFrame(why)),
            }
        }
    }

    fn wait(&mut self, ms: Millis) {
        let until = self.now + ms;
        loop {
            self.timers.sort_unstable_by_key(|(at, _)| *at);
            let Some(&(at, timer)) = self.timers.first().filter(|(at, _)| *at <= until) else {
                break;
            };
            self.timers.remove(0);
            self.now = self.now.max(at);
            self.node.timer(timer, self.now);
            self.settle();
        }
        self.now = until;
    }

    /// Carries out the core's actions; its outgoing connects succeed at once.
    fn settle(&mut self) {
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Connect { conn, .. } => {
                    self.wires.push((conn, FrameDecoder::new(MAX_FRAME)));
                    self.node.connected(conn, self.now);
                }
                Action::Close { conn } => self.wires.retain(|(c, _)| *c != conn),
                Action::SetTimer { at, timer } => {
                    assert!(
                        at > self.now,
                        "{timer:?} set for {at}, not after {}",
                        self.now
                    );
                    self.timers.push((at, timer));
                }
                Action::Send { .. } | Action::Log(_) => {}
            }
        }
    }
}
