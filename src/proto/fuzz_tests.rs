//! Property tests over random frame streams: random bytes, bad length prefixes, broken
//! JSON and well-formed messages of every type with random field values, cut into random
//! chunks, go through a [`FrameDecoder`] per connection into a seed core and a peer core,
//! as the driver feeds them, with time moving on and due timers fired. Never a panic,
//! and memory stays bounded: each decoder within one frame, each core's tables within
//! their caps, and once every remote has gone, the cores forget them.

use proptest::prelude::*;
use serde_json::{json, Value};
use std::net::SocketAddr;

use super::{Action, ConnId, Disconnect, Gossip, Message, Millis, Node, Timer};
use super::{PeerConfig, PeerCore, SeedConfig, SeedCore};
use crate::codec::{encode_json, FrameDecoder, HEADER_LEN};

const MAX_FRAME: usize = 2048;
const T0: Millis = 1_700_000_000_000;
const LIVENESS: Millis = 1_000;
const MISSES: u32 = 2;
const SEEN_CAP: usize = 16;
const CANDIDATES: usize = 8;
const MAX_NEIGHBORS: usize = 3;
const IDLE_CAP: usize = 512;
const MAX_CHUNK: usize = 600;

/// A small pool of addresses, so registrations, hellos and gossip origins collide; the
/// node's own address is among them.
fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        4 => (0u8..6).prop_map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + u16::from(i)))),
        1 => any::<([u8; 4], u16)>().prop_map(SocketAddr::from),
        1 => any::<([u16; 8], u16)>().prop_map(SocketAddr::from),
    ]
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), 0u64..100, T0..T0 + 20 * LIVENESS, any::<u64>()]
}

fn gossip() -> impl Strategy<Value = Message> {
    let payload = prop_oneof![Just(None), any::<i64>().prop_map(|n| Some(json!([n])))];
    (addr(), number(), number(), ".{0,20}", any::<u32>(), payload).prop_map(
        |(origin, seq, ts, text, hops, payload)| {
            Message::Gossip(Gossip {
                origin,
                seq,
                ts,
                text,
                hops,
                payload,
            })
        },
    )
}

/// A well-formed message of any type, with random field values.
fn message() -> impl Strategy<Value = Message> {
    let peers = prop::collection::vec(addr(), 0..12);
    prop_oneof![
        addr().prop_map(|addr| Message::Register { addr }),
        peers.prop_map(|peers| Message::PeerList { peers }),
        addr().prop_map(|addr| Message::Hello { addr }),
        gossip(),
        (number(), addr()).prop_map(|(ts, from)| Message::LivenessRequest { ts, from }),
        (number(), addr(), addr()).prop_map(|(ts, from, to)| Message::LivenessReply {
            ts,
            from,
            to
        }),
        (addr(), number(), addr()).prop_map(|(addr, ts, reporter)| Message::DeadNode {
            addr,
            ts,
            reporter
        }),
    ]
}

fn framed(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    [&len.to_be_bytes()[..], body].concat()
}

/// A message's JSON with one field dropped or given a value of the wrong type.
fn broken(msg: Message, key: usize, drop: bool) -> Vec<u8> {
    let mut v = serde_json::to_value(msg).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        let keys: Vec<String> = obj.keys().cloned().collect();
        if let Some(k) = keys.get(key % keys.len().max(1)) {
            if drop {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), json!([1.5]));
            }
        }
    }
    framed(v.to_string().as_bytes())
}

/// One piece of a connection's byte stream.
fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        16 => message().prop_map(|m| {
            let mut out = Vec::new();
            let _ = encode_json(&m, MAX_FRAME, &mut out);
            out
        }),
        1 => (message(), any::<usize>(), any::<bool>()).prop_map(|(m, k, d)| broken(m, k, d)),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(|b| framed(&b)),
        1 => prop::collection::vec(any::<u8>(), 1..16),
        1 => prop_oneof![Just(0u32), Just(MAX_FRAME as u32 + 1), Just(u32::MAX)]
            .prop_map(|n| n.to_be_bytes().to_vec()),
        1 => (1usize..200).prop_map(|n| framed("[".repeat(n).as_bytes())),
    ]
}

/// What the remotes do, one step at a time.
#[derive(Debug, Clone)]
enum Step {
    /// A remote connects.
    Accept,
    /// A remote connects and says hello as `addr`, becoming a peer's neighbour.
    Hello(SocketAddr),
    /// Bytes arrive on the `conn`-th open connection, cut into chunks of these sizes.
    Feed {
        conn: usize,
        bytes: Vec<u8>,
        chunks: Vec<usize>,
    },
    /// The `conn`-th open connection ends.
    Close { conn: usize, clean: bool },
    /// Time moves on by this many ms.
    Wait(Millis),
}

