//! Several hosts: seeds and peers in network namespaces of their own, joined by veth
//! pairs to a bridge, so traffic crosses real interfaces between distinct addresses.
//! Needs root and `ip`; the lossy variant also needs `nft`. Where they are missing the
//! tests say so and pass without running. Every namespace is deleted, even on failure.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

use crate::daemon::{read_events, wait_until};

const WAIT: Duration = Duration::from_secs(40);
const HOSTS: [&str; 3] = ["a", "b", "c"];

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn in_ns(ns: &str, cmd: &[&str]) -> bool {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(cmd);
    ip(&args)
}

/// Namespaces `<prefix>a`, `<prefix>b`, `<prefix>c` (hosts 10.77.0.1-3) and a hub
/// `<prefix>h` with a bridge; deleted on drop.
struct Lab {
    prefix: String,
    made: Vec<String>,
}

impl Lab {
    /// None (with the reason printed) where namespaces cannot be made here.
    fn new(tag: &str) -> Option<Lab> {
        let prefix = format!("gd{}{tag}", std::process::id());
        let mut lab = Lab {
            prefix,
            made: Vec::new(),
        };
        if !lab.add_ns("h") {
            eprintln!("skipped: cannot create network namespaces here (needs root and iproute2)");
            return None;
        }
        let hub = lab.ns("h");
        let bridge = in_ns(&hub, &["ip", "link", "add", "br0", "type", "bridge"])
            && in_ns(&hub, &["ip", "link", "set", "br0", "up"]);
        let hosts = HOSTS
            .iter()
            .enumerate()
            .all(|(i, h)| lab.add_host(h, i + 1));
        if bridge && hosts {
            Some(lab)
        } else {
            panic!("namespaces exist but the network could not be set up")
        }
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn add_ns(&mut self, host: &str) -> bool {
        let ns = self.ns(host);
        let ok = ip(&["netns", "add", &ns]);
        if ok {
            self.made.push(ns);
        }
        ok
    }

    /// A host namespace with 10.77.0.<n>/24 on a veth whose other end is on the bridge.
    fn add_host(&mut self, host: &str, n: usize) -> bool {
        let (ns, hub) = (self.ns(host), self.ns("h"));
        let (here, there) = (
            format!("{}v{host}", self.prefix),
            format!("{}p{host}", self.prefix),
        );
        let addr = format!("10.77.0.{n}/24");
        self.add_ns(host)
            && ip(&[
                "link", "add", &here, "netns", &ns, "type", "veth", "peer", "name", &there,
                "netns", &hub,
            ])
            && in_ns(&ns, &["ip", "addr", "add", &addr, "dev", &here])
            && in_ns(&ns, &["ip", "link", "set", &here, "up"])
            && in_ns(&ns, &["ip", "link", "set", "lo", "up"])
            && in_ns(&hub, &["ip", "link", "set", &there, "master", "br0"])
            && in_ns(&hub, &["ip", "link", "set", &there, "up"])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            ip(&["netns", "del", ns]);
        }
    }
}

/// A daemon running inside a namespace; killed (SIGKILL) and reaped on drop.
struct Node {
    child: Child,
    addr: String,
    events: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(ns: &str, role: &str, addr: &str, dir: &Path, extra: &[&str]) -> Node {
    let events = dir.join(format!("{role}-{addr}.jsonl"));
    let logs = dir.join("logs");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_gossipd"),
            role,
            "--listen",
            addr,
        ])
        .args(["--events", events.to_str().unwrap_or_default()])
        .args(["--log-dir", logs.to_str().unwrap_or_default()])
        .args(["--liveness-interval", "300ms"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ip netns exec gossipd");
    Node {
        child,
        addr: addr.to_owned(),
        events,
    }
}

fn events_named(node: &Node, name: &str) -> Vec<Value> {
    let mut all = read_events(&node.events);
    all.retain(|e| e["event"] == name);
    all
}

/// Seeds on hosts a and b; two peers on each of a, b and c; all gossip 3 messages.
fn network(lab: &Lab, dir: &TempDir) -> (Vec<Node>, Vec<Node>) {
    let config = dir.path().join("config.txt");
    std::fs::write(&config, "10.77.0.1:9000\n10.77.0.2:9000\n").expect("write config");
    let seeds: Vec<Node> = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(i, h)| {
            start(
                &lab.ns(h),
                "seed",
                &format!("10.77.0.{}:9000", i + 1),
                dir.path(),
                &[],
            )
        })
        .collect();
    // A seed opens its log file right after it has bound its listener.
    let listening = |s: &Node| {
        let (ip, port) = s.addr.split_once(':').unwrap_or_default();
        dir.path()
            .join("logs")
            .join(format!("seed-{ip}-{port}.log"))
            .exists()
    };
    assert!(
        wait_until(WAIT, || seeds.iter().all(listening)),
        "seeds did not start"
    );
    let peer_flags = [
        "--config",
        config.to_str().unwrap_or_default(),
        "--gossip-interval",
        "1s",
        "--messages",
        "3",
    ];
    let mut peers = Vec::new();
    for (i, h) in HOSTS.iter().enumerate() {
        for port in [9101, 9102] {
            let addr = format!("10.77.0.{}:{port}", i + 1);
            peers.push(start(&lab.ns(h), "peer", &addr, dir.path(), &peer_flags));
        }
    }
    (seeds, peers)
}

