//! Real gossipd processes on 127.0.0.1: the wiring the simulator cannot prove (sockets,
//! flags, log files, signals, exit codes). Each test owns its ports, temp dir and
//! processes, waits for conditions with a generous deadline, and kills only what it started.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long any condition may take. Generous: tests share two cores with each other.
pub(crate) const WAIT: Duration = Duration::from_secs(30);
/// Short liveness settings, so a dead node is noticed within about a second.
pub(crate) const LIVENESS: [&str; 4] = ["--liveness-interval", "300ms", "--liveness-misses", "3"];

/// Ports handed out in this test binary, so parallel tests never pick the same one.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port that was free a moment ago. Racy: between dropping the probe listener and the
/// daemon's bind, another process (or a daemon's outgoing connect) may take it. `TAKEN`
/// only rules out collisions between the tests of this binary.
pub(crate) fn free_port() -> u16 {
    loop {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
        let port = probe.local_addr().expect("probe address").port();
        if TAKEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// Polls `cond` every 50 ms until it holds (true) or `deadline` has passed (false).
pub(crate) fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while !cond() {
        if Instant::now() >= end {
            return false;
        }
        sleep(Duration::from_millis(50));
    }
    true
}

/// The complete JSON Lines records of an events file (a line still being written is skipped).
pub(crate) fn read_events(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: bad record {line:?}: {e}", path.display()))
        })
        .collect()
}

/// Temp paths are ASCII here; as `&str` they mix with the other flags.
pub(crate) fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The last `n` lines of a file but its DEBUG (liveness) lines, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" DEBUG ")).collect();
    let from = lines.len().saturating_sub(n);
    format!("--- {}\n{}", path.display(), lines[from..].join("\n"))
}

/// One daemon this test started. Killed (SIGKILL) and reaped on drop, so a failing test
/// leaves no process behind.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) addr: String,
    pub(crate) events: PathBuf,
    pub(crate) log: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    pub(crate) fn named(&self, event: &str) -> Vec<Value> {
        let mut all = read_events(&self.events);
        all.retain(|e| e["event"] == event);
        all
    }

    /// Whether an `event` record has `field` equal to `value`.
    pub(crate) fn has(&self, event: &str, field: &str, value: &str) -> bool {
        self.named(event).iter().any(|e| e[field] == value)
    }

    /// The reasons of `bad_frame` records naming `remote`.
    pub(crate) fn bad_frames(&self, remote: &str) -> Vec<String> {
        let mut bad = self.named("bad_frame");
        bad.retain(|e| e["remote"] == remote);
        let reasons = bad.iter().filter_map(|e| e["reason"].as_str());
        reasons.map(str::to_owned).collect()
    }

    /// Waits until `cond` holds; panics with `what` and this node's log tail if it never does.
    pub(crate) fn wait_for(&self, what: &str, cond: impl FnMut() -> bool) {
        if !wait_until(WAIT, cond) {
            panic!("{} {what}\n{}", self.addr, self.tail());
        }
    }

    pub(crate) fn tail(&self) -> String {
        format!("{}\n{}", tail(&self.log, 20), tail(&self.stderr, 5))
    }

    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until(WAIT, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status.unwrap_or_else(|| panic!("{} still running\n{}", self.addr, self.tail()))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's network: its temp dir (logs, events, stderr, config) and its seeds.
pub(crate) struct Net {
    pub(crate) dir: TempDir,
    pub(crate) seeds: Vec<String>,
}

impl Net {
    pub(crate) fn new() -> Net {
        let dir = tempfile::tempdir().expect("temp dir");
        Net { dir, seeds: vec![] }
    }

    pub(crate) fn config(&self) -> PathBuf {
        self.dir.path().join("config.txt")
    }

    /// Starts a daemon on `port`; its output goes to files in the temp dir.
    pub(crate) fn spawn(&self, role: &str, port: u16, args: &[&str]) -> Proc {
        self.spawn_under(&[], role, port, args)
    }

    /// Starts a daemon as [`Net::spawn`] does, as the command run by `wrapper` (for
    /// example `prlimit --nofile=...`) unless `wrapper` is empty.
    pub(crate) fn spawn_under(
        &self,
        wrapper: &[&str],
        role: &str,
        port: u16,
        args: &[&str],
    ) -> Proc {
        let addr = format!("127.0.0.1:{port}");
        let name = format!("{role}-127.0.0.1-{port}");
        let (dir, logs) = (self.dir.path(), self.dir.path().join("logs"));
        let events = dir.join(format!("{name}.jsonl"));
        let stderr = dir.join(format!("{name}.stderr"));
        let files = ["--log-dir", utf8(&logs), "--events", utf8(&events)];
        let bin = env!("CARGO_BIN_EXE_gossipd");
        let (program, before) = match wrapper.split_first() {
            Some((w, rest)) => (*w, rest.iter().copied().chain([bin]).collect()),
            None => (bin, vec![]),
        };
        let child = Command::new(program)
            .args(before)
            .args([role, "--listen", &addr])
            .args(files)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start gossipd");
        let log = logs.join(format!("{name}.log"));
        Proc {
            child,
            addr,
            events,
            log,
            stderr,
        }
    }

    /// Starts a seed, adds it to the config file, and waits until it listens (its log
    /// file is opened right after the bind).
    pub(crate) fn seed(&mut self) -> Proc {
        self.seed_with(&[])
    }

    /// A seed with more flags than [`LIVENESS`].
    pub(crate) fn seed_with(&mut self, args: &[&str]) -> Proc {
        let all: Vec<&str> = LIVENESS.iter().chain(args).copied().collect();
        let seed = self.spawn("seed", free_port(), &all);
        self.seeds.push(seed.addr.clone());
        fs::write(self.config(), self.seeds.join("\n") + "\n").expect("write config");
        seed.wait_for("never listened", || seed.log.exists());
        seed
    }

    pub(crate) fn peer(&self, args: &[&str]) -> Proc {
        let config = self.config();
        let mut all = vec!["--config", utf8(&config)];
        all.extend(LIVENESS);
        all.extend(args);
        self.spawn("peer", free_port(), &all)
    }

    /// Runs a daemon expected to exit by itself: its status and its stderr.
    pub(crate) fn exit_of(&self, role: &str, port: u16, args: &[&str]) -> (ExitStatus, String) {
        let mut p = self.spawn(role, port, args);
        let status = p.wait_exit();
        (status, fs::read_to_string(&p.stderr).unwrap_or_default())
    }
}

/// A peer that has its peer lists from every seed of `net`.
pub(crate) fn registered_peer(net: &Net, args: &[&str]) -> Proc {
    let peer = net.peer(args);
    let answered = |seed: &String| peer.has("peer_list_received", "from", seed);
    peer.wait_for("lacks a seed's peer list", || {
        net.seeds.iter().all(answered)
    });
    peer
}

pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("small body");
    [&len.to_be_bytes()[..], body].concat()
}