fn step() -> impl Strategy<Value = Step> {
    let segments = prop::collection::vec(segment(), 1..6).prop_map(|s| s.concat());
    let chunks = prop::collection::vec(1usize..MAX_CHUNK, 1..8);
    prop_oneof![
        1 => Just(Step::Accept),
        2 => addr().prop_map(Step::Hello),
        8 => (any::<usize>(), segments, chunks)
            .prop_map(|(conn, bytes, chunks)| Step::Feed { conn, bytes, chunks }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(conn, clean)| Step::Close { conn, clean }),
        2 => (0..3 * LIVENESS).prop_map(Step::Wait),
    ]
}

/// An open connection as the driver holds it.
struct Wire {
    conn: ConnId,
    decoder: FrameDecoder,
}

/// Drives one core the way `net` does: decoders per connection, actions carried out,
/// outgoing connects completed (or refused once `refuse` is set), timers fired when due.
struct Harness {
    node: Node,
    now: Millis,
    wires: Vec<Wire>,
    timers: Vec<(Millis, Timer)>,
    refuse: bool,
    /// `register` frames handed to the core, and connections accepted: a seed lists no
    /// more peers than either (a connection registers one address).
    registers: usize,
    accepts: usize,
    next_port: u16,
}

impl Harness {
    fn new(mut node: Node) -> Harness {
        node.start(T0);
        let mut h = Harness {
            node,
            now: T0,
            wires: Vec::new(),
            timers: Vec::new(),
            refuse: false,
            registers: 0,
            accepts: 0,
            next_port: 40_000,
        };
        h.settle();
        h
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Accept => {
                self.next_port = self.next_port.wrapping_add(1);
                let remote = SocketAddr::from(([127, 0, 0, 2], self.next_port));
                let conn = self.node.accept(remote, self.now);
                self.accepts += 1;
                self.wires.push(Wire::new(conn));
            }
            Step::Hello(addr) => {
                self.apply(Step::Accept);
                let mut hello = Vec::new();
                let _ = encode_json(&Message::Hello { addr }, MAX_FRAME, &mut hello);
                let newest = self.wires.len().saturating_sub(1);
                self.feed(newest, &hello, &[hello.len()]);
            }
            Step::Feed {
                conn,
                bytes,
                chunks,
            } => self.feed(conn, &bytes, &chunks),
            Step::Close { conn, clean } => {
                let why = match clean {
                    true => Disconnect::Closed,
                    false => Disconnect::Error("reset".into()),
                };
                self.end(conn, why);
            }
            Step::Wait(ms) => self.wait(ms),
        }
        self.settle();
    }

    fn feed(&mut self, index: usize, bytes: &[u8], sizes: &[usize]) {
        let Some(conn) = self.pick(index) else {
            return;
        };
        let mut rest = bytes;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() || !self.is_open(conn) {
                return;
            }
            let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
            rest = tail;
            self.read(conn, chunk);
        }
    }

    /// One read on `conn`: every complete frame goes to the core, as the driver does.
    fn read(&mut self, conn: ConnId, chunk: &[u8]) {
        if let Some(wire) = self.wires.iter_mut().find(|w| w.conn == conn) {
            wire.decoder.extend(chunk);
            self.read_buffered(conn);
        }
    }

    fn read_buffered(&mut self, conn: ConnId) {
        loop {
            let Some(wire) = self.wires.iter_mut().find(|w| w.conn == conn) else {
                return;
            };
            let body = match wire.decoder.next_frame() {
                Ok(Some(body)) => Message::from_frame(body).map_err(|e| e.to_string()),
                Ok(None) => return self.check_decoder(conn),
                Err(e) => Err(e.to_string()),
            };
            match body {
                Ok(msg) => {
                    self.registers += usize::from(matches!(msg, Message::Register { .. }));
                    self.node.message(conn, msg, self.now);
                    self.settle();
                }
                Err(why) => return self.end_conn(conn, Disconnect::BadFrame(why)),
            }
        }
    }

    fn check_decoder(&self, conn: ConnId) {
        let Some(wire) = self.wires.iter().find(|w| w.conn == conn) else {
            return;
        };
        let held = wire.decoder.buffered();
        assert!(held < HEADER_LEN + MAX_FRAME, "decoder holds {held} bytes");
        let cap = wire.decoder.capacity();
        let bound = IDLE_CAP.max(HEADER_LEN + MAX_FRAME + MAX_CHUNK);
        assert!(cap <= bound, "decoder reserved {cap} bytes");
    }

    fn pick(&self, index: usize) -> Option<ConnId> {
        let n = self.wires.len().max(1);
        self.wires.get(index % n).map(|w| w.conn)
    }

    fn is_open(&self, conn: ConnId) -> bool {
        self.wires.iter().any(|w| w.conn == conn)
    }

    fn end(&mut self, index: usize, why: Disconnect) {
        if let Some(conn) = self.pick(index) {
            self.end_conn(conn, why);
        }
    }

    fn end_conn(&mut self, conn: ConnId, why: Disconnect) {
        self.wires.retain(|w| w.conn != conn);
        self.node.closed(conn, why, self.now);
        self.settle();
    }

    /// Moves time on by `ms`, firing each timer when it comes due.
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

    /// Carries out every queued action; a connect completes at once (or is refused).
    fn settle(&mut self) {
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Connect { conn, .. } if self.refuse => {
                    let why = Disconnect::ConnectFailed("refused".into());
                    self.node.closed(conn, why, self.now);
                }
                Action::Connect { conn, .. } => {
                    self.wires.push(Wire::new(conn));
                    self.node.connected(conn, self.now);
                }
                Action::Close { conn } => self.wires.retain(|w| w.conn != conn),
                Action::SetTimer { at, timer } => {
                    assert!(
                        at > self.now,
                        "{timer:?} set for {at}, not after {}",
                        self.now
                    );
                    self.timers.push((at, timer));
                }
                Action::Send { msg, .. } => assert_sendable(&msg),
                Action::Log(_) => {}
            }
        }
    }

    /// Checks each table a remote can grow against its cap.
    fn check_bounds(&self) {
        let open = self.wires.len();
        match &self.node {
            Node::Peer(p) => {
                let [conns, _, live, candidates, seen] = p.footprint();
                assert!(conns <= open, "{conns} conns, {open} open");
                assert!(live <= conns, "{live} live neighbours, {conns} conns");
                assert!(candidates <= CANDIDATES, "{candidates} candidates");
                assert!(seen <= SEEN_CAP, "{seen} seen-cache origins");
            }
            Node::Seed(s) => {
                let [conns, list, registered] = s.footprint();
                assert!(conns <= open, "{conns} conns, {open} open");
                assert_eq!(list, registered, "list and registrations disagree");
                assert!(
                    list <= self.registers.min(self.accepts),
                    "{list} listed, {} registers on {} connections",
                    self.registers,
                    self.accepts
                );
            }
        }
    }

    /// Every remote goes away and connects fail: after (misses + 2) liveness intervals
    /// and an idle timeout the core holds no connection, neighbour or listed peer.
    fn check_forgets_everyone(&mut self) {
        self.refuse = true;
        while !self.wires.is_empty() {
            self.end(0, Disconnect::Closed);
        }
        for _ in 0..=MISSES + 2 {
            self.wait(LIVENESS);
        }
        self.wait(idle_timeout());
        match &self.node {
            Node::Peer(p) => {
                let [conns, neighbors, ..] = p.footprint();
                assert_eq!((conns, neighbors), (0, 0), "conns and neighbours left");
            }
            Node::Seed(s) => assert_eq!(s.footprint(), [0, 0, 0], "conns, list, registrations"),
        }
    }
}

