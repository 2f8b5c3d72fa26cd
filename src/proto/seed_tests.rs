//! Unit tests of the seed core: driven directly with chosen `now` values and a fixed RNG
//! seed, asserting on the actions drained from `poll_action()`.

use super::*;
use crate::proto::{Gossip, Severity};
use std::collections::{BTreeSet, HashMap};

const INTERVAL: Millis = 1_000;
const MISSES: u32 = 3;
const IDLE: Millis = 10_000;
const T0: Millis = 1_700_000_000_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn seed_addr() -> SocketAddr {
    addr(8000)
}

/// A peer's ephemeral source address, distinct from every listening address.
fn ephemeral(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], port))
}

fn config(peer_list_max: usize) -> SeedConfig {
    SeedConfig {
        peer_list_max,
        liveness_interval: INTERVAL,
        liveness_misses: MISSES,
        idle_timeout: IDLE,
        ..SeedConfig::new(seed_addr())
    }
}

/// A started seed, its start-up actions drained.
fn started(peer_list_max: usize) -> SeedCore {
    let mut seed = SeedCore::new(config(peer_list_max), 7);
    seed.start(T0);
    drain(&mut seed);
    seed
}

fn drain(seed: &mut SeedCore) -> Vec<Action> {
    std::iter::from_fn(|| seed.poll_action()).collect()
}

fn sends(actions: &[Action]) -> Vec<(ConnId, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn, msg } => Some((*conn, Message::clone(msg))),
            _ => None,
        })
        .collect()
}

fn events(actions: &[Action]) -> Vec<Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn event_names(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(e) => Some(e.name()),
            _ => None,
        })
        .collect()
}

fn closes(actions: &[Action]) -> Vec<ConnId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { conn } => Some(*conn),
            _ => None,
        })
        .collect()
}

/// Accepts a connection from the peer listening on `port` and registers it there.
fn register(seed: &mut SeedCore, port: u16, now: Millis) -> (ConnId, Vec<Action>) {
    let conn = seed.accept(ephemeral(port), now);
    seed.message(conn, Message::Register { addr: addr(port) }, now);
    (conn, drain(seed))
}

/// The peers listed in the one `peer_list` answer among `actions`, sent on `conn`.
fn listed(actions: &[Action], conn: ConnId) -> Vec<SocketAddr> {
    match sends(actions).as_slice() {
        [(c, Message::PeerList { peers })] if *c == conn => peers.clone(),
        other => panic!("expected one peer_list on {conn:?}, got {other:?}"),
    }
}

fn liveness_check(seed: &mut SeedCore, k: u64) -> Vec<Action> {
    seed.timer(Timer::Liveness, T0 + k * INTERVAL);
    drain(seed)
}

fn misses_logged(actions: &[Action]) -> Vec<(SocketAddr, u32)> {
    events(actions)
        .into_iter()
        .filter_map(|e| match e {
            Event::LivenessMiss { addr, misses } => Some((addr, misses)),
            _ => None,
        })
        .collect()
}

fn liveness_reply(to: u16) -> Message {
    Message::LivenessReply {
        ts: T0,
        from: seed_addr(),
        to: addr(to),
    }
}

#[test]
fn start_arms_the_liveness_and_idle_sweep_timers() {
    let mut seed = SeedCore::new(config(256), 7);
    seed.start(T0);
    assert_eq!(
        drain(&mut seed),
        vec![
            Action::SetTimer {
                at: T0 + INTERVAL,
                timer: Timer::Liveness
            },
            Action::SetTimer {
                at: T0 + IDLE / 2,
                timer: Timer::IdleSweep
            },
        ]
    );
}

#[test]
fn register_answers_a_peer_list_without_the_registrant() {
    let mut seed = started(256);
    let (c1, first) = register(&mut seed, 9001, T0);
    assert_eq!(listed(&first, c1), Vec::<SocketAddr>::new());
    assert_eq!(
        events(&first),
        vec![Event::PeerRegistered { peer: addr(9001) }]
    );
    register(&mut seed, 9002, T0);
    let (c3, third) = register(&mut seed, 9003, T0);
    assert_eq!(listed(&third, c3), vec![addr(9001), addr(9002)]);
    assert_eq!(seed.peers(), &[addr(9001), addr(9002), addr(9003)]);
}

