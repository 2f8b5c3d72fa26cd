//! `gossipd sim` reports: the stress run on the simulator, driven through the library
//! (`gossipd::sim::simulate`) and once through the binary. Each test prints its RNG seed
//! when it fails.

use std::process::Command;

use gossipd::proto::Millis;
use gossipd::sim::{simulate, Outcome, SimArgs, EPOCH};

/// Runs `gossipd sim` with these flags through the library.
fn run(flags: &[&str], rng_seed: u64) -> Outcome {
    let args = SimArgs::from_flags(flags).unwrap_or_else(|e| panic!("flags {flags:?}: {e}"));
    let scenario = args
        .scenario(rng_seed)
        .unwrap_or_else(|e| panic!("flags {flags:?}: {e}"));
    simulate(&scenario, None, &mut |_| {}).unwrap_or_else(|e| panic!("rng seed {rng_seed}: {e}"))
}

fn json(outcome: &Outcome) -> String {
    serde_json::to_string_pretty(&outcome.report).unwrap_or_default() + "\n"
}

const SMALL: &[&str] = &[
    "--peers",
    "200",
    "--seeds",
    "3",
    "--originators",
    "10",
    "--messages",
    "2",
    "--latency",
    "1ms..20ms",
];

/// SMALL with loss, a kill and a partition: every random draw of the simulator in use.
const EVENTFUL: &[&str] = &[
    "--peers",
    "200",
    "--seeds",
    "3",
    "--originators",
    "10",
    "--messages",
    "3",
    "--latency",
    "1ms..20ms",
    "--loss",
    "0.01",
    "--kill",
    "0.02@1s",
    "--partition",
    "0.1@1500ms..3s",
    "--duration",
    "6s",
];

#[test]
fn the_same_rng_seed_gives_a_byte_identical_report_and_another_seed_a_different_one() {
    let first = json(&run(EVENTFUL, 7));
    assert_eq!(
        first,
        json(&run(EVENTFUL, 7)),
        "rng seed 7 replayed differently"
    );
    assert_ne!(
        first,
        json(&run(EVENTFUL, 8)),
        "rng seeds 7 and 8 gave the same report"
    );
}

/// Writing the events file (every event, the ones the report reads and the rest) does not
/// change the report.
#[test]
fn the_report_is_the_same_with_and_without_an_events_file() {
    let rng_seed = 5;
    let args = SimArgs::from_flags(EVENTFUL).unwrap_or_else(|e| panic!("flags: {e}"));
    let scenario = args
        .scenario(rng_seed)
        .unwrap_or_else(|e| panic!("rng seed {rng_seed}: {e}"));
    let mut file: Vec<u8> = Vec::new();
    let with_file = simulate(&scenario, Some(&mut file), &mut |_| {})
        .unwrap_or_else(|e| panic!("rng seed {rng_seed}: {e}"));
    let text = String::from_utf8_lossy(&file);
    for kind in [
        "peer_list_received",
        "neighbor_connected",
        "dead_node_reported",
    ] {
        assert!(
            text.contains(&format!("\"event\":\"{kind}\"")),
            "rng seed {rng_seed}: no {kind} in the events file"
        );
    }
    let r = &with_file.report;
    assert!(
        r.warnings > 0 && r.failures.killed > 0,
        "rng seed {rng_seed}: a run with warnings and kills, to compare"
    );
    assert_eq!(
        json(&with_file),
        json(&run(EVENTFUL, rng_seed)),
        "rng seed {rng_seed}"
    );
}