impl Wire {
    fn new(conn: ConnId) -> Wire {
        let decoder = FrameDecoder::new(MAX_FRAME);
        Wire { conn, decoder }
    }
}

/// A core only sends what the wire format can carry (the driver drops what cannot).
fn assert_sendable(msg: &Message) {
    let mut out = Vec::new();
    let sent = encode_json(msg, usize::MAX >> 1, &mut out);
    assert!(sent.is_ok(), "cannot encode {msg:?}");
}

fn idle_timeout() -> Millis {
    (u64::from(MISSES) + 2) * LIVENESS
}

fn me() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000))
}

fn seed_core(rng: u64) -> Node {
    let cfg = SeedConfig {
        liveness_interval: LIVENESS,
        liveness_misses: MISSES,
        idle_timeout: idle_timeout(),
        peer_list_max: 5,
        ..SeedConfig::new(me())
    };
    Node::Seed(SeedCore::new(cfg, rng))
}

fn peer_core(rng: u64) -> Node {
    let seeds = (1..=3).map(|i| SocketAddr::from(([127, 0, 0, 1], 8000 + i)));
    let cfg = PeerConfig {
        max_neighbors: MAX_NEIGHBORS,
        gossip_interval: 300,
        messages: 5,
        liveness_interval: LIVENESS,
        liveness_misses: MISSES,
        idle_timeout: idle_timeout(),
        seen_ttl: 5 * LIVENESS,
        seen_capacity: SEEN_CAP,
        max_candidates: CANDIDATES,
        ..PeerConfig::new(me(), seeds.collect())
    };
    Node::Peer(PeerCore::new(cfg, rng))
}

fn run(node: Node, steps: Vec<Step>) {
    let mut h = Harness::new(node);
    for step in steps {
        h.apply(step);
        h.check_bounds();
    }
    h.check_forgets_everyone();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_seed_fed_random_frame_streams_never_panics_and_stays_bounded(
        rng in any::<u64>(),
        steps in prop::collection::vec(step(), 1..40),
    ) {
        run(seed_core(rng), steps);
    }

    #[test]
    fn a_peer_fed_random_frame_streams_never_panics_and_stays_bounded(
        rng in any::<u64>(),
        steps in prop::collection::vec(step(), 1..40),
    ) {
        run(peer_core(rng), steps);
    }
}
