//! Hostile and broken input against real `gossipd seed` and `gossipd peer` processes on
//! 127.0.0.1. Every row of the table goes to each node kind on a connection of its own
//! and must end as the row says: one warning naming the remote and that connection
//! closed, or, where the message is valid, accepted without a warning. After each row the
//! node must still answer a well-formed client.

use serde_json::{json, Value};
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::daemon::{frame, free_port, read_frame, registered_peer, Net, Proc, WAIT};

/// Both nodes run with a 2 MiB frame limit, so a 1 MiB string fits in a frame.
const MAX_FRAME: u32 = 2 << 20;
/// A short idle timeout, so a connection left silent mid-frame is freed quickly.
const IDLE_TIMEOUT: &str = "2s";
/// A fake log line hidden in a frame; no line of a node's log may start with it.
const FORGED_LINE: &str = "1999-01-01 00:00:00.000 INFO  Dead Node:127.0.0.1:9:1:127.0.0.1:9";

/// Which kind of node a row is sent to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Seed,
    Peer,
}

/// How the client leaves the connection after sending the row's bytes.
enum End {
    /// Keeps it open and silent.
    Hold,
    /// Shuts down its sending side (the node sees end of stream).
    HalfClose,
}

/// What the node must do with a row.
enum Expect {
    /// One warning naming the remote, with this in its reason; the connection closed.
    Rejected(&'static str),
    /// No warning; the node answers with a frame of this `type`.
    Reply(&'static str),
    /// No warning; the node logs the receipt of this gossip (origin, seq).
    Received(String, u64),
}

struct Row {
    name: &'static str,
    /// Say hello first (as a fresh address), so the connection is a peer's neighbour.
    hello_first: bool,
    bytes: Vec<u8>,
    end: End,
    expect: Expect,
}

impl Row {
    fn new(name: &'static str, bytes: Vec<u8>, expect: Expect) -> Row {
        let (hello_first, end) = (false, End::Hold);
        Row {
            name,
            hello_first,
            bytes,
            end,
            expect,
        }
    }

    fn after_hello(self) -> Row {
        Row {
            hello_first: true,
            ..self
        }
    }
}

fn json_frame(v: &Value) -> Vec<u8> {
    frame(v.to_string().as_bytes())
}

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A fresh address nobody listens on, outside 127.0.0.1 so no connection's own
/// address can ever equal it.
fn fake_addr() -> String {
    format!("127.0.0.2:{}", free_port())
}

/// `n` bytes from a fixed xorshift sequence: the same "random" frame every run.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut step = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x.to_le_bytes()[0]
    };
    (0..n).map(|_| step()).collect()
}

fn gossip(origin: &str, seq: u64, text: &str) -> Vec<u8> {
    let ts = now_ms();
    json_frame(
        &json!({"type": "gossip", "origin": origin, "seq": seq, "ts": ts,
        "text": text, "hops": 1}),
    )
}

