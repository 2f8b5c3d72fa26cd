//! `--cluster-key` with real processes on 127.0.0.1: a keyed network delivers every
//! message, and a host without the key (or with another key) is refused by seeds and
//! peers, each refusal logged as one `bad_frame` warning.

use gossipd::auth::ClusterKey;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use crate::daemon::{
    assert_one_bad_frame, assert_one_line_error, closed_by_remote, delivery_report, expected,
    frame, free_port, receipts, registered_peer, utf8, wait_until, Net, Proc, WAIT,
};

/// The reason a keyed node gives for a frame without a good tag.
const REFUSED: &str = "cluster key";

/// Writes a key file into the test's temp dir.
fn key_file(net: &Net, name: &str, key: &str) -> PathBuf {
    let path = net.dir.path().join(name);
    fs::write(&path, format!("{key}\n")).expect("write the key file");
    path
}

fn key_args(path: &std::path::Path) -> [&str; 2] {
    ["--cluster-key", utf8(path)]
}

/// `body` framed and sealed as a keyed node would send it.
fn sealed(key: &ClusterKey, body: &Value) -> Vec<u8> {
    let mut out = frame(body.to_string().as_bytes());
    key.seal(&mut out, 0);
    out
}

/// Reads one sealed frame and checks its tag.
fn read_sealed(s: &mut TcpStream, key: &ClusterKey) -> Value {
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut len = [0; 4];
    s.read_exact(&mut len).expect("a length prefix");
    let mut payload = vec![0; u32::from_be_bytes(len).min(1 << 20) as usize];
    s.read_exact(&mut payload).expect("a payload");
    let body = key.open(&payload).expect("a good tag");
    serde_json::from_slice(body).expect("a JSON body")
}

fn no_bad_frames(p: &Proc) {
    let bad = p.named("bad_frame");
    assert!(bad.is_empty(), "{}: {bad:?}\n{}", p.addr, p.tail());
}

#[test]
fn with_a_cluster_key_two_seeds_and_three_peers_deliver_every_message_exactly_once() {
    let mut net = Net::new();
    let key = key_file(&net, "key", "a shared secret of some length");
    let seeds = [
        net.seed_with(&key_args(&key)),
        net.seed_with(&key_args(&key)),
    ];
    let mut args = vec!["--messages", "5", "--gossip-interval", "1s"];
    args.extend(key_args(&key));
    let peers: Vec<Proc> = (0..3).map(|_| net.peer(&args)).collect();
    let all_in = |p: &Proc| {
        let got = receipts(p);
        expected(p, &peers, 5).iter().all(|k| got.contains_key(k))
    };
    let delivered = wait_until(WAIT, || peers.iter().all(all_in));
    assert!(delivered, "{}", delivery_report(&peers, 5));
    for p in &peers {
        let got = receipts(p);
        assert!(got.values().all(|&n| n == 1), "{} got some twice", p.addr);
        let keys: BTreeSet<_> = got.into_keys().collect();
        assert_eq!(keys, expected(p, &peers, 5), "what {} got", p.addr);
    }
    peers.iter().chain(&seeds).for_each(no_bad_frames);
}