#[test]
fn registering_twice_keeps_one_entry_and_answers_again() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    register(&mut seed, 9002, T0);
    seed.message(c1, Message::Register { addr: addr(9001) }, T0 + 1);
    let same_conn = drain(&mut seed);
    assert_eq!(listed(&same_conn, c1), vec![addr(9002)]);
    assert!(events(&same_conn).is_empty(), "no second peer_registered");
    let (c_new, new_conn) = register(&mut seed, 9001, T0 + 2);
    assert_eq!(listed(&new_conn, c_new), vec![addr(9002)]);
    assert!(events(&new_conn).is_empty());
    assert_eq!(seed.peers(), &[addr(9001), addr(9002)]);
}

#[test]
fn a_connection_registering_a_second_address_is_closed_and_the_second_not_listed() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    for port in 9100..9110 {
        seed.message(c1, Message::Register { addr: addr(port) }, T0 + 1);
    }
    let actions = drain(&mut seed);
    assert_eq!(
        closes(&actions),
        vec![c1],
        "closed at the first other address"
    );
    assert!(sends(&actions).is_empty(), "no peer_list for it");
    assert_eq!(
        event_names(&actions),
        vec!["bad_frame"],
        "one warning, naming the remote"
    );
    assert_eq!(seed.peers(), &[addr(9001)]);
    assert_eq!(seed.footprint(), [0, 1, 1], "conns, list, registrations");
}

#[test]
fn a_list_of_exactly_peer_list_max_others_is_sent_whole() {
    let mut seed = started(3);
    for port in 9001..=9003 {
        register(&mut seed, port, T0);
    }
    let (c, actions) = register(&mut seed, 9004, T0);
    assert_eq!(
        listed(&actions, c),
        vec![addr(9001), addr(9002), addr(9003)]
    );
}

#[test]
fn a_larger_list_is_a_uniform_sample_of_peer_list_max_without_the_registrant() {
    const MAX: usize = 5;
    const ROUNDS: usize = 3_800;
    let mut seed = started(MAX);
    for port in 9001..=9020 {
        register(&mut seed, port, T0);
    }
    let me = addr(9007);
    let conn = seed.accept(ephemeral(9007), T0);
    let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
    for round in 0..ROUNDS {
        seed.message(conn, Message::Register { addr: me }, T0);
        let peers = listed(&drain(&mut seed), conn);
        let distinct: BTreeSet<SocketAddr> = peers.iter().copied().collect();
        assert_eq!(peers.len(), MAX, "round {round}: {peers:?}");
        assert_eq!(
            distinct.len(),
            MAX,
            "round {round}: duplicates in {peers:?}"
        );
        assert!(!distinct.contains(&me), "round {round}: registrant listed");
        assert!(distinct.iter().all(|p| seed.peers().contains(p)));
        for p in peers {
            *counts.entry(p).or_default() += 1;
        }
    }
    // 19 others, 5 picks a round: each expected 1000 times (sd about 27).
    assert_eq!(counts.len(), 19);
    for (peer, n) in counts {
        assert!((850..=1150).contains(&n), "{peer} listed {n} times");
    }
}

fn report(about: u16, reporter: u16) -> Message {
    Message::DeadNode {
        addr: addr(about),
        ts: T0 + 5,
        reporter: addr(reporter),
    }
}

fn probe(now: Millis) -> Message {
    Message::LivenessRequest {
        ts: now,
        from: seed_addr(),
    }
}

