//! `gossipd swarm` as a user runs it: a supervisor and its worker processes, every node a
//! real listener on 127.0.0.0/8, kills and freezes, the JSON report. Each run is bounded
//! by `--duration` and by the test's own deadline; past it the test kills the supervisor
//! it started (by PID), and the workers, losing their control connection, exit on their own.

use serde_json::Value;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A generous bound for one swarm run: tests share two cores, in a debug build.
const RUN_LIMIT: Duration = Duration::from_secs(50);

/// One finished `gossipd swarm` run, and the directory holding its files.
struct Run {
    dir: TempDir,
    status: ExitStatus,
    report: Value,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The report's field `name` as a number (0 when absent, which the checks then catch).
    fn num(&self, name: &str) -> f64 {
        self.report[name].as_f64().unwrap_or(0.0)
    }

    fn context(&self) -> String {
        format!(
            "exit {:?}\n--- stdout (last lines)\n{}\n--- stderr\n{}",
            self.status.code(),
            last_lines(&self.stdout, 25),
            last_lines(&self.stderr, 25)
        )
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `gossipd swarm ARGS --report FILE --events FILE` to its end and reads the report.
/// One swarm at a time: every swarm listens on 127.0.0.2, and a peer redialling a killed
/// neighbour could reach another swarm's node that took over its port (and gossip would
/// cross between the two runs).
static ONE_SWARM: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn swarm(args: &[&str]) -> Run {
    let _alone = ONE_SWARM.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().expect("temp dir");
    let report = dir.path().join("report.json");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_gossipd"))
        .arg("swarm")
        .args(args)
        .arg("--report")
        .arg(&report)
        .arg("--events")
        .arg(dir.path().join("events.jsonl"))
        .stdout(File::create(&out).expect("stdout file"))
        .stderr(File::create(&err).expect("stderr file"))
        .spawn()
        .expect("start gossipd swarm");
    let end = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for gossipd swarm") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "gossipd swarm {args:?} ran past {RUN_LIMIT:?}: {}",
                read(&out)
            );
        }
        sleep(Duration::from_millis(100));
    };
    let text = read(&report);
    let report = serde_json::from_str(&text).unwrap_or(Value::Null);
    Run {
        dir,
        status,
        report,
        stdout: read(&out),
        stderr: read(&err),
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// 200 peers on two workers; at 3 s a kill of 5% of them and a freeze of another 5%.
/// Shared by the tests that read its report.
fn failures_run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        swarm(&[
            "--peers",
            "200",
            "--workers",
            "2",
            "--originators",
            "10",
            "--messages",
            "6",
            "--gossip-interval",
            "1s",
            "--liveness-interval",
            "1s",
            "--kill",
            "0.05@3s",
            "--freeze",
            "0.05@3s",
            "--rng-seed",
            "5",
            "--duration",
            "40s",
        ])
    })
}

#[test]
fn a_kill_and_a_freeze_among_200_peers_on_two_workers_are_all_found_and_removed() {
    let run = failures_run();
    let f = &run.report["failures"];
    let ctx = run.context();
    assert_eq!(f["killed"], 10, "{ctx}");
    assert_eq!(f["frozen"], 10, "{ctx}");
    assert_eq!(f["not_detected"], 0, "{ctx}");
    assert_eq!(f["not_removed"], 0, "{ctx}");
    assert_eq!(run.num("false_dead_reports"), 0.0, "{ctx}");
    assert_eq!(run.num("false_removals"), 0.0, "{ctx}");
    assert_eq!(run.num("coverage_after_failures"), 1.0, "{ctx}");
    // Found within (misses + 1) liveness intervals: 4 s.
    assert!(
        f["removal_ms"]["max"]
            .as_u64()
            .is_some_and(|ms| ms <= 4_000),
        "{ctx}"
    );
    assert!(run.status.success(), "{ctx}");
}

#[test]
fn the_report_of_two_workers_holds_consistent_figures() {
    let run = failures_run();
    let ctx = run.context();
    let (made, expected) = (run.num("deliveries_made"), run.num("deliveries_expected"));
    assert!(expected > 0.0 && made <= expected, "{ctx}");
    assert!(
        (run.num("coverage") - made / expected).abs() < 1e-9,
        "{ctx}"
    );
    assert_eq!(run.num("workers"), 2.0, "{ctx}");
    assert_eq!(run.num("peers"), 200.0, "{ctx}");
    assert_eq!(run.report["mode"], "swarm", "{ctx}");
    assert_eq!(run.num("messages_created"), 60.0, "{ctx}");
    for field in [
        "cpu_s",
        "frames_per_write",
        "cpu_us_per_delivery",
        "rss_per_peer_bytes",
    ] {
        assert!(run.num(field) > 0.0, "{field} missing or zero: {ctx}");
    }
    let kib = |field: &str| -> Vec<u64> {
        let list = run.report[field].as_array().cloned().unwrap_or_default();
        list.iter().filter_map(Value::as_u64).collect()
    };
    let (peak, base) = (
        kib("peak_rss_per_worker_kib"),
        kib("base_rss_per_worker_kib"),
    );
    assert!(peak.len() == 2 && peak.iter().all(|&k| k > 0), "{ctx}");
    assert!(
        base.len() == 2 && base.iter().zip(&peak).all(|(&b, &p)| 0 < b && b < p),
        "{ctx}"
    );
    let beyond = run.num("node_rss_per_peer_bytes");
    assert!(
        0.0 < beyond && beyond < run.num("rss_per_peer_bytes"),
        "{ctx}"
    );
    assert!(run.num("frames_sent") >= run.num("write_calls"), "{ctx}");
}

