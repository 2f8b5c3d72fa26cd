//! Resource limits with real processes on 127.0.0.1: the connection cap under a flood of
//! connects, running out of file descriptors, and a neighbour that never reads.

use serde_json::Value;
use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::daemon::{
    assert_peer_still_answers, frame, free_port, receipts, utf8, wait_until, Net, Proc, LIVENESS,
    WAIT,
};

/// Whether every peer has every other peer's `messages` messages.
fn all_delivered(peers: &[&Proc], messages: u64) -> bool {
    peers.iter().all(|p| {
        let got = receipts(p);
        let want = peers
            .iter()
            .filter(|o| o.addr != p.addr)
            .flat_map(|o| (1..=messages).map(|seq| (o.addr.clone(), seq)));
        want.into_iter().all(|k| got.contains_key(&k))
    })
}

/// Waits until `p` has logged a neighbour connection with each of `others`.
fn wait_neighbours(p: &Proc, others: &[&Proc]) {
    for o in others {
        p.wait_for(&format!("never connected to {}", o.addr), || {
            p.has("neighbor_connected", "addr", &o.addr)
        });
    }
}

fn count_of(e: &Value) -> u64 {
    e["count"].as_u64().unwrap_or_default()
}

#[test]
fn five_thousand_connects_at_a_capped_peer_are_refused_with_few_warnings_and_gossip_flows() {
    let mut net = Net::new();
    let _seed = net.seed();
    let gossip = ["--messages", "10", "--gossip-interval", "500ms"];
    let mut capped_args = vec!["--max-connections", "50"];
    capped_args.extend(gossip);
    let mut capped = net.peer(&capped_args);
    let others = [net.peer(&gossip), net.peer(&gossip)];
    wait_neighbours(&capped, &others.iter().collect::<Vec<_>>());
    // All at once: held open until every connect returned (5,000 of the test
    // process's 20,000 descriptors).
    let flood: Vec<TcpStream> = (0..5_000)
        .filter_map(|_| TcpStream::connect(&capped.addr).ok())
        .collect();
    let connected = flood.len() as u64;
    assert!(connected > 4_000, "only {connected} connects succeeded");
    let refused = || capped.named("connections_refused");
    let total = || refused().iter().map(count_of).sum::<u64>();
    // The peer holds at most 50 connections, so at least this many were closed at once.
    let at_least = connected - 50;
    capped.wait_for("refused too few", || total() >= at_least);
    drop(flood);
    let lines = refused().len();
    eprintln!(
        "{connected} connects: {} refused in {lines} warnings",
        total()
    );
    assert!(lines <= 30, "{lines} warnings for one burst");
    let peers = [&capped, &others[0], &others[1]];
    let delivered = wait_until(WAIT, || all_delivered(&peers, 10));
    assert!(delivered, "{}", report(&peers, 10));
    assert_peer_still_answers(&mut capped);
}

/// Who lacks what, for a failure message.
fn report(peers: &[&Proc], messages: u64) -> String {
    let mut out = String::new();
    for p in peers {
        let got = receipts(p);
        let missing = peers
            .iter()
            .filter(|o| o.addr != p.addr)
            .flat_map(|o| (1..=messages).map(|seq| (o.addr.clone(), seq)))
            .filter(|k| !got.contains_key(k))
            .count();
        out += &format!("{} lacks {missing}\n{}\n", p.addr, p.tail());
    }
    out
}

/// User plus system CPU time of a process, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum()
}

