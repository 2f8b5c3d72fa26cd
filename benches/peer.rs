//! The peer core's cost per gossip frame, on a peer with 4 neighbours: a first receipt
//! (logged and forwarded to the 3 others), a duplicate absorbed through `Node::deliver`,
//! and the whole receive path from frame bytes to queued forwards (with its JSON parse
//! alone beside it, to split the cost), and a new origin reaching a full seen-cache.
//!
//! The peer is set up through the public API only, as a driver would: start, the seeds
//! answer, the neighbour dials succeed. Every benchmark drains the actions it causes, so
//! the queue stays empty and its cost is counted.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gossipd::codec::{encode_json, FrameDecoder, DEFAULT_MAX_FRAME, HEADER_LEN};
use gossipd::proto::message::gossip_text;
use gossipd::proto::seen::SeenCache;
use gossipd::proto::{Action, ConnId, Gossip, Message, Millis, Node, PeerConfig, PeerCore};

/// A fixed virtual time: nothing here depends on the clock moving.
const NOW: Millis = 1_763_700_000_000;
/// Originators cycled through, as in a swarm with 100 of them.
const ORIGINS: u64 = 100;
const NEIGHBORS: u16 = 4;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Runs every queued action (here: drops it) and returns how many there were.
fn drain(node: &mut Node) -> usize {
    let mut n = 0;
    while let Some(action) = node.poll_action() {
        black_box(&action);
        n += 1;
    }
    n
}

/// Drains the queue and returns the connections the core asked to open.
fn dials(node: &mut Node) -> Vec<ConnId> {
    std::iter::from_fn(|| node.poll_action())
        .filter_map(|a| match a {
            Action::Connect { conn, .. } => Some(conn),
            _ => None,
        })
        .collect()
}

fn stats(node: &Node) -> gossipd::proto::peer::PeerStats {
    match node {
        Node::Peer(p) => p.stats(),
        Node::Seed(_) => unreachable!("the bench only builds peers"),
    }
}

/// A peer registered with 2 of its 3 seeds and connected to 4 neighbours; returns it and
/// the connections to its neighbours.
fn connected_peer() -> (Node, Vec<ConnId>) {
    let seeds: Vec<SocketAddr> = (1..=3).map(|i| addr(9000 + i)).collect();
    let neighbours: Vec<SocketAddr> = (1..=NEIGHBORS).map(|i| addr(9100 + i)).collect();
    let mut node = Node::Peer(PeerCore::new(PeerConfig::new(addr(9100), seeds), 1));
    node.start(NOW);
    let seed_conns = dials(&mut node);
    assert_eq!(seed_conns.len(), 2, "a majority of 3 seeds");
    let mut neighbour_conns = Vec::new();
    for conn in seed_conns {
        node.connected(conn, NOW);
        let peers = neighbours.clone();
        node.message(conn, Message::PeerList { peers }, NOW);
        neighbour_conns.extend(dials(&mut node));
    }
    for &conn in &neighbour_conns {
        node.connected(conn, NOW);
    }
    drain(&mut node);
    let Node::Peer(p) = &node else {
        unreachable!("built as a peer")
    };
    assert_eq!(p.connected_neighbors().count(), usize::from(NEIGHBORS));
    (node, neighbour_conns)
}

/// The `i`th distinct gossip message, as its originator created it.
fn gossip(i: u64) -> Gossip {
    let port = u16::try_from(10_000 + i % ORIGINS).expect("origin port fits");
    let origin = addr(port);
    let seq = i / ORIGINS + 1;
    Gossip {
        origin,
        seq,
        ts: NOW,
        text: gossip_text(NOW, origin, seq),
        hops: 1,
        payload: None,
    }
}

fn encoded(msg: &Message) -> Vec<u8> {
    let mut wire = Vec::with_capacity(160);
    encode_json(msg, DEFAULT_MAX_FRAME, &mut wire).expect("gossip frame fits");
    wire
}