#[test]
fn a_report_about_a_peer_that_answers_the_seeds_check_is_refuted() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    register(&mut seed, 9002, T0);
    let reporter = seed.accept(ephemeral(9009), T0);
    seed.message(reporter, report(9001, 9009), T0 + 10);
    let first = drain(&mut seed);
    assert_eq!(
        event_names(&first),
        vec!["dead_node_received"],
        "no removal on a report alone"
    );
    assert_eq!(
        sends(&first),
        vec![(c1, probe(T0 + 10))],
        "the seed asks the peer itself"
    );
    assert!(first.contains(&Action::SetTimer {
        at: T0 + 10 + INTERVAL,
        timer: Timer::Verify
    }));

    seed.message(c1, liveness_reply(9001), T0 + 20);
    let refuted = vec![Event::DeadNodeRefuted {
        addr: addr(9001),
        reporter: addr(9009),
    }];
    assert_eq!(events(&drain(&mut seed)), refuted);
    seed.timer(Timer::Verify, T0 + 10 + INTERVAL);
    assert!(events(&drain(&mut seed)).is_empty());
    assert_eq!(seed.peers(), &[addr(9001), addr(9002)]);
}

#[test]
fn a_reported_peer_that_stays_silent_is_removed_after_one_interval_once() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    register(&mut seed, 9002, T0);
    let reporter = seed.accept(ephemeral(9009), T0);
    seed.message(reporter, report(9001, 9009), T0 + 10);
    seed.message(reporter, report(9001, 9008), T0 + 11);
    let reports = drain(&mut seed);
    assert_eq!(sends(&reports).len(), 1, "one check, however many reports");
    seed.timer(Timer::Verify, T0 + 9 + INTERVAL);
    assert!(
        drain(&mut seed).is_empty(),
        "a wake-up before the deadline does nothing"
    );
    seed.timer(Timer::Verify, T0 + 10 + INTERVAL);
    let removal = events(&drain(&mut seed));
    let reason = "reported dead by 127.0.0.1:9009, and did not answer the seed's check";
    assert_eq!(
        removal,
        vec![Event::PeerRemoved {
            addr: addr(9001),
            reason: reason.into()
        }]
    );
    assert_eq!(seed.peers(), &[addr(9002)]);

    seed.message(reporter, report(9001, 9009), T0 + 2 * INTERVAL);
    let again = drain(&mut seed);
    assert_eq!(event_names(&again), vec!["dead_node_received"]);
    assert!(sends(&again).is_empty() && closes(&again).is_empty());

    // The removed peer is listed again when it registers again.
    seed.message(
        c1,
        Message::Register { addr: addr(9001) },
        T0 + 3 * INTERVAL,
    );
    let back = drain(&mut seed);
    assert_eq!(event_names(&back), vec!["peer_registered"]);
    assert_eq!(listed(&back, c1), vec![addr(9002)]);
}

#[test]
fn reports_a_millisecond_apart_are_each_checked_at_their_own_deadline() {
    let mut seed = started(256);
    let conns: Vec<ConnId> = (0..20)
        .map(|i| register(&mut seed, 9100 + i, T0).0)
        .collect();
    let reporter = seed.accept(ephemeral(9009), T0);
    for i in 0..10 {
        seed.message(reporter, report(9100 + i, 9009), T0 + 10 + u64::from(i));
    }
    drain(&mut seed);
    for (i, &conn) in conns.iter().enumerate().take(10).step_by(2) {
        seed.message(conn, liveness_reply(9100 + i as u16), T0 + 100);
    }
    assert_eq!(event_names(&drain(&mut seed)), vec!["dead_node_refuted"; 5]);
    let mut removed = Vec::new();
    for i in 0..10 {
        seed.timer(Timer::Verify, T0 + 10 + i + INTERVAL);
        for e in events(&drain(&mut seed)) {
            if let Event::PeerRemoved { addr, .. } = e {
                removed.push((addr, i));
            }
        }
    }
    let silent: Vec<(SocketAddr, u64)> = (1..10)
        .step_by(2)
        .map(|i| (addr(9100 + i), u64::from(i)))
        .collect();
    assert_eq!(removed, silent, "each silent one at its deadline, no other");
    assert_eq!(seed.peers().len(), 15);
    assert_eq!(seed.footprint(), [21, 15, 15], "conns, list, registrations");
}