#[test]
fn the_report_fields_are_present_and_consistent() {
    let rng_seed = 11;
    let outcome = run(SMALL, rng_seed);
    let v: serde_json::Value = serde_json::from_str(&json(&outcome)).unwrap_or_default();
    let num = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("rng seed {rng_seed}: no number {k} in {v}"))
    };
    for key in [
        "peers",
        "seeds",
        "workers",
        "connections",
        "gossip_frames_received",
        "gossip_first_receipts",
        "bytes_sent",
        "frames_sent",
        "run_ms",
        "messages_created",
        "deliveries_made",
        "deliveries_expected",
        "coverage",
        "redundancy",
        "false_dead_reports",
        "false_removals",
    ] {
        num(key);
    }
    assert_eq!(v["mode"], "sim", "rng seed {rng_seed}");
    assert_eq!(
        (num("peers"), num("seeds"), num("workers")),
        (200.0, 3.0, 1.0)
    );
    assert_eq!(num("messages_created"), 20.0, "rng seed {rng_seed}: 10 x 2");
    let (made, expected) = (num("deliveries_made"), num("deliveries_expected"));
    assert!(made <= expected, "rng seed {rng_seed}: {made} > {expected}");
    assert_eq!(
        expected,
        20.0 * 199.0,
        "rng seed {rng_seed}: every other peer"
    );
    assert!((num("coverage") - made / expected).abs() < 1e-12);
    let (received, first) = (num("gossip_frames_received"), num("gossip_first_receipts"));
    assert!(first >= made && received >= first, "rng seed {rng_seed}");
    assert!((num("redundancy") - received / first).abs() < 1e-9);
    assert!(num("frames_sent") >= received && num("bytes_sent") > num("frames_sent") * 4.0);
    assert_eq!(
        num("run_ms") as u64,
        outcome.tally.last_delivery.max(EPOCH) - EPOCH
    );
    // Nothing measured on the host goes into the report: it would differ run to run.
    assert_eq!((num("wall_s"), num("cpu_s")), (0.0, 0.0));
    assert_eq!(v["peak_rss_per_worker_kib"], serde_json::json!([]));
}

#[test]
fn a_kill_and_a_freeze_are_detected_and_removed_with_no_false_report() {
    let rng_seed = 3;
    let flags = [
        "--peers",
        "300",
        "--seeds",
        "3",
        "--originators",
        "10",
        "--messages",
        "6",
        "--kill",
        "0.01@1s",
        "--freeze",
        "0.01@1500ms",
    ];
    let outcome = run(&flags, rng_seed);
    let r = &outcome.report;
    let f = &r.failures;
    assert_eq!((f.killed, f.frozen), (3, 3), "rng seed {rng_seed}");
    assert_eq!(
        (f.not_detected, f.not_removed),
        (0, 0),
        "rng seed {rng_seed}"
    );
    assert_eq!(
        (r.false_dead_reports, r.false_removals),
        (0, 0),
        "rng seed {rng_seed}"
    );
    assert_eq!(
        r.coverage, 1.0,
        "rng seed {rng_seed}: survivors get everything"
    );
    assert!(
        outcome.finished,
        "rng seed {rng_seed}: stopped at its deadline"
    );
    // Detection takes `misses` liveness intervals (1 s each by default), give or take one.
    let detect = f.detection_ms.map_or(Millis::MAX, |d| d.max);
    assert!(
        detect <= 5_000,
        "rng seed {rng_seed}: detected after {detect} ms"
    );
}

/// Loss of gossip and liveness frames, and a fifth of the peers cut off from 2 s to 6 s:
/// messages created during the cut cannot cross it, and neighbours across the cut are
/// reported dead (falsely). Once the cut heals, the peers on both sides redial and
/// re-register within a couple of liveness intervals, and from then on every message
/// reaches every peer again. The new links also carry what each side relayed during the
/// cut (the last 32 messages), so here even those arrive, seconds late. The run is long enough for every message to be created and
/// spread before it ends (an originator without a neighbour delays its next message by a
/// gossip interval), so none is cut short by the deadline.
#[test]
fn with_loss_and_a_healed_partition_the_messages_created_after_the_heal_reach_every_peer() {
    let rng_seed = 5;
    let flags = [
        "--peers",
        "2000",
        "--seeds",
        "3",
        "--originators",
        "5",
        "--messages",
        "5",
        "--gossip-interval",
        "2s",
        "--loss",
        "0.01",
        "--loss-types",
        "gossip,liveness_request,liveness_reply",
        "--latency",
        "1ms..20ms",
        "--partition",
        "0.2@2s..6s",
        "--liveness-interval",
        "1s",
        "--warmup",
        "1s",
        "--duration",
        "14s",
    ];
    let outcome = run(&flags, rng_seed);
    let r = &outcome.report;
    assert!(
        r.latency_ms.max >= 2_000,
        "rng seed {rng_seed}: no message waited for the heal\n{}",
        r.render()
    );
    assert!(
        r.false_dead_reports > 0,
        "rng seed {rng_seed}: nobody noticed the cut"
    );
    assert!(
        outcome.finished && r.coverage == 1.0,
        "rng seed {rng_seed}: a message created during the cut was lost\n{}",
        r.render()
    );
    let healed = EPOCH + 6_000 + SETTLE;
    let (made, expected) = outcome.tally.coverage_since(2000, healed);
    assert!(
        expected >= 2 * 5 * 1999,
        "rng seed {rng_seed}: too few messages after the heal"
    );
    assert_eq!(made, expected, "rng seed {rng_seed}:\n{}", r.render());
}