/// First receipt through `message`: one log action and 3 forwards, drained.
fn bench_first_receipt(c: &mut Criterion) {
    let (mut node, conns) = connected_peer();
    let from = conns[0];
    node.message(from, Message::Gossip(gossip(0)), NOW);
    assert_eq!(drain(&mut node), 4, "a log line and 3 forwards");

    let mut group = c.benchmark_group("peer");
    group.throughput(Throughput::Elements(1));
    let mut next = 1;
    group.bench_function("first_receipt", |b| {
        b.iter_batched(
            || {
                next += 1;
                Message::Gossip(gossip(next))
            },
            |msg| {
                node.message(from, msg, NOW);
                drain(&mut node)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    let s = stats(&node);
    assert_eq!(s.gossip_first_receipts, s.gossip_frames_received);
}

/// Duplicates: the same shared frame offered again by the other neighbours.
fn bench_duplicate(c: &mut Criterion) {
    let (mut node, conns) = connected_peer();
    let msg = Arc::new(Message::Gossip(gossip(0)));
    node.deliver(conns[0], &msg, NOW);
    assert_eq!(drain(&mut node), 4, "a log line and 3 forwards");
    node.deliver(conns[1], &msg, NOW);
    assert_eq!(drain(&mut node), 0, "a duplicate causes no action");

    let mut group = c.benchmark_group("peer");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("duplicate_deliver", |b| {
        b.iter(|| {
            i += 1;
            let conn = conns[1 + i % 3];
            node.deliver(conn, black_box(&msg), NOW);
        })
    });
    group.finish();
    assert_eq!(drain(&mut node), 0);
    assert_eq!(stats(&node).gossip_first_receipts, 1);
}

/// First receipt through `deliver`, as the simulator hands over shared frames: the
/// duplicate check misses, so the message is cloned and handled in full.
fn bench_first_receipt_deliver(c: &mut Criterion) {
    let (mut node, conns) = connected_peer();
    let from = conns[0];
    let mut group = c.benchmark_group("peer");
    group.throughput(Throughput::Elements(1));
    let mut next = 0;
    group.bench_function("first_receipt_deliver", |b| {
        b.iter_batched(
            || {
                next += 1;
                Arc::new(Message::Gossip(gossip(next)))
            },
            |msg| {
                node.deliver(from, &msg, NOW);
                drain(&mut node);
                msg
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    let s = stats(&node);
    assert_eq!(s.gossip_first_receipts, s.gossip_frames_received);
}

/// The receive path of the network shell for one frame: bytes into the connection's
/// decoder, the body cut out and parsed, the message handled, the actions drained.
fn bench_receive_path(c: &mut Criterion) {
    let (mut node, conns) = connected_peer();
    let from = conns[0];
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut group = c.benchmark_group("peer");
    group.throughput(Throughput::Elements(1));
    let mut next = 0;
    group.bench_function("receive_path_first_receipt", |b| {
        b.iter_batched(
            || {
                next += 1;
                encoded(&Message::Gossip(gossip(next)))
            },
            |wire| {
                decoder.extend(&wire);
                while let Some(body) = decoder.next_frame().expect("well framed") {
                    let msg = Message::from_frame(body).expect("valid gossip");
                    node.message(from, msg, NOW);
                    drain(&mut node);
                }
                wire
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    let s = stats(&node);
    assert_eq!(s.gossip_first_receipts, s.gossip_frames_received);
}

/// The parse step of the receive path alone, to split its cost from the core's.
fn bench_parse(c: &mut Criterion) {
    let wire = encoded(&Message::Gossip(gossip(0)));
    let body = wire.get(HEADER_LEN..).expect("a whole frame");
    let mut group = c.benchmark_group("peer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_gossip_frame", |b| {
        b.iter(|| Message::from_frame(black_box(body)).expect("valid gossip"))
    });
    group.finish();
}

/// A new origin when the seen-cache is full (100,000 origins, the peer's default cap): the
/// window that expires first makes room. A neighbour sending gossip under ever new
/// origins makes every frame do this.
fn bench_seen_new_origin_at_capacity(c: &mut Criterion) {
    const CAP: u32 = 100_000;
    let origin = |n: u32| SocketAddr::from((n.to_be_bytes(), 9000));
    let mut seen = SeenCache::new(10 * 60_000, CAP as usize);
    for n in 0..CAP {
        seen.first_sight((origin(n), 1), NOW, NOW);
    }
    let mut group = c.benchmark_group("peer");
    group.throughput(Throughput::Elements(1));
    let mut next = CAP;
    group.bench_function("seen_new_origin_at_capacity", |b| {
        b.iter(|| {
            next += 1;
            seen.first_sight((origin(next), 1), NOW, NOW)
        })
    });
    group.finish();
    assert_eq!(seen.len(), CAP as usize);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_first_receipt, bench_duplicate, bench_first_receipt_deliver, bench_receive_path, bench_parse,
        bench_seen_new_origin_at_capacity
}
criterion_main!(benches);