#[test]
fn peers_without_the_key_or_with_another_key_are_refused_by_the_seeds_and_logged() {
    let mut net = Net::new();
    let key = key_file(&net, "key", "a shared secret of some length");
    let other = key_file(&net, "other", "another secret, just as long");
    let seeds = [
        net.seed_with(&key_args(&key)),
        net.seed_with(&key_args(&key)),
    ];
    let mut member_args = vec!["--messages", "0"];
    member_args.extend(key_args(&key));
    let member = registered_peer(&net, &member_args);
    let keyless = net.peer(&["--messages", "0"]);
    let mut foreign_args = vec!["--messages", "0"];
    foreign_args.extend(key_args(&other));
    let foreign = net.peer(&foreign_args);
    // Each outsider's registration is refused by both seeds: one warning per connection.
    for s in &seeds {
        s.wait_for("refused fewer than 2 registrations", || {
            let bad = s.named("bad_frame");
            let refused = bad
                .iter()
                .filter(|e| e["reason"].as_str().is_some_and(|r| r.contains(REFUSED)));
            refused.count() >= 2
        });
    }
    for outsider in [&keyless, &foreign] {
        let listed = |s: &Proc| s.has("peer_registered", "peer", &outsider.addr);
        assert!(!seeds.iter().any(listed), "{} registered", outsider.addr);
        let lists = outsider.named("peer_list_received");
        assert!(lists.is_empty(), "{} got {lists:?}", outsider.addr);
        for s in &seeds {
            outsider.wait_for("never saw a seed close on it", || {
                outsider.has("seed_unreachable", "seed", &s.addr)
            });
        }
    }
    for s in &seeds {
        assert!(s.has("peer_registered", "peer", &member.addr));
    }
    no_bad_frames(&member);
}

#[test]
fn a_keyed_peer_and_seed_refuse_untagged_and_foreign_frames_and_answer_tagged_ones() {
    let mut net = Net::new();
    let path = key_file(&net, "key", "a shared secret of some length");
    let key = ClusterKey::read(&path).expect("the test's key");
    let foreign = ClusterKey::from_bytes(b"another secret, just as long").expect("a key");
    let seed = net.seed_with(&key_args(&path));
    let mut args = vec!["--messages", "0"];
    args.extend(key_args(&path));
    let mut peer = registered_peer(&net, &args);
    let hello = || json!({"type": "hello", "addr": format!("127.0.0.1:{}", free_port())});
    let report =
        json!({"type": "dead_node", "addr": peer.addr, "ts": 1, "reporter": "127.0.0.1:1"});
    let attempts = [
        (&peer, frame(hello().to_string().as_bytes())),
        (&peer, sealed(&foreign, &hello())),
        (&seed, frame(report.to_string().as_bytes())),
        (&seed, sealed(&foreign, &report)),
    ];
    for (node, bytes) in attempts {
        let mut s = TcpStream::connect(&node.addr).expect("connect");
        s.write_all(&bytes).expect("send");
        assert_one_bad_frame(node, &mut s, REFUSED);
    }
    assert!(
        seed.named("dead_node_received").is_empty(),
        "a report got through"
    );
    // With the key, the same hello is answered with the peer's own, tagged.
    let mut s = TcpStream::connect(&peer.addr).expect("connect");
    s.write_all(&sealed(&key, &hello())).expect("send hello");
    assert_eq!(
        read_sealed(&mut s, &key),
        json!({"type": "hello", "addr": peer.addr})
    );
    drop(s);
    assert!(peer.running(), "peer exited\n{}", peer.tail());
    let mut plain = TcpStream::connect(&seed.addr).expect("connect");
    plain
        .write_all(&frame(br#"{"type":"register","addr":"127.0.0.1:1"}"#))
        .expect("send register");
    assert!(
        closed_by_remote(&mut plain),
        "the seed answered a plain register"
    );
}

#[test]
fn a_missing_or_empty_key_file_exits_with_code_2_and_one_line() {
    let net = Net::new();
    let empty = key_file(&net, "empty", "");
    let short = key_file(&net, "short", "tiny");
    let missing = net.dir.path().join("no-such-key");
    for (path, words) in [
        (&empty, "0 bytes"),
        (&short, "4 bytes"),
        (&missing, "cannot read the cluster key"),
    ] {
        for role in ["seed", "peer"] {
            let (status, stderr) = net.exit_of(role, free_port(), &key_args(path));
            assert_eq!(status.code(), Some(2), "{role}: {stderr}");
            assert_one_line_error(&stderr);
            assert!(stderr.contains(words), "{role}: {stderr}");
        }
    }
}