/// Rows that both node kinds reject the same way.
fn common_rows() -> Vec<Row> {
    use Expect::Rejected;
    let random = random_bytes(256);
    assert!(
        serde_json::from_slice::<Value>(&random).is_err(),
        "valid JSON"
    );
    let deep = format!(
        r#"{{"type":"liveness_request","ts":1,"from":"127.0.0.1:1","x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let forged_line = format!("x\n{FORGED_LINE}");
    let cut = [&100u32.to_be_bytes()[..], br#"{"type":"liv"#].concat();
    vec![
        Row::new("length prefix 0", vec![0; 4], Rejected("empty frame")),
        Row::new(
            "length over --max-frame",
            (MAX_FRAME + 1).to_be_bytes().to_vec(),
            Rejected("exceeds the maximum"),
        ),
        Row::new(
            "length 4 GiB",
            vec![0xFF; 4],
            Rejected("exceeds the maximum"),
        ),
        Row::new("random bytes", frame(&random), Rejected("not JSON")),
        Row::new(
            "invalid UTF-8",
            frame(b"{\"type\":\"liveness_request\",\"ts\":1,\"from\":\"127.0.0.1:1\xff\"}"),
            Rejected("not JSON"),
        ),
        Row::new(
            "JSON array",
            frame(b"[1,2,3]"),
            Rejected("not a valid message"),
        ),
        Row::new(
            "JSON array led by a type name",
            frame(br#"["liveness_request",1,"127.0.0.1:1"]"#),
            Rejected("not a valid message"),
        ),
        Row::new("JSON number", frame(b"42"), Rejected("not a valid message")),
        Row::new(
            "no type",
            frame(br#"{"ts":1,"from":"127.0.0.1:1"}"#),
            Rejected("missing field `type`"),
        ),
        Row::new(
            "unknown type",
            frame(br#"{"type":"nope"}"#),
            Rejected("unknown variant"),
        ),
        Row::new(
            "unknown type hiding a log line",
            json_frame(&json!({"type": forged_line})),
            Rejected("unknown variant"),
        ),
        Row::new(
            "field of the wrong type",
            frame(br#"{"type":"liveness_request","ts":"soon","from":"127.0.0.1:1"}"#),
            Rejected("invalid type"),
        ),
        Row::new(
            "missing field",
            frame(br#"{"type":"liveness_request","ts":1}"#),
            Rejected("missing field `from`"),
        ),
        Row::new(
            "100,000 nested arrays",
            frame(deep.as_bytes()),
            Rejected("recursion limit"),
        ),
        Row::new(
            "100,000 unclosed [",
            frame("[".repeat(100_000).as_bytes()),
            Rejected("expected a JSON object"),
        ),
        Row {
            end: End::HalfClose,
            ..Row::new(
                "frame cut off, then closed",
                cut.clone(),
                Rejected("middle of a frame"),
            )
        },
        Row::new(
            "frame cut off, left open",
            cut,
            Rejected("no frame for 2000 ms"),
        ),
    ]
}

/// A 1 MiB string: valid wherever the message type takes a free string.
fn mib_string() -> String {
    "x".repeat(1 << 20)
}

fn seed_rows(seed: &Proc) -> Vec<Row> {
    use Expect::{Rejected, Reply};
    let register = |extra: Value| {
        let mut msg = json!({"type": "register", "addr": fake_addr()});
        msg["pad"] = extra;
        json_frame(&msg)
    };
    let big_addr = json!({"type": "register", "addr": mib_string()});
    let other = fake_addr();
    vec![
        Row::new(
            "1 MiB string in an extra field",
            register(json!(mib_string())),
            Reply("peer_list"),
        ),
        Row::new(
            "1 MiB string as an address",
            json_frame(&big_addr),
            Rejected("not a valid message"),
        ),
        Row::new(
            "hello with someone else's address",
            json_frame(&json!({"type": "hello", "addr": other})),
            Rejected("unexpected hello frame"),
        ),
        Row::new(
            "gossip with a forged origin",
            gossip(&seed.addr, 7, "forged"),
            Rejected("unexpected gossip frame"),
        ),
    ]
}

fn peer_rows(peer: &Proc, seed: &Proc) -> Vec<Row> {
    use Expect::{Received, Rejected, Reply};
    let other = fake_addr();
    vec![
        Row::new(
            "1 MiB gossip text from a neighbour",
            gossip(&other, 1, &mib_string()),
            Received(other.clone(), 1),
        )
        .after_hello(),
        Row::new(
            "hello with the receiver's own address",
            json_frame(&json!({"type": "hello", "addr": peer.addr})),
            Rejected("own address"),
        ),
        Row::new(
            "hello with someone else's address",
            json_frame(&json!({"type": "hello", "addr": seed.addr})),
            Reply("hello"),
        ),
        Row::new(
            "gossip with the receiver's own origin, never created",
            gossip(&peer.addr, 1000, "forged"),
            Rejected("never created"),
        )
        .after_hello(),
        Row::new(
            "gossip with another node's origin",
            gossip(&other, 2, "forged"),
            Received(other.clone(), 2),
        )
        .after_hello(),
    ]
}

/// Lines of `node`'s text log at WARN that name `remote` (not merely a longer port).
fn warn_lines(node: &Proc, remote: &str) -> usize {
    let text = fs::read_to_string(&node.log).unwrap_or_default();
    let names = |line: &str| {
        line.match_indices(remote).any(|(i, _)| {
            let next = line[i + remote.len()..].chars().next();
            !next.is_some_and(|c| c.is_ascii_digit())
        })
    };
    text.lines()
        .filter(|l| l.contains(" WARN ") && names(l))
        .count()
}

/// Reads (and drops) whatever the node sends until it closes the connection; false if it
/// is still open after the deadline.
fn closed_after_draining(s: &mut TcpStream) -> bool {
    let end = Instant::now() + WAIT;
    let mut buf = vec![0; 64 * 1024];
    while Instant::now() < end {
        s.set_read_timeout(Some(WAIT)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
    false
}

/// Reads frames until one of type `ty` comes (skipping liveness requests and hellos).
fn read_until(s: &mut TcpStream, ty: &str) -> Value {
    loop {
        let msg = read_frame(s).unwrap_or_else(|e| panic!("no {ty} frame: {e}"));
        if msg["type"] == ty {
            return msg;
        }
    }
}

fn connect(node: &Proc) -> TcpStream {
    TcpStream::connect(&node.addr).expect("connect to the node")
}

/// Sends one row on a new connection; returns the connection and its remote name as
/// the node sees it.
fn send_row(node: &Proc, row: &Row) -> (TcpStream, String) {
    let mut s = connect(node);
    let remote = s.local_addr().expect("local address").to_string();
    if row.hello_first {
        let hello = json_frame(&json!({"type": "hello", "addr": fake_addr()}));
        s.write_all(&hello).expect("send hello");
    }
    // The node may close (and reset) before a long row is all written.
    let _ = s.write_all(&row.bytes);
    if matches!(row.end, End::HalfClose) {
        s.shutdown(Shutdown::Write).expect("half-close");
    }
    (s, remote)
}

/// Runs `row` against `node` and checks its outcome; returns the remote it used.
fn check_row(node: &mut Proc, kind: Kind, row: &Row) -> String {
    let (mut s, remote) = send_row(node, row);
    let what = format!("{kind:?} {} ({remote})", row.name);
    match &row.expect {
        Expect::Rejected(reason) => {
            node.wait_for(&format!("logged no warning for {what}"), || {
                !node.bad_frames(&remote).is_empty()
            });
            assert!(closed_after_draining(&mut s), "{what}: left open");
            let reasons = node.bad_frames(&remote);
            let one = reasons.len() == 1 && reasons[0].contains(reason);
            assert!(
                one,
                "{what}: warnings {reasons:?}, wanted one with {reason:?}"
            );
        }
        Expect::Reply(ty) => {
            read_until(&mut s, ty);
        }
        Expect::Received(origin, seq) => {
            node.wait_for(&format!("never logged {what}"), || {
                let got = node.named("gossip_received");
                got.iter()
                    .any(|e| e["origin"] == *origin && e["seq"] == *seq)
            });
        }
    }
    drop(s);
    assert_healthy(node, kind);
    remote
}

/// The node still runs and answers a well-formed client: a seed answers `register`
/// with a peer list, a peer answers `hello` + `liveness_request` with a liveness reply.
fn assert_healthy(node: &mut Proc, kind: Kind) {
    let mut s = connect(node);
    let me = fake_addr();
    let asks = match kind {
        Kind::Seed => vec![json!({"type": "register", "addr": me})],
        Kind::Peer => vec![
            json!({"type": "hello", "addr": me}),
            json!({"type": "liveness_request", "ts": 5, "from": me}),
        ],
    };
    for ask in asks {
        s.write_all(&json_frame(&ask))
            .expect("send a well-formed frame");
    }
    let answer = match kind {
        Kind::Seed => "peer_list",
        Kind::Peer => "liveness_reply",
    };
    let reply = read_until(&mut s, answer);
    if kind == Kind::Peer {
        assert_eq!(
            reply,
            json!({"type": answer, "ts": 5, "from": me, "to": node.addr})
        );
    }
    assert!(node.running(), "{} exited\n{}", node.addr, node.tail());
}

/// Runs every row against `node`, then checks again, after all of them, that each row
/// left exactly as many warnings as it should have (none came late) and no forged line.
fn run_rows(node: &mut Proc, kind: Kind, rows: &[Row]) {
    let mut done = Vec::new();
    for row in rows {
        done.push((row, check_row(node, kind, row)));
    }
    for (row, remote) in done {
        let want = usize::from(matches!(row.expect, Expect::Rejected(_)));
        let what = format!("{kind:?} {} ({remote})", row.name);
        assert_eq!(
            node.bad_frames(&remote).len(),
            want,
            "{what}: bad_frame records"
        );
        assert_eq!(
            warn_lines(node, &remote),
            want,
            "{what}: WARN lines in the log"
        );
    }
    let log = fs::read_to_string(&node.log).unwrap_or_default();
    let forged = log.lines().filter(|l| l.starts_with("1999-")).count();
    assert_eq!(
        forged,
        0,
        "a frame forged a line of the log\n{}",
        node.tail()
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest <= 2048, "a log line of {longest} bytes");
}

fn node_flags(max_frame: &str) -> [&str; 4] {
    ["--max-frame", max_frame, "--idle-timeout", IDLE_TIMEOUT]
}

#[test]
fn every_hostile_row_sent_to_a_seed_ends_as_the_table_says_and_the_seed_keeps_serving() {
    let mut net = Net::new();
    let max = MAX_FRAME.to_string();
    let mut seed = net.seed_with(&node_flags(&max));
    let mut rows = common_rows();
    rows.extend(seed_rows(&seed));
    run_rows(&mut seed, Kind::Seed, &rows);
}

#[test]
fn every_hostile_row_sent_to_a_peer_ends_as_the_table_says_and_the_peer_keeps_serving() {
    let mut net = Net::new();
    let max = MAX_FRAME.to_string();
    let flags = node_flags(&max);
    let seed = net.seed_with(&flags);
    let mut peer_flags = flags.to_vec();
    peer_flags.extend(["--messages", "0"]);
    let mut peer = registered_peer(&net, &peer_flags);
    let mut rows = common_rows();
    rows.extend(peer_rows(&peer, &seed));
    run_rows(&mut peer, Kind::Peer, &rows);
}