#[test]
fn a_report_about_a_peer_already_missing_here_removes_it_at_once() {
    let mut seed = started(256);
    register(&mut seed, 9001, T0);
    liveness_check(&mut seed, 1);
    let second = liveness_check(&mut seed, 2);
    assert_eq!(misses_logged(&second), vec![(addr(9001), 1)]);
    let reporter = seed.accept(ephemeral(9009), T0);
    seed.message(reporter, report(9001, 9009), T0 + 2 * INTERVAL + 1);
    let names = event_names(&drain(&mut seed));
    assert_eq!(names, vec!["dead_node_received", "peer_removed"]);
    assert!(seed.peers().is_empty());
}

#[test]
fn removing_a_peer_keeps_the_rest_of_the_list_consistent() {
    let mut seed = started(256);
    for port in 9001..=9004 {
        register(&mut seed, port, T0);
    }
    let reporter = seed.accept(ephemeral(9009), T0);
    for port in [9001, 9004, 9002] {
        seed.message(reporter, report(port, 9009), T0);
    }
    drain(&mut seed);
    seed.timer(Timer::Verify, T0 + INTERVAL);
    let removed: Vec<SocketAddr> = events(&drain(&mut seed))
        .into_iter()
        .filter_map(|e| match e {
            Event::PeerRemoved { addr, .. } => Some(addr),
            _ => None,
        })
        .collect();
    assert_eq!(removed.len(), 3);
    assert_eq!(seed.peers(), &[addr(9003)]);
    let (c, actions) = register(&mut seed, 9005, T0);
    assert_eq!(listed(&actions, c), vec![addr(9003)]);
}

#[test]
fn a_peer_that_misses_liveness_misses_checks_is_removed() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    let first = liveness_check(&mut seed, 1);
    let request = Message::LivenessRequest {
        ts: T0 + INTERVAL,
        from: seed_addr(),
    };
    assert_eq!(sends(&first), vec![(c1, request)]);
    assert!(misses_logged(&first).is_empty());
    for k in 1..MISSES {
        let check = liveness_check(&mut seed, u64::from(k) + 1);
        assert_eq!(misses_logged(&check), vec![(addr(9001), k)]);
        assert_eq!(sends(&check).len(), 1, "asked again after miss {k}");
        assert_eq!(seed.peers(), &[addr(9001)]);
    }
    let last = liveness_check(&mut seed, u64::from(MISSES) + 1);
    assert_eq!(misses_logged(&last), vec![(addr(9001), MISSES)]);
    assert!(events(&last).contains(&Event::PeerRemoved {
        addr: addr(9001),
        reason: "missed 3 liveness checks".into()
    }));
    assert!(sends(&last).is_empty(), "a removed peer is not asked again");
    assert!(closes(&last).is_empty(), "removal keeps the connection");
    assert!(seed.peers().is_empty());
}

#[test]
fn a_liveness_reply_resets_the_miss_count() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    liveness_check(&mut seed, 1);
    liveness_check(&mut seed, 2);
    liveness_check(&mut seed, 3);
    seed.message(c1, liveness_reply(9001), T0 + 3 * INTERVAL + 1);
    assert!(drain(&mut seed).is_empty());
    assert!(misses_logged(&liveness_check(&mut seed, 4)).is_empty());
    assert_eq!(
        misses_logged(&liveness_check(&mut seed, 5)),
        vec![(addr(9001), 1)]
    );
    liveness_check(&mut seed, 6);
    assert_eq!(seed.peers(), &[addr(9001)], "two misses in a row only");
    liveness_check(&mut seed, 7);
    assert!(seed.peers().is_empty());
}