pub(crate) fn read_frame(s: &mut TcpStream) -> io::Result<Value> {
    s.set_read_timeout(Some(WAIT))?;
    let mut len = [0; 4];
    s.read_exact(&mut len)?;
    // Bounded (above any `--max-frame` the tests set): a bad length then fails as bad
    // JSON instead of reserving gigabytes.
    let mut body = vec![0; u32::from_be_bytes(len).min(4 << 20) as usize];
    s.read_exact(&mut body)?;
    serde_json::from_slice(&body).map_err(io::Error::other)
}

/// True once the remote has closed `s` (end of stream or reset), false on data or timeout.
pub(crate) fn closed_by_remote(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    match s.read(&mut [0; 64]) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// The peer logs exactly one `bad_frame` for the connection from `s`, with a reason
/// containing `reason`, and closes that connection.
pub(crate) fn assert_one_bad_frame(peer: &Proc, s: &mut TcpStream, reason: &str) {
    let remote = s.local_addr().expect("local address").to_string();
    peer.wait_for(&format!("logged no bad_frame from {remote}"), || {
        !peer.bad_frames(&remote).is_empty()
    });
    let reasons = peer.bad_frames(&remote);
    let one = reasons.len() == 1 && reasons[0].contains(reason);
    assert!(one, "{remote}: {reasons:?}");
    assert!(closed_by_remote(s), "the peer kept {remote} open");
}

/// Says hello as a new neighbour would and expects the peer's own hello back; the peer
/// process must still be running.
pub(crate) fn assert_peer_still_answers(peer: &mut Proc) {
    let mut s = TcpStream::connect(&peer.addr).expect("connect to the peer");
    let hello = json!({"type": "hello", "addr": format!("127.0.0.1:{}", free_port())});
    let hello = frame(hello.to_string().as_bytes());
    s.write_all(&hello).expect("send hello");
    let reply = read_frame(&mut s).unwrap_or_else(|e| panic!("no reply: {e}\n{}", peer.tail()));
    assert_eq!(reply, json!({"type": "hello", "addr": peer.addr}));
    assert!(peer.running(), "peer exited\n{}", peer.tail());
}

/// (origin, seq) -> how many `gossip_received` records the peer logged for it.
pub(crate) fn receipts(p: &Proc) -> BTreeMap<(String, u64), usize> {
    let mut n = BTreeMap::new();
    for e in p.named("gossip_received") {
        let origin = e["origin"].as_str().unwrap_or_default().to_owned();
        let seq = e["seq"].as_u64().unwrap_or_default();
        *n.entry((origin, seq)).or_default() += 1;
    }
    n
}

/// Every (origin, seq) that `me` should receive: `messages` from each other peer.
pub(crate) fn expected(me: &Proc, peers: &[Proc], messages: u64) -> BTreeSet<(String, u64)> {
    let others = peers.iter().filter(|p| p.addr != me.addr);
    others
        .flat_map(|p| (1..=messages).map(|seq| (p.addr.clone(), seq)))
        .collect()
}

/// Who lacks what, and when it got its first neighbour (a late start loses messages).
pub(crate) fn delivery_report(peers: &[Proc], messages: u64) -> String {
    let mut report = String::new();
    for p in peers {
        let got = receipts(p);
        let mut lacks = expected(p, peers, messages);
        lacks.retain(|k| !got.contains_key(k));
        if lacks.is_empty() {
            continue;
        }
        let first = |event| p.named(event).first().map(|e| e["ts"].to_string());
        let (joined, created) = (first("neighbor_connected"), first("gossip_created"));
        report += &format!("{} lacks {lacks:?}; 1st neighbour at {joined:?}, ", p.addr);
        report += &format!("1st gossip at {created:?}\n{}\n", p.tail());
    }
    report
}

#[test]
fn two_seeds_and_six_peers_deliver_every_message_to_every_peer_exactly_once() {
    let mut net = Net::new();
    let _seeds = [net.seed(), net.seed()];
    // All six start well within one gossip interval, before the first message exists:
    // gossip is not replayed to neighbours that connect later.
    let args = ["--messages", "5", "--gossip-interval", "1s"];
    let peers: Vec<Proc> = (0..6).map(|_| net.peer(&args)).collect();
    let all_in = |p: &Proc| {
        let got = receipts(p);
        expected(p, &peers, 5).iter().all(|k| got.contains_key(k))
    };
    let delivered = wait_until(WAIT, || peers.iter().all(all_in));
    assert!(delivered, "{}", delivery_report(&peers, 5));
    for p in &peers {
        let got = receipts(p);
        let twice: Vec<_> = got.iter().filter(|(_, &n)| n != 1).collect();
        assert!(twice.is_empty(), "{} got these twice: {twice:?}", p.addr);
        let keys: BTreeSet<_> = got.into_keys().collect();
        assert_eq!(keys, expected(p, &peers, 5), "what {} got", p.addr);
    }
}

#[test]
fn a_peer_killed_with_sigkill_is_removed_by_both_seeds_and_not_listed_to_a_later_peer() {
    let mut net = Net::new();
    let seeds = [net.seed(), net.seed()];
    let quiet = ["--messages", "0"];
    let mut peers: Vec<Proc> = (0..3).map(|_| registered_peer(&net, &quiet)).collect();
    let mut victim = peers.remove(0);
    let dead = victim.addr.clone();
    for s in &seeds {
        s.wait_for("never listed it", || {
            s.has("peer_registered", "peer", &dead)
        });
    }
    victim.child.kill().expect("SIGKILL the peer");
    victim.child.wait().expect("reap the peer");
    for s in &seeds {
        s.wait_for("kept it", || s.has("peer_removed", "addr", &dead));
    }
    let late = registered_peer(&net, &quiet);
    let mut listed = BTreeSet::new();
    for list in late.named("peer_list_received") {
        let addrs: Vec<String> = serde_json::from_value(list["peers"].clone()).expect("peers");
        assert!(!addrs.contains(&dead), "dead peer listed: {list}");
        listed.extend(addrs);
    }
    let survivors: BTreeSet<String> = peers.iter().map(|p| p.addr.clone()).collect();
    assert_eq!(listed, survivors, "the union of the late peer's lists");
}

#[test]
fn garbage_bytes_sent_to_a_peer_port_do_not_stop_it() {
    let mut net = Net::new();
    let _seed = net.seed();
    let mut peer = registered_peer(&net, &["--messages", "0"]);
    let http = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    let junk = [
        (http, "length"),
        (frame(b"not json"), "JSON"),
        (vec![0xFF; 4], "length"),
    ];
    let mut sent = Vec::new();
    for (bytes, reason) in junk {
        let mut s = TcpStream::connect(&peer.addr).expect("connect to the peer");
        s.write_all(&bytes).expect("send junk");
        sent.push((s, reason));
    }
    for (s, reason) in &mut sent {
        assert_one_bad_frame(&peer, s, reason);
    }
    assert_peer_still_answers(&mut peer);
}

#[test]
fn a_connection_closed_in_the_middle_of_a_frame_is_logged_and_the_peer_keeps_running() {
    let mut net = Net::new();
    let _seed = net.seed();
    let mut peer = registered_peer(&net, &["--messages", "0"]);
    let mut s = TcpStream::connect(&peer.addr).expect("connect to the peer");
    s.write_all(&100u32.to_be_bytes()).expect("send a header");
    s.write_all(br#"{"type":"hel"#).expect("send half a body");
    s.shutdown(Shutdown::Write).expect("half-close");
    assert_one_bad_frame(&peer, &mut s, "middle of a frame");
    assert_peer_still_answers(&mut peer);
}

pub(crate) fn assert_one_line_error(stderr: &str) {
    assert!(stderr.starts_with("gossipd: error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn a_malformed_config_line_exits_with_code_2_naming_the_file_and_line() {
    let net = Net::new();
    let config = net.dir.path().join("seeds.txt");
    fs::write(&config, "127.0.0.1:9000\nnot-a-seed\n").expect("write config");
    let config = utf8(&config);
    let (status, stderr) = net.exit_of("peer", free_port(), &["--config", config]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_one_line_error(&stderr);
    assert!(stderr.contains(&format!("{config}:2")), "{stderr}");
}

#[test]
fn listening_on_a_port_already_bound_exits_with_code_2_and_a_one_line_error() {
    let net = Net::new();
    let held = TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = held.local_addr().expect("held address").port();
    let (status, stderr) = net.exit_of("seed", port, &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_one_line_error(&stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

#[test]
fn a_duration_without_a_unit_exits_with_code_2() {
    let net = Net::new();
    let args = ["--config", "unused.txt", "--gossip-interval", "5"];
    let (status, stderr) = net.exit_of("peer", free_port(), &args);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--gossip-interval"), "{stderr}");
}

#[test]
fn a_seed_and_a_peer_run_one_thread_on_small_pages_and_sigterm_stops_them_with_exit_code_0_and_logs_written(
) {
    let mut net = Net::new();
    let mut seed = net.seed();
    let mut peer = registered_peer(&net, &["--messages", "0"]);
    for p in [&mut peer, &mut seed] {
        let status = fs::read_to_string(format!("/proc/{}/status", p.child.id()));
        let status = status.unwrap_or_default();
        let line = |name: &str| status.lines().find(|l| l.starts_with(name));
        assert_eq!(
            line("Threads:"),
            Some("Threads:\t1"),
            "one thread: {}",
            p.addr
        );
        // The allocator turned transparent huge pages off before its first allocation
        // (.cargo/config.toml, src/pages.rs): none of its memory is on them.
        if let Some(thp) = line("THP_enabled:") {
            assert_eq!(thp, "THP_enabled:\t0", "{}", p.addr);
        }
        let rollup = fs::read_to_string(format!("/proc/{}/smaps_rollup", p.child.id()));
        let rollup = rollup.unwrap_or_default();
        if let Some(huge) = rollup.lines().find(|l| l.starts_with("AnonHugePages:")) {
            assert_eq!(
                huge.split_whitespace().nth(1),
                Some("0"),
                "{}: {huge}",
                p.addr
            );
        }
        p.sigterm();
        let status = p.wait_exit();
        assert_eq!(status.code(), Some(0), "{} {status}\n{}", p.addr, p.tail());
    }
    let read = |p: &Proc| fs::read_to_string(&p.log).unwrap_or_default();
    let listed = format!("List of Peers from {}", seed.addr);
    assert!(read(&peer).contains(&listed), "{}", peer.tail());
    let registered = format!("Peer registered: {}", peer.addr);
    assert!(read(&seed).contains(&registered), "{}", seed.tail());
}

#[test]
fn forged_dead_node_reports_evict_no_live_peer_and_a_real_crash_is_still_removed() {
    let mut net = Net::new();
    let seeds = [net.seed(), net.seed()];
    let quiet = ["--messages", "0"];
    let mut peers: Vec<Proc> = (0..3).map(|_| registered_peer(&net, &quiet)).collect();
    // A host without any standing sends every seed a report about every live peer.
    let forger = "127.0.0.1:1";
    for s in &seeds {
        let mut conn = TcpStream::connect(&s.addr).expect("connect to the seed");
        for p in &peers {
            let body = json!({"type": "dead_node", "addr": p.addr, "ts": 1, "reporter": forger});
            conn.write_all(&frame(body.to_string().as_bytes()))
                .expect("send a forged report");
        }
    }
    for s in &seeds {
        for p in &peers {
            s.wait_for("never refuted a forged report", || {
                s.has("dead_node_refuted", "addr", &p.addr)
            });
            assert!(
                !s.has("peer_removed", "addr", &p.addr),
                "{} evicted",
                p.addr
            );
        }
    }
    let mut victim = peers.remove(0);
    let dead = victim.addr.clone();
    victim.child.kill().expect("SIGKILL the peer");
    victim.child.wait().expect("reap the peer");
    for s in &seeds {
        s.wait_for("kept a crashed peer", || {
            s.has("peer_removed", "addr", &dead)
        });
        for p in &peers {
            assert!(
                !s.has("peer_removed", "addr", &p.addr),
                "{} evicted",
                p.addr
            );
        }
    }
}