/// How long after a heal the network is whole again: two liveness intervals.
const SETTLE: Millis = 2_000;

#[test]
fn the_sim_command_prints_its_report_and_writes_the_same_json_as_the_library_and_its_events() {
    let dir = tempfile::TempDir::new().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let path = dir.path().join("report.json");
    let events = dir.path().join("events.jsonl");
    let rng_seed = 9;
    let out = Command::new(env!("CARGO_BIN_EXE_gossipd"))
        .arg("sim")
        .args(SMALL)
        .args(["--rng-seed", "9", "--report"])
        .arg(&path)
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap_or_else(|e| panic!("cannot run gossipd: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rng seed {rng_seed}: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("report (sim, rng seed 9)"), "{stdout}");
    assert!(stdout.contains("coverage     100.0000%"), "{stdout}");
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(written, json(&run(SMALL, rng_seed)), "rng seed {rng_seed}");
    let events = std::fs::read_to_string(&events).unwrap_or_default();
    let received = events
        .lines()
        .filter(|l| l.contains(r#""event":"gossip_received""#));
    assert_eq!(
        received.count(),
        20 * 199,
        "rng seed {rng_seed}: one line per delivery"
    );
}

/// `gossipd sim` runs again in its own process with the allocator set for huge pages,
/// unless the user set it: the host line says which, and the report is the same.
#[test]
fn the_sim_command_sets_the_allocator_for_huge_pages_unless_the_user_did_and_reports_the_same() {
    let sim = |allow_thp: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gossipd"));
        cmd.arg("sim").args(SMALL).args(["--rng-seed", "9"]);
        cmd.env_remove("MIMALLOC_ALLOW_THP")
            .env_remove("MIMALLOC_PURGE_DELAY");
        if let Some(v) = allow_thp {
            cmd.env("MIMALLOC_ALLOW_THP", v);
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run gossipd: {e}"));
        assert!(out.status.success(), "{:?} {allow_thp:?}", out.status);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (report, host): (Vec<&str>, Vec<&str>) =
            stdout.lines().partition(|l| !l.starts_with("host "));
        (report.join("\n"), host.join("\n"))
    };
    let (ours, our_host) = sim(None);
    let (theirs, their_host) = sim(Some("0"));
    assert!(our_host.contains("(MIMALLOC_ALLOW_THP=1)"), "{our_host}");
    assert!(
        their_host.contains("(MIMALLOC_ALLOW_THP=0)"),
        "{their_host}"
    );
    assert!(ours.contains("coverage     100.0000%"), "{ours}");
    assert_eq!(
        ours, theirs,
        "rng seed 9: the report depends on the allocator"
    );
}

/// Loss on every frame type, handshakes included: a lost `register` answer is asked for
/// again after a liveness interval and a lost `hello` ends in a redial, so every peer has
/// joined before the warm-up ends and then gets every message.
#[test]
fn with_every_frame_type_lossy_every_peer_still_joins_and_gets_every_message() {
    for rng_seed in [1, 2] {
        let flags = [
            "--peers",
            "500",
            "--seeds",
            "3",
            "--originators",
            "10",
            "--messages",
            "2",
            "--loss",
            "0.05",
            "--loss-types",
            "all",
            "--latency",
            "1ms..20ms",
            "--warmup",
            "6s",
        ];
        let outcome = run(&flags, rng_seed);
        let r = &outcome.report;
        assert!(
            outcome.net.frames_lost > 0,
            "rng seed {rng_seed}: nothing lost"
        );
        assert_eq!(r.coverage, 1.0, "rng seed {rng_seed}:\n{}", r.render());
    }
}