#[test]
fn a_reply_on_an_older_registration_connection_does_not_reset_the_count() {
    let mut seed = started(256);
    let (old, _) = register(&mut seed, 9001, T0);
    let (new, _) = register(&mut seed, 9001, T0);
    let first = liveness_check(&mut seed, 1);
    assert_eq!(sends(&first).first().map(|s| s.0), Some(new));
    liveness_check(&mut seed, 2);
    seed.message(old, liveness_reply(9001), T0 + 2 * INTERVAL + 1);
    assert_eq!(
        misses_logged(&liveness_check(&mut seed, 3)),
        vec![(addr(9001), 2)]
    );
}

#[test]
fn a_registration_whose_connection_closed_counts_misses_and_is_removed() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    seed.closed(c1, Disconnect::Closed, T0 + 1);
    assert!(drain(&mut seed).is_empty(), "a clean close logs nothing");
    assert_eq!(seed.peers(), &[addr(9001)]);
    for k in 1..MISSES {
        let check = liveness_check(&mut seed, u64::from(k));
        assert_eq!(misses_logged(&check), vec![(addr(9001), k)]);
        assert!(sends(&check).is_empty(), "no connection to ask on");
    }
    let last = liveness_check(&mut seed, u64::from(MISSES));
    assert_eq!(
        event_names(&last),
        vec!["liveness_miss", "peer_removed"],
        "{last:?}"
    );
    assert!(seed.peers().is_empty());
}

#[test]
fn closing_an_older_registration_connection_keeps_the_newer_one() {
    let mut seed = started(256);
    let (old, _) = register(&mut seed, 9001, T0);
    let (new, _) = register(&mut seed, 9001, T0);
    seed.closed(old, Disconnect::Error("reset".into()), T0 + 1);
    let check = liveness_check(&mut seed, 1);
    assert_eq!(sends(&check).first().map(|s| s.0), Some(new));
    assert!(misses_logged(&check).is_empty());
}

#[test]
fn a_bad_frame_reported_by_the_driver_logs_one_bad_frame() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    seed.closed(c1, Disconnect::BadFrame("length 0".into()), T0 + 1);
    let actions = drain(&mut seed);
    assert_eq!(
        actions,
        vec![Action::Log(Event::BadFrame {
            remote: ephemeral(9001),
            reason: "length 0".into()
        })],
        "the driver already closed it"
    );
    seed.closed(c1, Disconnect::BadFrame("again".into()), T0 + 2);
    assert!(
        drain(&mut seed).is_empty(),
        "a closed connection is unknown"
    );
}

#[test]
fn an_unexpected_frame_logs_one_bad_frame_and_closes_that_connection_only() {
    let gossip = Message::Gossip(Gossip {
        origin: addr(9001),
        seq: 1,
        ts: T0,
        text: format!("{T0}:127.0.0.1:9001:1"),
        hops: 1,
        payload: None,
    });
    let strays = [
        gossip,
        Message::Hello { addr: addr(9001) },
        Message::PeerList { peers: vec![] },
    ];
    for stray in strays {
        let kind = stray.kind();
        let mut seed = started(256);
        let (c1, _) = register(&mut seed, 9001, T0);
        let (c2, _) = register(&mut seed, 9002, T0);
        seed.message(c1, stray, T0 + 1);
        let actions = drain(&mut seed);
        let warnings: Vec<Event> = events(&actions)
            .into_iter()
            .filter(|e| e.severity() == Severity::Warn)
            .collect();
        assert_eq!(
            warnings,
            vec![Event::BadFrame {
                remote: ephemeral(9001),
                reason: format!("unexpected {kind} frame")
            }]
        );
        assert_eq!(closes(&actions), vec![c1], "{kind}");
        seed.message(c1, liveness_reply(9001), T0 + 2);
        assert!(drain(&mut seed).is_empty(), "{kind}: c1 is gone");
        let request = Message::LivenessRequest {
            ts: 5,
            from: addr(9002),
        };
        seed.message(c2, request, T0 + 2);
        assert_eq!(sends(&drain(&mut seed)).len(), 1, "{kind}: c2 still served");
        assert_eq!(seed.peers(), &[addr(9001), addr(9002)]);
    }
}

