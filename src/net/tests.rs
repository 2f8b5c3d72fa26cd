//! The driver with real sockets on 127.0.0.1: failing a node on purpose, and the read
//! budget that keeps one busy connection from holding a turn.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{listener, Driver, NodeState, Sink};
use crate::codec::{encode_json, DEFAULT_MAX_FRAME};
use crate::proto::{Event, Message, Millis, Node, Role, SeedConfig, SeedCore};

/// Counts what the hosted nodes log.
#[derive(Default)]
struct Count(usize);

impl Sink for Count {
    fn event(&mut self, _: Millis, _: usize, _: SocketAddr, _: Role, _: &Event) {
        self.0 += 1;
    }
}

fn seed_driver() -> (Driver<Count>, SocketAddr) {
    let mut d = Driver::new(Count::default(), DEFAULT_MAX_FRAME).unwrap();
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