fn prlimit_works() -> bool {
    Command::new("prlimit")
        .args(["--nofile=64:64", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_peer_out_of_file_descriptors_pauses_accepting_without_spinning_and_resumes() {
    if !prlimit_works() {
        eprintln!("SKIPPED: the prlimit binary (util-linux) is not available or not allowed here");
        return;
    }
    let mut net = Net::new();
    let _seed = net.seed();
    let config = net.config();
    let mut args = vec!["--config", utf8(&config), "--messages", "0"];
    args.extend(LIVENESS);
    // Silent connections would otherwise be closed (freeing descriptors) within 1.5 s.
    args.extend(["--idle-timeout", "60s"]);
    let limit = ["prlimit", "--nofile=32:32", "--"];
    let mut peer = net.spawn_under(&limit, "peer", free_port(), &args);
    peer.wait_for("never registered", || {
        !peer.named("peer_list_received").is_empty()
    });
    // More connections than descriptors left: the kernel completes them all (backlog).
    let held: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(&peer.addr).ok())
        .collect();
    assert_eq!(held.len(), 40);
    peer.wait_for("never paused accepting", || {
        !peer.named("accept_paused").is_empty()
    });
    let pid = peer.child.id();
    let (before, began) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (used, spent) = (cpu_ticks(pid) - before, began.elapsed());
    eprintln!("paused peer used {used} ticks of CPU in {spent:?}");
    // A loop retrying accept at once would burn about one full CPU second a second.
    assert!(used < 50, "{used} ticks in {spent:?}: accepting spins");
    assert_eq!(
        peer.named("accept_paused").len(),
        1,
        "logged more than once"
    );
    assert!(
        peer.named("accept_resumed").is_empty(),
        "resumed while exhausted"
    );
    drop(held);
    peer.wait_for("never resumed accepting", || {
        !peer.named("accept_resumed").is_empty()
    });
    assert_peer_still_answers(&mut peer);
    // Draining the backlog of connections the test closed can run out once more (each
    // accepted before it is read): a new episode, still one line, not one per connection.
    let paused = peer.named("accept_paused").len();
    assert!(paused <= 3, "{paused} pauses for 40 connections");
}

/// Resident memory of a process in KiB (VmRSS), 0 once it is gone.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:"));
    let kib = line.and_then(|l| l.split_whitespace().nth(1));
    kib.and_then(|n| n.parse().ok()).unwrap_or_default()
}

/// A peer on a long liveness interval, so only its send-queue bound can drop the client
/// that never reads.
fn patient_peer(net: &Net) -> Proc {
    let config = net.config();
    let args = [
        "--config",
        utf8(&config),
        "--messages",
        "0",
        "--liveness-interval",
        "10s",
    ];
    net.spawn("peer", free_port(), &args)
}

/// Connects with a 4 KiB receive buffer, says hello as `addr`, and never reads.
fn stuck_neighbour(peer: &str, addr: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let to: std::net::SocketAddr = peer.parse().expect("peer address");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    socket.connect(&to.into()).expect("connect to the peer");
    let mut s: TcpStream = socket.into();
    let hello = serde_json::json!({"type": "hello", "addr": addr});
    s.write_all(&frame(hello.to_string().as_bytes()))
        .expect("send hello");
    s
}

/// Sends `n` gossip messages of `origin` with a 1 KiB payload, as a neighbour would.
fn inject_gossip(peer: &str, origin: &str, n: u64) -> std::thread::JoinHandle<TcpStream> {
    let mut s = TcpStream::connect(peer).expect("connect to the peer");
    let origin = origin.to_owned();
    std::thread::spawn(move || {
        let hello = serde_json::json!({"type": "hello", "addr": origin});
        let mut bytes = frame(hello.to_string().as_bytes());
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as u64;
        let payload = "x".repeat(1024);
        for seq in 1..=n {
            let text = format!("{ts}:{origin}:{seq}");
            let g = serde_json::json!({"type": "gossip", "origin": origin, "seq": seq,
                "ts": ts, "text": text, "hops": 1, "payload": payload});
            bytes.extend(frame(g.to_string().as_bytes()));
        }
        s.write_all(&bytes).expect("send gossip");
        s
    })
}

#[test]
fn a_neighbour_that_never_reads_is_dropped_with_memory_bounded_and_the_others_get_everything() {
    const MESSAGES: u64 = 10_000;
    const RSS_BOUND_KIB: u64 = 64 * 1024;
    let mut net = Net::new();
    let _seed = net.seed();
    let hub = patient_peer(&net);
    hub.wait_for("never registered", || {
        !hub.named("peer_list_received").is_empty()
    });
    let others = [patient_peer(&net), patient_peer(&net)];
    wait_neighbours(&hub, &others.iter().collect::<Vec<_>>());
    let stuck_addr = format!("127.0.0.1:{}", free_port());
    let stuck = stuck_neighbour(&hub.addr, &stuck_addr);
    hub.wait_for("never took the stuck client", || {
        hub.has("neighbor_connected", "addr", &stuck_addr)
    });
    let origin = format!("127.0.0.1:{}", free_port());
    let injector = inject_gossip(&hub.addr, &origin, MESSAGES);
    let pid = hub.child.id();
    let got_all = |p: &Proc| {
        let got = receipts(p);
        (1..=MESSAGES).all(|seq| got.contains_key(&(origin.clone(), seq)))
    };
    let (mut peak, end) = (0, Instant::now() + 4 * WAIT);
    while !others.iter().all(got_all) && Instant::now() < end {
        for _ in 0..50 {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _injector = injector.join().expect("injector");
    eprintln!(
        "hub peak RSS (sampled every 10 ms) {peak} KiB while {MESSAGES} messages of 1 KiB flowed"
    );
    for p in &others {
        let n = receipts(p).keys().filter(|(o, _)| *o == origin).count();
        assert_eq!(n as u64, MESSAGES, "{} got {n}\n{}", p.addr, p.tail());
    }
    assert!(peak > 0 && peak < RSS_BOUND_KIB, "hub peak RSS {peak} KiB");
    let remote = stuck.local_addr().expect("local address").to_string();
    hub.wait_for("kept the client that never reads", || {
        hub.has("send_queue_full", "remote", &remote)
    });
    hub.wait_for("never logged the stuck neighbour lost", || {
        hub.has("neighbor_lost", "addr", &stuck_addr)
    });
    drop(stuck);
}