#[test]
fn a_silent_connection_is_closed_after_idle_timeout_with_one_bad_frame() {
    let mut seed = started(256);
    let silent = seed.accept(ephemeral(9001), T0);
    let (busy, _) = register(&mut seed, 9002, T0);
    seed.message(busy, liveness_reply(9002), T0 + 6_000);
    drain(&mut seed);
    seed.timer(Timer::IdleSweep, T0 + IDLE / 2);
    let early = drain(&mut seed);
    assert_eq!(
        early,
        vec![Action::SetTimer {
            at: T0 + IDLE,
            timer: Timer::IdleSweep
        }]
    );
    seed.timer(Timer::IdleSweep, T0 + IDLE);
    let sweep = drain(&mut seed);
    assert_eq!(
        events(&sweep),
        vec![Event::BadFrame {
            remote: ephemeral(9001),
            reason: format!("no frame for {IDLE} ms")
        }]
    );
    assert_eq!(closes(&sweep), vec![silent]);
    seed.timer(Timer::IdleSweep, T0 + 3 * IDLE / 2);
    assert!(closes(&drain(&mut seed)).is_empty(), "busy heard at +6 s");
    seed.timer(Timer::IdleSweep, T0 + 2 * IDLE);
    assert_eq!(closes(&drain(&mut seed)), vec![busy]);
}

#[test]
fn stale_timer_wake_ups_do_nothing() {
    let mut seed = started(256);
    register(&mut seed, 9001, T0);
    seed.timer(Timer::Liveness, T0 + INTERVAL - 1);
    seed.timer(Timer::IdleSweep, T0 + IDLE / 2 - 1);
    seed.timer(Timer::Gossip, T0 + IDLE);
    seed.timer(Timer::SeedRetry, T0 + IDLE);
    assert!(drain(&mut seed).is_empty());
    liveness_check(&mut seed, 1);
    liveness_check(&mut seed, 2);
    // A second wake-up for the check just run must not count another miss.
    assert!(liveness_check(&mut seed, 2).is_empty());
    assert_eq!(
        misses_logged(&liveness_check(&mut seed, 3)),
        vec![(addr(9001), 2)]
    );
}

#[test]
fn a_liveness_request_to_a_seed_is_answered_on_the_same_connection() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    let stranger = seed.accept(ephemeral(9005), T0);
    for conn in [c1, stranger] {
        let request = Message::LivenessRequest {
            ts: 42,
            from: addr(9001),
        };
        seed.message(conn, request, T0 + 1);
        let reply = Message::LivenessReply {
            ts: 42,
            from: addr(9001),
            to: seed_addr(),
        };
        assert_eq!(sends(&drain(&mut seed)), vec![(conn, reply)]);
    }
}

#[test]
fn input_on_an_unknown_connection_is_ignored() {
    let mut seed = started(256);
    register(&mut seed, 9001, T0);
    let unknown = ConnId(999);
    seed.message(unknown, Message::Register { addr: addr(9003) }, T0);
    seed.closed(unknown, Disconnect::BadFrame("x".into()), T0);
    seed.connected(unknown, T0);
    assert!(drain(&mut seed).is_empty());
    assert_eq!(seed.peers(), &[addr(9001)]);
}

#[test]
fn input_waiting_from_a_reported_peer_refutes_the_report() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    let reporter = seed.accept(ephemeral(9009), T0);
    seed.message(reporter, report(9001, 9009), T0 + 10);
    drain(&mut seed);
    seed.input_waiting(c1, T0 + 20);
    let refuted = vec![Event::DeadNodeRefuted {
        addr: addr(9001),
        reporter: addr(9009),
    }];
    assert_eq!(events(&drain(&mut seed)), refuted);
    seed.timer(Timer::Verify, T0 + 10 + INTERVAL);
    assert_eq!(seed.peers(), &[addr(9001)]);
}

