//! Unit tests of sending a peer's own messages again: to a neighbour that connects after
//! they went out, and to one found answering again at the liveness check after a miss
//! (frames sent to it meanwhile may be lost, and nobody else would ever send them).

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
