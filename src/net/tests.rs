//! The driver with real sockets on 127.0.0.1: failing a node on purpose, the read
//! budget that keeps one busy connection from holding a turn, and cluster-key framing.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{listener, Driver, NodeState, Sink};
use crate::auth::ClusterKey;
use crate::codec::{encode_json, DEFAULT_MAX_FRAME, HEADER_LEN};
use crate::proto::{Event, Message, Millis, Node, Role, SeedConfig, SeedCore};

/// The names of the events the hosted nodes log.
#[derive(Default)]
struct Count(Vec<&'static str>);

impl Sink for Count {
    fn event(&mut self, _: Millis, _: usize, _: SocketAddr, _: Role, e: &Event) {
        self.0.push(e.name());
    }
}

fn seed_driver() -> (Driver<Count>, SocketAddr) {
    seed_driver_with(None)
}

fn seed_driver_with(key: Option<ClusterKey>) -> (Driver<Count>, SocketAddr) {
    let mut d = Driver::new(Count::default(), DEFAULT_MAX_FRAME).unwrap();
    if let Some(key) = key {
        d.set_cluster_key(key);
    }
    let l = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = l.local_addr().unwrap();
    d.add(Node::Seed(SeedCore::new(SeedConfig::new(addr), 1)), l)
        .unwrap();
    (d, addr)
}

/// Turns the loop until `cond` holds or 10 s pass.
fn turn_until(d: &mut Driver<Count>, mut cond: impl FnMut(&Driver<Count>) -> bool) -> bool {
    let mut events = mio::Events::with_capacity(64);
    let end = Instant::now() + Duration::from_secs(10);
    while !cond(d) {
        if Instant::now() >= end {
            return false;
        }
        d.turn(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
    }
    true
}

fn liveness_requests(n: usize) -> Vec<u8> {
    let req = Message::LivenessRequest {
        ts: 1,
        from: SocketAddr::from(([127, 0, 0, 1], 9)),
    };
    let mut out = Vec::new();
    for _ in 0..n {
        encode_json(&req, DEFAULT_MAX_FRAME, &mut out).unwrap();
    }
    out
}

#[test]
fn a_killed_node_resets_its_connections_and_refuses_new_ones() {
    let (mut d, addr) = seed_driver();
    let mut client = TcpStream::connect(addr).unwrap();
    assert!(
        turn_until(&mut d, |d| d.socket_count() == 2),
        "never accepted"
    );
    assert!(d.kill(0));
    assert_eq!(d.state(0), Some(NodeState::Killed));
    assert_eq!(d.socket_count(), 0);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let err = client.read(&mut [0; 16]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let refused = TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    assert!(!d.kill(0), "a node dies once");
}

#[test]
fn a_frozen_node_answers_nothing_but_keeps_its_sockets_open() {
    let (mut d, addr) = seed_driver();
    let mut client = TcpStream::connect(addr).unwrap();
    assert!(
        turn_until(&mut d, |d| d.socket_count() == 2),
        "never accepted"
    );
    assert!(d.freeze(0));
    client.write_all(&liveness_requests(1)).unwrap();
    let until = Instant::now() + Duration::from_millis(300);
    assert!(turn_until(&mut d, |_| Instant::now() >= until));
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let err = client.read(&mut [0; 16]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert_eq!(d.stats.frames_received, 0);
    // The kernel still completes connects to it (its backlog fills instead).
    assert!(TcpStream::connect(addr).is_ok());
    assert_eq!(d.socket_count(), 2);
}

#[test]
fn a_busy_connection_is_read_a_budget_at_a_time_and_fully_answered() {
    let (mut d, addr) = seed_driver();
    let mut client = TcpStream::connect(addr).unwrap();
    let frames = 20_000;
    let bytes = liveness_requests(frames);
    let writer = std::thread::spawn(move || {
        client.write_all(&bytes).unwrap();
        client
    });
    assert!(turn_until(&mut d, |d| d.stats.frames_received > 0));
    assert!(
        d.stats.frames_received < frames as u64,
        "one turn took every frame"
    );
    assert!(turn_until(&mut d, |d| d.stats.frames_received == frames as u64));
    assert!(d.stats.turns_over_budget > 0);
    assert_eq!(d.stats.frames_sent, frames as u64, "every request answered");
    drop(writer.join());
}

#[test]
fn fresh_input_is_answered_before_the_backlog_of_busy_connections() {
    let (mut d, addr) = seed_driver();
    let (busy, per_client) = (100, 3_000);
    let writers: Vec<_> = (0..busy)
        .map(|_| {
            let mut client = TcpStream::connect(addr).unwrap();
            let bytes = liveness_requests(per_client);
            std::thread::spawn(move || {
                client.write_all(&bytes).unwrap();
                client
            })
        })
        .collect();
    assert!(
        turn_until(&mut d, |d| d.unread.len() >= busy / 2),
        "the busy connections never formed a backlog"
    );
    let mut quiet = TcpStream::connect(addr).unwrap();
    quiet.write_all(&liveness_requests(1)).unwrap();
    quiet.set_nonblocking(true).unwrap();
    let mut events = mio::Events::with_capacity(64);
    let end = Instant::now() + Duration::from_secs(10);
    let answered_after = loop {
        assert!(
            Instant::now() < end,
            "the quiet connection was never answered"
        );
        d.turn(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        if quiet.read(&mut [0; 64]).is_ok_and(|n| n > 0) {
            break d.stats.frames_received;
        }
    };
    let total = (busy * per_client) as u64 + 1;
    assert!(
        answered_after < total / 2,
        "answered only after {answered_after} of {total} frames: it waited behind the backlog"
    );
    assert!(turn_until(&mut d, |d| d.stats.frames_received == total));
    for w in writers {
        drop(w.join());
    }
}

fn cluster_key(b: u8) -> ClusterKey {
    ClusterKey::from_bytes(&[b; 32]).unwrap()
}

fn sealed(key: &ClusterKey, plain: Vec<u8>) -> Vec<u8> {
    let mut out = plain;
    key.seal(&mut out, 0);
    out
}

/// Reads one frame from a blocking client socket: its length prefix and payload.
fn read_payload(client: &mut TcpStream) -> (u32, Vec<u8>) {
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut header = [0; HEADER_LEN];
    client.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes(header);
    let mut payload = vec![0; len as usize];
    client.read_exact(&mut payload).unwrap();
    (len, payload)
}

#[test]
fn a_keyed_node_answers_a_sealed_request_with_a_sealed_reply() {
    let key = cluster_key(7);
    let (mut d, addr) = seed_driver_with(Some(key.clone()));
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .write_all(&sealed(&key, liveness_requests(1)))
        .unwrap();
    assert!(turn_until(&mut d, |d| d.stats.write_calls > 0), "no reply");
    let (len, payload) = read_payload(&mut client);
    assert_eq!(len as usize, payload.len());
    let body = key.open(&payload).expect("the reply carries a good tag");
    let reply = Message::from_frame(body).unwrap();
    assert!(
        matches!(reply, Message::LivenessReply { ts: 1, .. }),
        "{reply:?}"
    );
    assert!(
        cluster_key(8).open(&payload).is_err(),
        "another key opens it"
    );
    assert!(d.sink.0.iter().all(|&e| e != "bad_frame"), "{:?}", d.sink.0);
}

#[test]
fn a_keyed_node_closes_connections_whose_frames_are_untagged_or_tagged_with_another_key() {
    let (mut d, addr) = seed_driver_with(Some(cluster_key(7)));
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.write_all(&liveness_requests(1)).unwrap();
    let mut other = TcpStream::connect(addr).unwrap();
    other
        .write_all(&sealed(&cluster_key(9), liveness_requests(1)))
        .unwrap();
    let bad = |d: &Driver<Count>| d.sink.0.iter().filter(|&&e| e == "bad_frame").count();
    assert!(turn_until(&mut d, |d| bad(d) == 2), "{:?}", d.sink.0);
    assert!(turn_until(&mut d, |d| d.socket_count() == 1));
    for mut s in [plain, other] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(s.read(&mut [0; 64]).unwrap(), 0, "answered or left open");
    }
    assert_eq!(d.stats.frames_received, 0);
    assert_eq!(d.stats.frames_sent, 0);
}

#[test]
fn without_a_key_frames_are_sent_exactly_as_before() {
    let (mut d, addr) = seed_driver();
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(&liveness_requests(1)).unwrap();
    assert!(turn_until(&mut d, |d| d.stats.write_calls > 0), "no reply");
    let (_, payload) = read_payload(&mut client);
    let reply = Message::from_frame(&payload).expect("a plain JSON body, no tag");
    let mut expected = Vec::new();
    encode_json(&reply, DEFAULT_MAX_FRAME, &mut expected).unwrap();
    assert_eq!(expected.get(HEADER_LEN..), Some(payload.as_slice()));
}

/// A peer hosted alone, its seed unreachable; its listening address.
fn peer_driver() -> (Driver<Count>, SocketAddr) {
    let mut d = Driver::new(Count::default(), DEFAULT_MAX_FRAME).unwrap();
    let l = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = l.local_addr().unwrap();
    let seed = SocketAddr::from(([127, 0, 0, 1], 1));
    let core = crate::proto::PeerCore::new(crate::proto::PeerConfig::new(addr, vec![seed]), 1);
    d.add(Node::Peer(core), l).unwrap();
    (d, addr)
}

#[test]
fn a_duplicate_gossip_frame_is_counted_and_dropped_before_its_json_is_parsed() {
    let (mut d, addr) = peer_driver();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let origin = SocketAddr::from(([127, 0, 0, 1], 7));
    let gossip = Message::Gossip(crate::proto::Gossip {
        origin,
        seq: 1,
        ts: now,
        text: "x".into(),
        hops: 1,
        payload: None,
    });
    let hello = Message::Hello {
        addr: SocketAddr::from(([127, 0, 0, 1], 9)),
    };
    let mut first = Vec::new();
    for msg in [&hello, &gossip] {
        encode_json(msg, DEFAULT_MAX_FRAME, &mut first).unwrap();
    }
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(&first).unwrap();
    assert!(turn_until(&mut d, |d| d
        .sink
        .0
        .contains(&"gossip_received")));
    // Frames of one read reach the seen-cache together: the duplicates come in a later one.
    let mut later = Vec::new();
    encode_json(&gossip, DEFAULT_MAX_FRAME, &mut later).unwrap();
    // The same identity, then no valid JSON: only a full parse would see it.
    let cut = format!(r#"{{"type":"gossip","origin":"{origin}","seq":1,"ts":{now},!"#);
    crate::codec::encode_frame(cut.as_bytes(), DEFAULT_MAX_FRAME, &mut later).unwrap();
    client.write_all(&later).unwrap();
    assert!(turn_until(&mut d, |d| d.stats.frames_received >= 4));
    let names = &d.sink.0;
    let count = |name: &str| names.iter().filter(|n| **n == name).count();
    assert_eq!(count("gossip_received"), 1, "{names:?}");
    assert_eq!(count("bad_frame"), 0, "the unparsed duplicate: {names:?}");
    let Some(Node::Peer(p)) = d.node(0) else {
        panic!("no peer hosted");
    };
    assert_eq!(p.stats().gossip_frames_received, 3);
    assert_eq!(p.stats().gossip_first_receipts, 1);
}
