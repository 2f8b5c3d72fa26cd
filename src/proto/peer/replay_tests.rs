//! Unit tests of sending a peer's own messages again: to a neighbour that connects after
//! they went out, and to one found answering again at the liveness check after a miss
//! (frames sent to it meanwhile may be lost, and nobody else would ever send them).

use super::catch_up::RELAYED_KEPT;
use super::*;

const T0: Millis = 1_700_000_000_000;
const LIVENESS: Millis = 1_000;
const GOSSIP: Millis = 100;
const RNG_SEED: u64 = 5;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn drain(core: &mut PeerCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

/// (connection, seq) of every gossip frame sent.
fn gossip_sent(actions: &[Action]) -> Vec<(ConnId, u64)> {
    let sent = actions.iter().filter_map(|a| match a {
        Action::Send { conn, msg } => match msg.as_ref() {
            Message::Gossip(g) => Some((*conn, g.seq)),
            _ => None,
        },
        _ => None,
    });
    sent.collect()
}

/// A peer registered with its only seed (an empty list), with no neighbour yet.
fn registered(messages: u64) -> PeerCore {
    let cfg = PeerConfig {
        gossip_interval: GOSSIP,
        messages,
        liveness_interval: LIVENESS,
        idle_timeout: 1_000_000,
        ..PeerConfig::new(addr(9000), vec![addr(8001)])
    };
    let mut core = PeerCore::new(cfg, RNG_SEED);
    core.start(T0);
    let seed = drain(&mut core).iter().find_map(|a| match a {
        Action::Connect { conn, .. } => Some(*conn),
        _ => None,
    });
    let seed = seed.unwrap_or(ConnId(0));
    core.connected(seed, T0);
    core.message(seed, Message::PeerList { peers: vec![] }, T0);
    drain(&mut core);
    core
}

/// `from` connects and says hello at `now`: its connection, and the actions that follow.
fn neighbour(core: &mut PeerCore, from: u16, now: Millis) -> (ConnId, Vec<Action>) {
    let conn = core.accept(SocketAddr::from(([127, 0, 0, 2], from)), now);
    core.message(conn, Message::Hello { addr: addr(from) }, now);
    (conn, drain(core))
}

/// Fires the gossip timer `n` times, one interval apart from `from`; the time after.
fn create(core: &mut PeerCore, n: u64, from: Millis) -> Millis {
    for k in 1..=n {
        core.timer(Timer::Gossip, from + k * GOSSIP);
    }
    drain(core);
    from + n * GOSSIP
}

#[test]
fn a_neighbour_that_connects_later_gets_the_messages_already_created() {
    let mut core = registered(3);
    let (first, _) = neighbour(&mut core, 9001, T0);
    let now = create(&mut core, 2, T0);
    let (second, actions) = neighbour(&mut core, 9002, now + 1);
    assert_eq!(gossip_sent(&actions), vec![(second, 1), (second, 2)]);
    assert!(gossip_sent(&actions).iter().all(|s| s.0 != first));
}

#[test]
fn a_neighbour_heard_from_after_a_miss_gets_them_again_and_only_then() {
    let mut core = registered(1);
    let (conn, _) = neighbour(&mut core, 9001, T0);
    let now = create(&mut core, 1, T0);
    let reply = |ts| Message::LivenessReply {
        ts,
        from: addr(9000),
        to: addr(9001),
    };
    core.timer(Timer::Liveness, T0 + LIVENESS);
    core.message(conn, reply(T0 + LIVENESS), T0 + LIVENESS + 1);
    assert!(
        gossip_sent(&drain(&mut core)).is_empty(),
        "answered in time"
    );
    core.timer(Timer::Liveness, T0 + 2 * LIVENESS);
    core.timer(Timer::Liveness, T0 + 3 * LIVENESS);
    drain(&mut core);
    core.message(conn, reply(T0 + 3 * LIVENESS), T0 + 3 * LIVENESS + 1);
    assert!(
        gossip_sent(&drain(&mut core)).is_empty(),
        "judged at the check"
    );
    core.timer(Timer::Liveness, T0 + 4 * LIVENESS);
    assert_eq!(
        gossip_sent(&drain(&mut core)),
        vec![(conn, 1)],
        "after {now}"
    );
    core.message(conn, reply(T0 + 4 * LIVENESS), T0 + 4 * LIVENESS + 1);
    core.timer(Timer::Liveness, T0 + 5 * LIVENESS);
    assert!(
        gossip_sent(&drain(&mut core)).is_empty(),
        "once per recovery"
    );
}

#[test]
fn only_the_most_recent_messages_within_the_ttl_go_again() {
    let extra = 5;
    let mut core = registered(OWN_KEPT as u64 + extra);
    neighbour(&mut core, 9001, T0);
    let now = create(&mut core, OWN_KEPT as u64 + extra, T0);
    let (conn, actions) = neighbour(&mut core, 9002, now + 1);
    let seqs: Vec<u64> = gossip_sent(&actions).iter().map(|s| s.1).collect();
    let want: Vec<u64> = (extra + 1..=OWN_KEPT as u64 + extra).collect();
    assert_eq!(seqs, want, "the last {OWN_KEPT}");
    let late = now + core.cfg.seen_ttl + 10 * GOSSIP;
    core.timer(Timer::Liveness, late);
    core.timer(Timer::Liveness, late + LIVENESS);
    drain(&mut core);
    let (_, actions) = neighbour(&mut core, 9003, late + LIVENESS + 1);
    assert!(gossip_sent(&actions).is_empty(), "past the TTL: {conn:?}");
}

/// A message of `origin` number `seq`, created at `ts`, as a neighbour forwards it.
fn foreign(origin: u16, seq: u64, ts: Millis) -> Message {
    Message::Gossip(Gossip::standard(addr(origin), seq, ts, 1))
}

/// (origin port, seq) of every gossip frame sent on `conn`.
fn relayed_on(actions: &[Action], conn: ConnId) -> Vec<(u16, u64)> {
    let sent = actions.iter().filter_map(|a| match a {
        Action::Send { conn: c, msg } if *c == conn => match msg.as_ref() {
            Message::Gossip(g) => Some((g.origin.port(), g.seq)),
            _ => None,
        },
        _ => None,
    });
    sent.collect()
}

#[test]
fn a_neighbour_that_connects_later_gets_the_messages_relayed_already() {
    let mut core = registered(0);
    let (first, _) = neighbour(&mut core, 9001, T0);
    core.message(first, foreign(7001, 1, T0), T0 + 1);
    core.message(first, foreign(7002, 4, T0 + 2), T0 + 3);
    core.message(first, foreign(7001, 1, T0), T0 + 4);
    drain(&mut core);
    let (second, actions) = neighbour(&mut core, 9002, T0 + 5);
    assert_eq!(
        relayed_on(&actions, second),
        vec![(7001, 1), (7002, 4)],
        "each relayed message once, oldest first"
    );
    assert!(relayed_on(&actions, first).is_empty(), "not to the sender");
}

#[test]
fn a_neighbour_back_after_a_miss_gets_no_relayed_message_again() {
    let mut core = registered(1);
    let (from, _) = neighbour(&mut core, 9001, T0);
    let (conn, _) = neighbour(&mut core, 9002, T0);
    core.message(from, foreign(7001, 1, T0), T0 + 1);
    create(&mut core, 1, T0);
    for k in 1..=2 {
        core.timer(Timer::Liveness, T0 + k * LIVENESS);
    }
    core.message(from, foreign(7001, 2, T0), T0 + 2 * LIVENESS + 1);
    core.input_waiting(conn, T0 + 2 * LIVENESS + 2);
    drain(&mut core);
    core.timer(Timer::Liveness, T0 + 3 * LIVENESS);
    let actions = drain(&mut core);
    assert_eq!(
        relayed_on(&actions, conn),
        vec![(9000, 1)],
        "its own one only: others forward the rest to it"
    );
}

#[test]
fn only_the_last_relayed_messages_within_the_ttl_go_to_a_new_neighbour() {
    let extra = 5;
    let mut core = registered(0);
    let (from, _) = neighbour(&mut core, 9001, T0);
    let relays = RELAYED_KEPT as u64 + extra;
    for seq in 1..=relays {
        core.message(from, foreign(7001, seq, T0 + seq), T0 + seq);
    }
    drain(&mut core);
    let (conn, actions) = neighbour(&mut core, 9002, T0 + relays + 1);
    let seqs: Vec<u64> = relayed_on(&actions, conn).iter().map(|s| s.1).collect();
    let want: Vec<u64> = (extra + 1..=relays).collect();
    assert_eq!(seqs, want, "the last {RELAYED_KEPT}");
    let late = T0 + relays + core.cfg.seen_ttl + 1;
    let (conn, actions) = neighbour(&mut core, 9003, late);
    assert!(relayed_on(&actions, conn).is_empty(), "past the TTL");
}

#[test]
fn a_relayed_message_goes_to_a_new_neighbour_as_it_came_but_one_hop_further() {
    let mut core = registered(0);
    let (first, _) = neighbour(&mut core, 9001, T0);
    let Message::Gossip(plain) = foreign(7001, 1, T0) else {
        unreachable!()
    };
    let with_payload = Gossip {
        seq: 2,
        text: gossip_text(T0, addr(7001), 2),
        payload: Some(serde_json::json!({"w": [0.5, -1.0]})),
        ..plain.clone()
    };
    let other_text = Gossip {
        seq: 3,
        text: "made elsewhere".into(),
        ..plain.clone()
    };
    let v6_origin: SocketAddr = "[::1]:7002".parse().expect("an IPv6 address");
    let v6 = Gossip {
        origin: v6_origin,
        text: gossip_text(T0, v6_origin, 1),
        ..plain.clone()
    };
    let sent = [plain, with_payload, other_text, v6];
    for g in &sent {
        core.message(first, Message::Gossip(g.clone()), T0 + 1);
    }
    drain(&mut core);
    let (second, actions) = neighbour(&mut core, 9002, T0 + 2);
    let got: Vec<Gossip> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn, msg } if *conn == second => match msg.as_ref() {
                Message::Gossip(g) => Some(g.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let want: Vec<Gossip> = sent
        .iter()
        .map(|g| Gossip {
            hops: g.hops + 1,
            ..g.clone()
        })
        .collect();
    assert_eq!(got, want);
}