#[test]
fn each_worker_writes_the_events_of_its_nodes_to_its_own_file() {
    let run = failures_run();
    let mut nodes = std::collections::BTreeSet::new();
    let mut reports = 0;
    for w in 0..2 {
        let path = run.dir.path().join(format!("events.jsonl.w{w}"));
        let text = read(&path);
        assert!(
            !text.is_empty(),
            "{} is empty: {}",
            path.display(),
            run.context()
        );
        for line in text.lines() {
            let record: Value = serde_json::from_str(line).expect("a JSON Lines record");
            nodes.insert(record["node"].as_str().unwrap_or_default().to_string());
            reports += usize::from(record["event"] == "dead_node_reported");
        }
    }
    assert_eq!(nodes.len(), 202, "every seed and peer logged");
    assert!(reports >= 20, "each failure reported by some neighbour");
}

#[test]
fn the_default_swarm_of_10_peers_exits_0_with_full_coverage() {
    let run = swarm(&["--peers", "10"]);
    let ctx = run.context();
    assert!(run.status.success(), "{ctx}");
    assert_eq!(run.num("coverage"), 1.0, "{ctx}");
    assert_eq!(run.num("messages_created"), 100.0, "{ctx}");
    assert!(run.stdout.contains("reached all 9 other peers"), "{ctx}");
}

/// What a run's event files say about gossip: who was reported dead or removed, and for
/// each message (origin, seq) its creation time and the nodes that received it.
#[derive(Default)]
struct Gossiped {
    first_ts: u64,
    peers: std::collections::BTreeSet<String>,
    dead: std::collections::BTreeSet<String>,
    created: std::collections::BTreeMap<(String, u64), u64>,
    received: std::collections::BTreeMap<(String, u64), std::collections::BTreeSet<String>>,
}

fn gossiped(run: &Run, workers: usize) -> Gossiped {
    let mut g = Gossiped {
        first_ts: u64::MAX,
        ..Gossiped::default()
    };
    for w in 0..workers {
        let text = read(&run.dir.path().join(format!("events.jsonl.w{w}")));
        for line in text.lines() {
            let r: Value = serde_json::from_str(line).expect("a JSON Lines record");
            g.note(&r);
        }
    }
    g
}

impl Gossiped {
    fn note(&mut self, r: &Value) {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let id = || (s("origin"), r["seq"].as_u64().unwrap_or_default());
        self.first_ts = self.first_ts.min(r["ts"].as_u64().unwrap_or(u64::MAX));
        match r["event"].as_str().unwrap_or_default() {
            "seeds_chosen" => {
                self.peers.insert(s("node"));
            }
            "dead_node_reported" | "peer_removed" => {
                self.dead.insert(s("addr"));
            }
            "gossip_created" => {
                self.created.insert(id(), r["ts"].as_u64().unwrap_or(0));
            }
            "gossip_received" => {
                self.received.entry(id()).or_default().insert(s("node"));
            }
            _ => {}
        }
    }

    /// (made, expected) deliveries to the survivors of the messages of surviving origins
    /// created at or after `since` (ms after the first event).
    fn coverage_since(&self, since: u64) -> (usize, usize) {
        let survivors: Vec<&String> = self.peers.difference(&self.dead).collect();
        let (mut made, mut expected) = (0, 0);
        for (id, ts) in &self.created {
            if *ts < self.first_ts + since || self.dead.contains(&id.0) {
                continue;
            }
            let got = self.received.get(id);
            let others = survivors.iter().filter(|p| ***p != id.0);
            for p in others {
                expected += 1;
                made += usize::from(got.is_some_and(|g| g.contains(*p)));
            }
        }
        (made, expected)
    }
}

/// A third of the peers crash at 5 s. Their neighbours find them (no live peer reported),
/// redial and ask the seeds for fresh lists, and every message created three liveness
/// intervals after the crash (and a half-second margin) reaches every survivor.
#[test]
fn after_30_percent_of_a_real_swarm_crash_later_messages_reach_every_survivor() {
    let run = swarm(&[
        "--peers",
        "150",
        "--workers",
        "2",
        "--originators",
        "15",
        "--messages",
        "8",
        "--gossip-interval",
        "1s",
        "--liveness-interval",
        "1s",
        "--kill",
        "0.3@5s",
        "--rng-seed",
        "7",
        "--duration",
        "30s",
    ]);
    let ctx = run.context();
    assert_eq!(run.num("false_dead_reports"), 0.0, "{ctx}");
    let g = gossiped(&run, 2);
    assert_eq!(g.peers.len(), 150, "{ctx}");
    assert_eq!(g.dead.len(), 45, "every crash found: {ctx}");
    let (made, expected) = g.coverage_since(5_000 + 3_000 + 500);
    eprintln!("messages after the repair: {made} of {expected} deliveries");
    assert!(
        expected >= 10 * 104,
        "too few messages after the repair: {ctx}"
    );
    assert_eq!(made, expected, "{ctx}");
}