#[test]
fn a_check_while_the_loop_is_behind_excuses_only_peers_heard_lately() {
    let mut seed = started(256);
    register(&mut seed, 9001, T0);
    let (c2, _) = register(&mut seed, 9002, T0);
    liveness_check(&mut seed, 1);
    seed.message(c2, liveness_reply(9002), T0 + 1_500);
    drain(&mut seed);
    assert_eq!(
        misses_logged(&liveness_check(&mut seed, 2)),
        vec![(addr(9001), 1)]
    );
    // Asked at 2 s, neither answers: 9001 was last heard at T0, 9002 at 1.5 s.
    seed.loop_behind();
    let behind = misses_logged(&liveness_check(&mut seed, 3));
    assert_eq!(behind, vec![(addr(9001), 2)], "9002 excused");
    seed.loop_behind();
    let silent = misses_logged(&liveness_check(&mut seed, 4));
    assert_eq!(silent, vec![(addr(9001), 3), (addr(9002), 1)]);
    assert_eq!(seed.peers(), &[addr(9002)], "9001 removed while behind");
    assert_eq!(
        misses_logged(&liveness_check(&mut seed, 5)),
        vec![(addr(9002), 2)]
    );
}

#[test]
fn a_report_verified_while_the_loop_is_behind_waits_for_a_peer_heard_lately() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    register(&mut seed, 9002, T0);
    let reporter = seed.accept(ephemeral(9009), T0);
    seed.message(reporter, report(9001, 9009), T0 + 10);
    seed.message(reporter, report(9002, 9009), T0 + 10);
    drain(&mut seed);
    seed.message(
        c1,
        Message::LivenessRequest {
            ts: 1,
            from: addr(9001),
        },
        T0 + 5,
    );
    drain(&mut seed);
    // Both were heard within two intervals: neither is removed at the deadline.
    seed.loop_behind();
    seed.timer(Timer::Verify, T0 + 10 + INTERVAL);
    assert!(events(&drain(&mut seed)).is_empty());
    assert_eq!(seed.peers(), &[addr(9001), addr(9002)]);
    // 9001 answers meanwhile; 9002, silent since T0, is removed once its silence is long.
    seed.message(c1, liveness_reply(9001), T0 + 1_500);
    let refuted = events(&drain(&mut seed));
    assert!(matches!(
        refuted.as_slice(),
        [Event::DeadNodeRefuted { .. }]
    ));
    seed.loop_behind();
    seed.timer(Timer::Verify, T0 + 10 + 2 * INTERVAL);
    let removed = event_names(&drain(&mut seed));
    assert_eq!(removed, vec!["peer_removed"]);
    assert_eq!(seed.peers(), &[addr(9001)]);
}

#[test]
fn a_peer_excused_while_behind_is_judged_again_a_quarter_interval_on() {
    let mut seed = started(256);
    let (c1, _) = register(&mut seed, 9001, T0);
    liveness_check(&mut seed, 1);
    seed.message(c1, liveness_reply(9001), T0 + 1_500);
    drain(&mut seed);
    liveness_check(&mut seed, 2);
    // Asked at 2 s, no answer; heard at 1.5 s: excused, its request left pending.
    seed.loop_behind();
    let check = liveness_check(&mut seed, 3);
    assert!(misses_logged(&check).is_empty(), "excused");
    assert!(sends(&check).is_empty(), "not asked again");
    // The loop has caught up a quarter interval on: a miss, and a new request.
    seed.timer(Timer::Recheck, T0 + 3 * INTERVAL + INTERVAL / 4);
    let rechecked = drain(&mut seed);
    assert_eq!(misses_logged(&rechecked), vec![(addr(9001), 1)]);
    assert_eq!(sends(&rechecked).len(), 1, "asked again");
    assert_eq!(
        misses_logged(&liveness_check(&mut seed, 4)),
        vec![(addr(9001), 2)]
    );
    assert_eq!(
        misses_logged(&liveness_check(&mut seed, 5)),
        vec![(addr(9001), 3)]
    );
    assert!(seed.peers().is_empty(), "removed at its third check");
}