/// Every peer got every other peer's 3 messages, each once.
fn all_delivered(peers: &[Node]) -> bool {
    peers.iter().all(|p| {
        let got = events_named(p, "gossip_received");
        let ids: BTreeSet<(String, u64)> = got
            .iter()
            .map(|e| {
                (
                    e["origin"].as_str().unwrap_or_default().to_owned(),
                    e["seq"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        ids.len() == got.len() && ids.len() == (peers.len() - 1) * 3
    })
}

/// For a failure message: each peer's missing or repeated messages, and every event
/// about links, liveness and removals.
fn undelivered(seeds: &[Node], peers: &[Node]) -> String {
    let origins: Vec<&str> = peers.iter().map(|p| p.addr.as_str()).collect();
    let mut out = String::new();
    for p in peers {
        let got = events_named(p, "gossip_received");
        for origin in origins.iter().filter(|o| **o != p.addr) {
            for seq in 1..=3u64 {
                let n = got
                    .iter()
                    .filter(|e| e["origin"] == *origin && e["seq"] == seq)
                    .count();
                if n != 1 {
                    out += &format!("{} got {origin}#{seq} {n} times\n", p.addr);
                }
            }
        }
    }
    let watched = [
        "neighbor_connected",
        "neighbor_lost",
        "connect_failed",
        "liveness_miss",
        "dead_node_reported",
        "peer_removed",
        "send_queue_full",
    ];
    for node in seeds.iter().chain(peers) {
        for e in read_events(&node.events) {
            if watched.iter().any(|w| e["event"] == *w) {
                out += &format!("{e}\n");
            }
        }
    }
    out
}

#[test]
fn peers_on_three_hosts_deliver_every_message_and_a_dead_peer_is_removed_by_both_seeds() {
    let Some(lab) = Lab::new("d") else { return };
    let dir = TempDir::new().expect("temp dir");
    let (seeds, mut peers) = network(&lab, &dir);
    assert!(
        wait_until(WAIT, || all_delivered(&peers)),
        "not every message reached every peer"
    );
    let victim = peers.pop().expect("a peer on host c");
    let dead = victim.addr.clone();
    drop(victim);
    let removed = wait_until(WAIT, || {
        seeds.iter().all(|s| {
            events_named(s, "peer_removed")
                .iter()
                .any(|e| e["addr"] == dead.as_str())
        })
    });
    assert!(removed, "both seeds remove {dead}");
}

#[test]
fn delivery_is_complete_when_a_tenth_of_the_packets_between_two_hosts_are_dropped() {
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("skipped: nft (nftables) is not installed");
        return;
    }
    let Some(lab) = Lab::new("l") else { return };
    let dir = TempDir::new().expect("temp dir");
    // Drop a tenth of the packets host b receives from host c, and count them.
    let script = dir.path().join("loss.nft");
    let rules = "add table inet gdloss\n\
        add chain inet gdloss input { type filter hook input priority 0 ; }\n\
        add rule inet gdloss input ip saddr 10.77.0.3 numgen random mod 10 == 0 counter drop\n";
    std::fs::write(&script, rules).expect("write the nft script");
    let script = script.to_str().unwrap_or_default();
    assert!(
        in_ns(&lab.ns("b"), &["nft", "-f", script]),
        "install the drop rule on host b"
    );
    let (seeds, peers) = network(&lab, &dir);
    if !wait_until(WAIT, || all_delivered(&peers)) {
        let kept = dir.keep();
        panic!(
            "a lossy link lost a message; events kept in {}\n{}",
            kept.display(),
            undelivered(&seeds, &peers)
        );
    }
    let dropped = dropped_packets(&lab.ns("b"));
    assert!(
        dropped > 0,
        "the rule dropped nothing, so the test proved nothing"
    );
    eprintln!("nftables dropped {dropped} packets from host c to host b");
}

/// Packets the `gdloss` rule in `ns` has dropped so far.
fn dropped_packets(ns: &str) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "list", "table", "inet", "gdloss",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let after = out.split("counter packets ").nth(1).unwrap_or_default();
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
