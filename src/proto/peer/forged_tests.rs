//! Unit tests of gossip that names the receiving peer as its origin: an echo of its own
//! message, a leftover from an earlier run on its address, and a forgery; and of gossip
//! stamped too far in the future.

use super::*;

const T0: Millis = 1_700_000_000_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn me() -> SocketAddr {
    addr(9000)
}

/// A started peer with two neighbours that connected to it (9001 and 9002); returns
/// the core and their connections.
fn peer_with_two_neighbors() -> (PeerCore, ConnId, ConnId) {
    let mut core = PeerCore::new(PeerConfig::new(me(), vec![addr(8000)]), 1);
    core.start(T0);
    let mut hello_from = |port: u16, remote: u16| {
        let conn = core.accept(SocketAddr::from(([127, 0, 0, 2], remote)), T0);
        core.message(conn, Message::Hello { addr: addr(port) }, T0);
        conn
    };
    let (a, b) = (hello_from(9001, 50001), hello_from(9002, 50002));
    drain(&mut core);
    (core, a, b)
}

fn drain(core: &mut PeerCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

fn own(seq: u64, ts: Millis) -> Message {
    let text = gossip_text(ts, me(), seq);
    let (hops, payload) = (2, None);
    let origin = me();
    Message::Gossip(Gossip {
        origin,
        seq,
        ts,
        text,
        hops,
        payload,
    })
}

fn logged(actions: &[Action]) -> Vec<&Event> {
    let events = actions.iter().filter_map(|a| match a {
        Action::Log(e) => Some(e),
        _ => None,
    });
    events.collect()
}

fn sent_gossip(actions: &[Action]) -> usize {
    let sent = |a: &&Action| matches!(a, Action::Send { msg, .. } if msg.kind() == "gossip");
    actions.iter().filter(sent).count()
}

#[test]
fn gossip_with_our_origin_and_a_seq_never_created_is_one_warning_and_a_close() {
    let (mut core, a, _) = peer_with_two_neighbors();
    core.message(a, own(1, T0 + 10), T0 + 10);
    let actions = drain(&mut core);
    let warned = logged(&actions);
    assert!(
        matches!(warned.as_slice(),
            [Event::BadFrame { remote, reason }, Event::NeighborLost { .. }]
            if remote.port() == 50001 && reason.contains("never created")),
        "{actions:?}"
    );
    assert!(actions.contains(&Action::Close { conn: a }), "{actions:?}");
    assert_eq!(sent_gossip(&actions), 0, "a forgery was forwarded");
}

#[test]
fn an_echo_of_our_own_message_is_dropped_without_a_warning() {
    let (mut core, a, _) = peer_with_two_neighbors();
    let due = T0 + PeerConfig::new(me(), vec![]).gossip_interval;
    core.timer(Timer::Gossip, due);
    assert_eq!(
        sent_gossip(&drain(&mut core)),
        2,
        "created and sent to both"
    );
    core.message(a, own(1, due), due + 5);
    let actions = drain(&mut core);
    assert!(logged(&actions).is_empty(), "{actions:?}");
    assert!(!actions.contains(&Action::Close { conn: a }));
    assert_eq!(sent_gossip(&actions), 0);
}

#[test]
fn our_origin_stamped_before_we_started_is_dropped_without_a_warning() {
    let (mut core, a, _) = peer_with_two_neighbors();
    core.message(a, own(4, T0 - 1_000), T0 + 10);
    let actions = drain(&mut core);
    assert!(logged(&actions).is_empty(), "{actions:?}");
    assert_eq!(
        sent_gossip(&actions),
        0,
        "an earlier run's message was forwarded"
    );
}

#[test]
fn a_forged_origin_that_is_not_ours_cannot_be_told_apart_and_is_forwarded() {
    let (mut core, a, b) = peer_with_two_neighbors();
    let origin = addr(9999);
    let g = Gossip {
        origin,
        seq: 1,
        ts: T0,
        text: gossip_text(T0, origin, 1),
        hops: 1,
        payload: None,
    };
    core.message(a, Message::Gossip(g), T0 + 10);
    let actions = drain(&mut core);
    let received = |e: &&Event| matches!(e, Event::GossipReceived { .. });
    assert_eq!(logged(&actions).into_iter().filter(received).count(), 1);
    let to_b = |x: &&Action| matches!(x, Action::Send { conn, .. } if *conn == b);
    assert_eq!(actions.iter().filter(to_b).count(), 1, "{actions:?}");
}

#[test]
fn gossip_stamped_beyond_the_seen_ttl_in_the_future_is_one_warning_and_a_close() {
    let (mut core, a, b) = peer_with_two_neighbors();
    let origin = addr(9999);
    let ttl = core.cfg.seen_ttl;
    let forged = |ts: Millis, seq: u64| Message::Gossip(Gossip::standard(origin, seq, ts, 1));
    core.message(a, forged(T0 + 10 + ttl + 1, 99), T0 + 10);
    let actions = drain(&mut core);
    assert!(
        matches!(logged(&actions).as_slice(),
            [Event::BadFrame { reason, .. }, Event::NeighborLost { .. }]
            if reason.contains("in the future")),
        "{actions:?}"
    );
    assert_eq!(sent_gossip(&actions), 0, "a forgery was forwarded");
    core.message(b, forged(T0 + 20, 1), T0 + 20);
    let actions = drain(&mut core);
    let received = |e: &&Event| matches!(e, Event::GossipReceived { seq: 1, .. });
    assert_eq!(
        logged(&actions).into_iter().filter(received).count(),
        1,
        "the origin's real message still counts as new: {actions:?}"
    );
}
