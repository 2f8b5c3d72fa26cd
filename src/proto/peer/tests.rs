//! Unit tests of the peer core: driven directly with chosen `now` values and a fixed RNG
//! seed, asserting on the actions drained from `poll_action()`.

use super::*;
use crate::proto::Severity;

const T0: Millis = 1_700_000_000_000;
const LIVENESS: Millis = 1_000;
const GOSSIP: Millis = 300;
const MISSES: u32 = 3;
const RNG_SEED: u64 = 3;

/// Every `$out` of the items of `$items` that match `$pat`.
macro_rules! pick {
    ($items:expr, $pat:pat $(if $guard:expr)? => $out:expr) => {
        $items
            .iter()
            .filter_map(|x| match x {
                $pat $(if $guard)? => Some($out),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
}

fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn me() -> SocketAddr {
    peer(9000)
}

fn seeds(n: u16) -> Vec<SocketAddr> {
    (1..=n).map(|i| peer(8000 + i)).collect()
}

/// A remote's ephemeral source address, never a listening address.
fn ephemeral(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], port))
}

fn config(addr: SocketAddr, seeds: Vec<SocketAddr>) -> PeerConfig {
    PeerConfig {
        max_neighbors: 2,
        gossip_interval: GOSSIP,
        messages: 3,
        liveness_interval: LIVENESS,
        liveness_misses: MISSES,
        idle_timeout: 1_000_000,
        seed_retry_min: 100,
        seed_retry_max: 1_000,
        ..PeerConfig::new(addr, seeds)
    }
}

fn core(n_seeds: u16) -> PeerCore {
    let mut core = PeerCore::new(config(me(), seeds(n_seeds)), RNG_SEED);
    core.start(T0);
    core
}

fn drain(core: &mut PeerCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

fn sends(actions: &[Action]) -> Vec<(ConnId, Message)> {
    pick!(actions, Action::Send { conn, msg } => (*conn, Message::clone(msg)))
}

fn events(actions: &[Action]) -> Vec<Event> {
    pick!(actions, Action::Log(e) => e.clone())
}

fn warnings(actions: &[Action]) -> Vec<Event> {
    pick!(actions, Action::Log(e) if e.severity() == Severity::Warn => e.clone())
}

fn connects(actions: &[Action]) -> Vec<(ConnId, SocketAddr)> {
    pick!(actions, Action::Connect { conn, addr } => (*conn, *addr))
}

fn dialled(actions: &[Action]) -> Vec<SocketAddr> {
    pick!(actions, Action::Connect { addr, .. } => *addr)
}

fn closes(actions: &[Action]) -> Vec<ConnId> {
    pick!(actions, Action::Close { conn } => *conn)
}

fn timers(actions: &[Action], which: Timer) -> Vec<Millis> {
    pick!(actions, Action::SetTimer { at, timer } if *timer == which => *at)
}

fn gossips(actions: &[Action]) -> Vec<(ConnId, Gossip)> {
    pick!(sends(actions), (c, Message::Gossip(g)) => (*c, g.clone()))
}

fn misses(actions: &[Action]) -> Vec<(SocketAddr, u32)> {
    pick!(events(actions), Event::LivenessMiss { addr, misses } => (*addr, *misses))
}

fn retry_delays(actions: &[Action]) -> Vec<Millis> {
    pick!(events(actions), Event::SeedUnreachable { retry_ms, .. } => *retry_ms)
}

/// The connections the liveness requests among `actions` went out on.
fn asked(actions: &[Action]) -> Vec<ConnId> {
    pick!(sends(actions), (c, Message::LivenessRequest { .. }) => *c)
}

/// The one item of `items`.
fn only<T: std::fmt::Debug>(mut items: Vec<T>) -> T {
    assert_eq!(items.len(), 1, "{items:?}");
    items.remove(0)
}

fn gossip(origin: SocketAddr, seq: u64, hops: u32) -> Gossip {
    let (ts, text, payload) = (T0, gossip_text(T0, origin, seq), None);
    Gossip {
        origin,
        seq,
        ts,
        text,
        hops,
        payload,
    }
}

fn gossip_msg(origin: SocketAddr, seq: u64) -> Message {
    Message::Gossip(gossip(origin, seq, 1))
}

fn hello(addr: SocketAddr) -> Message {
    Message::Hello { addr }
}

fn list(peers: &[SocketAddr]) -> Message {
    let peers = peers.to_vec();
    Message::PeerList { peers }
}

fn request(ts: Millis, from: SocketAddr) -> Message {
    Message::LivenessRequest { ts, from }
}

fn refused() -> Disconnect {
    Disconnect::ConnectFailed("refused".into())
}

/// A peer with two seeds (a majority of two) that have both answered.
struct Harness {
    core: PeerCore,
    /// The registration connections, in id order.
    seeds: Vec<ConnId>,
}

impl Harness {
    /// Both seeds answer `peers` at T0; returns the actions after the second answer.
    fn registered(cfg: PeerConfig, peers: &[SocketAddr]) -> (Harness, Vec<Action>) {
        let mut core = PeerCore::new(cfg, RNG_SEED);
        core.start(T0);
        let mut seeds: Vec<ConnId> = connects(&drain(&mut core)).iter().map(|c| c.0).collect();
        seeds.sort();
        let mut last = Vec::new();
        for &conn in &seeds {
            core.connected(conn, T0);
            core.message(conn, list(peers), T0);
            last = drain(&mut core);
        }
        assert_eq!(core.registered_seeds().count(), 2);
        (Harness { core, seeds }, last)
    }

    /// Registered, with each of `peers` dialled and connected at T0; conns in port order.
    fn with_neighbors(peers: &[SocketAddr]) -> (Harness, Vec<ConnId>) {
        let max_neighbors = peers.len();
        let cfg = PeerConfig {
            max_neighbors,
            ..config(me(), seeds(2))
        };
        let (mut h, dials) = Harness::registered(cfg, peers);
        let mut dials = connects(&dials);
        dials.sort_by_key(|d| d.1);
        assert_eq!(dials.iter().map(|d| d.1).collect::<Vec<_>>(), peers);
        for &(conn, _) in &dials {
            h.core.connected(conn, T0);
        }
        h.drain();
        (h, dials.into_iter().map(|d| d.0).collect())
    }

    fn drain(&mut self) -> Vec<Action> {
        drain(&mut self.core)
    }

    fn accept_hello(&mut self, from: SocketAddr, now: Millis) -> (ConnId, Vec<Action>) {
        let conn = self.core.accept(ephemeral(from.port()), now);
        self.core.message(conn, hello(from), now);
        (conn, self.drain())
    }

    /// The liveness check due at T0 + k intervals.
    fn check(&mut self, k: u64) -> Vec<Action> {
        self.core.timer(Timer::Liveness, T0 + k * LIVENESS);
        self.drain()
    }

    fn reply(&mut self, conn: ConnId, to: SocketAddr, now: Millis) {
        let (ts, from) = (now, me());
        let reply = Message::LivenessReply { ts, from, to };
        self.core.message(conn, reply, now);
        self.drain();
    }

    fn neighbors(&self) -> Vec<SocketAddr> {
        self.core.connected_neighbors().collect()
    }
}

#[test]
fn start_chooses_a_random_majority_of_seeds_and_connects_to_them() {
    for (n, majority) in [(1, 1), (2, 2), (3, 2), (5, 3)] {
        let actions = drain(&mut core(n));
        let chosen = pick!(events(&actions), Event::SeedsChosen { seeds } => seeds.clone());
        let chosen = only(chosen);
        let distinct: BTreeSet<SocketAddr> = chosen.iter().copied().collect();
        assert_eq!(distinct.len(), majority, "n={n}: {chosen:?}");
        assert!(distinct.iter().all(|s| seeds(n).contains(s)));
        assert_eq!(dialled(&actions), chosen, "n={n}");
        assert!(sends(&actions).is_empty(), "register waits");
        assert_eq!(timers(&actions, Timer::Liveness), vec![T0 + LIVENESS]);
    }
    let drawn: BTreeSet<BTreeSet<SocketAddr>> = (0..20)
        .map(|rng_seed| {
            let mut core = PeerCore::new(config(me(), seeds(5)), rng_seed);
            core.start(T0);
            dialled(&drain(&mut core)).into_iter().collect()
        })
        .collect();
    assert!(drawn.len() > 3, "drawn at random: {drawn:?}");
}

#[test]
fn a_connected_seed_connection_gets_register() {
    let mut core = core(2);
    for (conn, _) in connects(&drain(&mut core)) {
        core.connected(conn, T0 + 5);
        let actions = drain(&mut core);
        assert_eq!(actions.len(), 1, "{actions:?}");
        let register = Message::Register { addr: me() };
        assert_eq!(sends(&actions), vec![(conn, register)]);
    }
}

#[test]
fn neighbours_are_dialled_only_after_a_majority_of_seeds_answered() {
    let mut core = core(3);
    let chosen = connects(&drain(&mut core));
    let (first, second) = (chosen[0].0, chosen[1].0);
    let listed = [me(), peer(9001), peer(9002), peer(9003)];
    core.connected(first, T0);
    core.message(first, list(&listed), T0);
    assert_eq!(dialled(&drain(&mut core)), vec![], "one answer of two");
    core.connected(second, T0);
    core.message(second, list(&[]), T0);
    let picked: BTreeSet<SocketAddr> = dialled(&drain(&mut core)).into_iter().collect();
    assert_eq!(picked.len(), 2, "max_neighbors distinct: {picked:?}");
    assert!(!picked.contains(&me()), "never itself");
    core.message(first, list(&[peer(9004)]), T0 + 1);
    assert_eq!(dialled(&drain(&mut core)), vec![], "slots full");
}

#[test]
fn an_unreachable_candidate_is_dropped_and_another_dialled() {
    let all = [peer(9001), peer(9002), peer(9003)];
    let (mut h, dials) = Harness::registered(config(me(), seeds(2)), &all);
    let dials = connects(&dials);
    h.core.closed(dials[0].0, refused(), T0 + 5);
    let actions = h.drain();
    let (addr, error) = (dials[0].1, "connect failed: refused".to_string());
    assert_eq!(events(&actions), vec![Event::ConnectFailed { addr, error }]);
    let spare = all.into_iter().filter(|p| dials.iter().all(|d| d.1 != *p));
    assert_eq!(dialled(&actions), spare.collect::<Vec<_>>());
    h.core.closed(dials[1].0, refused(), T0 + 6);
    assert_eq!(dialled(&h.drain()), vec![], "none left to dial");
}

#[test]
fn the_dialler_sends_hello_and_the_acceptor_answers_hello() {
    let (mut h, dials) = Harness::registered(config(me(), seeds(2)), &[peer(9001)]);
    let (out, addr) = only(connects(&dials));
    h.core.connected(out, T0 + 1);
    let dialler = h.drain();
    assert_eq!(sends(&dialler), vec![(out, hello(me()))]);
    assert!(events(&dialler).contains(&Event::NeighborConnected { addr }));
    h.core.message(out, hello(addr), T0 + 2);
    assert!(h.drain().is_empty(), "the dialler ignores it");

    let (inbound, acceptor) = h.accept_hello(peer(9002), T0 + 3);
    assert_eq!(sends(&acceptor), vec![(inbound, hello(me()))]);
    let addr = peer(9002);
    assert!(events(&acceptor).contains(&Event::NeighborConnected { addr }));
    assert_eq!(h.neighbors(), vec![peer(9001), peer(9002)]);
}

#[test]
fn the_first_gossip_comes_one_interval_after_the_first_neighbour() {
    let (mut h, dials) = Harness::registered(config(me(), seeds(2)), &[peer(9001), peer(9002)]);
    assert!(timers(&dials, Timer::Gossip).is_empty());
    let dials = connects(&dials);
    let first = T0 + 10;
    h.core.connected(dials[0].0, first);
    assert_eq!(timers(&h.drain(), Timer::Gossip), vec![first + GOSSIP]);
    h.core.connected(dials[1].0, first + 50);
    assert!(timers(&h.drain(), Timer::Gossip).is_empty(), "armed once");
    h.core.timer(Timer::Gossip, first + GOSSIP - 1);
    assert!(h.drain().is_empty(), "not before the interval");
    let ts = first + GOSSIP;
    h.core.timer(Timer::Gossip, ts);
    let actions = h.drain();
    let (origin, seq, text) = (me(), 1, format!("{ts}:127.0.0.1:9000:1"));
    let want = Gossip {
        ts,
        text: text.clone(),
        ..gossip(origin, seq, 1)
    };
    let created = Event::GossipCreated { origin, seq, text };
    assert_eq!(events(&actions), vec![created]);
    let mut sent = gossips(&actions);
    sent.sort_by_key(|s| s.0);
    assert_eq!(sent, vec![(dials[0].0, want.clone()), (dials[1].0, want)]);
}

#[test]
fn with_a_gossip_delay_the_first_message_waits_for_it() {
    let delay = 5 * GOSSIP;
    let cfg = PeerConfig {
        gossip_delay: delay,
        ..config(me(), seeds(2))
    };
    let (mut h, dials) = Harness::registered(cfg, &[peer(9001)]);
    let dial = connects(&dials)[0].0;
    h.core.connected(dial, T0 + 10);
    assert_eq!(timers(&h.drain(), Timer::Gossip), vec![T0 + delay]);
    h.core.timer(Timer::Gossip, T0 + delay);
    let first = gossips(&h.drain());
    assert_eq!(first.len(), 1, "{first:?}");
    h.core.timer(Timer::Gossip, T0 + delay + GOSSIP);
    assert_eq!(gossips(&h.drain()).len(), 1, "then one per interval");
}

#[test]
fn exactly_messages_messages_are_created() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001)]);
    let (mut due, mut seqs) = (Some(T0 + GOSSIP), Vec::new());
    while let Some(at) = due {
        h.core.timer(Timer::Gossip, at);
        let actions = h.drain();
        seqs.extend(gossips(&actions).iter().map(|g| g.1.seq));
        due = timers(&actions, Timer::Gossip).first().copied();
        assert!(seqs.len() <= 10, "runaway gossip timer");
    }
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(h.core.stats().gossip_created, 3);
    let later = T0 + 100 * GOSSIP;
    h.core.timer(Timer::Gossip, later);
    assert!(h.drain().is_empty());
    h.core.closed(conns[0], Disconnect::Closed, later);
    let (_, back) = h.accept_hello(peer(9001), later);
    assert!(timers(&back, Timer::Gossip).is_empty(), "not armed again");
}

#[test]
fn with_no_neighbour_open_the_gossip_timer_creates_nothing_and_rearms() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001)]);
    h.core.closed(conns[0], Disconnect::Closed, T0 + 1);
    h.drain();
    h.core.timer(Timer::Gossip, T0 + GOSSIP);
    let actions = h.drain();
    assert!(events(&actions).is_empty() && sends(&actions).is_empty());
    assert_eq!(timers(&actions, Timer::Gossip), vec![T0 + 2 * GOSSIP]);
    let (back, _) = h.accept_hello(peer(9001), T0 + GOSSIP + 1);
    h.core.timer(Timer::Gossip, T0 + 2 * GOSSIP);
    let (conn, sent) = only(gossips(&h.drain()));
    assert_eq!((conn, sent.seq), (back, 1));
}

#[test]
fn a_received_gossip_is_logged_once_and_forwarded_to_every_other_neighbour() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001), peer(9002)]);
    let (inbound, _) = h.accept_hello(peer(9003), T0);
    let payload = Some(serde_json::json!({"w": [0.5]}));
    let g = Gossip {
        payload,
        ..gossip(peer(9007), 4, 2)
    };
    h.core.message(conns[0], Message::Gossip(g.clone()), T0 + 1);
    let actions = h.drain();
    let (origin, seq, text, from) = (peer(9007), 4, g.text.clone(), peer(9001));
    let (hops, created_ts) = (2, T0);
    let received = Event::GossipReceived {
        origin,
        seq,
        text,
        from,
        hops,
        created_ts,
    };
    assert_eq!(events(&actions), vec![received]);
    let forwarded = Gossip { hops: 3, ..g };
    let mut sent = gossips(&actions);
    sent.sort_by_key(|s| s.0);
    let want = vec![(conns[1], forwarded.clone()), (inbound, forwarded)];
    assert_eq!(sent, want);
}

#[test]
fn a_duplicate_gossip_is_dropped_and_absorb_duplicate_agrees() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001), peer(9002)]);
    let g = gossip(peer(9007), 1, 1);
    assert!(!h.core.absorb_duplicate(conns[0], &g, T0 + 1));
    h.core.message(conns[0], Message::Gossip(g.clone()), T0 + 1);
    assert_eq!(gossips(&h.drain()).len(), 1, "first sight: forwarded");
    assert!(h.core.absorb_duplicate(conns[1], &g, T0 + 2));
    h.core.message(conns[1], Message::Gossip(g), T0 + 2);
    assert!(h.drain().is_empty(), "a duplicate is dropped silently");
    let stats = h.core.stats();
    let counts = (stats.gossip_frames_received, stats.gossip_first_receipts);
    assert_eq!(counts, (3, 1));
    let now = T0 + GOSSIP;
    h.core.timer(Timer::Gossip, now);
    let own = gossips(&h.drain()).remove(0).1;
    assert!(h.core.absorb_duplicate(conns[0], &own, now + 1));
    h.core.message(conns[0], Message::Gossip(own), now + 1);
    assert!(h.drain().is_empty(), "its own message coming back");
}

#[test]
fn a_liveness_request_is_answered_on_the_same_connection() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001)]);
    let pre_hello = h.core.accept(ephemeral(9005), T0);
    for conn in [conns[0], h.seeds[0], pre_hello] {
        let (ts, from, to, request_ts) = (77, peer(9001), me(), 77);
        h.core.message(conn, request(ts, from), T0 + 1);
        let actions = h.drain();
        let reply = Message::LivenessReply { ts, from, to };
        assert_eq!(sends(&actions), vec![(conn, reply)]);
        let logged = Event::LivenessRequest { from, request_ts };
        assert_eq!(events(&actions), vec![logged]);
    }
}

#[test]
fn a_neighbour_that_misses_its_checks_is_reported_dead_and_forgotten() {
    let all = [peer(9001), peer(9002), peer(9003)];
    let (mut h, dials) = Harness::registered(config(me(), seeds(2)), &all);
    let dials = connects(&dials);
    let ((dead_conn, dead), (live_conn, live)) = (dials[0], dials[1]);
    for &(conn, _) in &dials {
        h.core.connected(conn, T0);
    }
    h.drain();
    for k in 1..=MISSES {
        let check = h.check(k.into());
        let missed = pick!(misses(&check), (a, n) if *a == dead => *n);
        assert_eq!(missed, Vec::from_iter((k > 1).then_some(k - 1)));
        assert!(asked(&check).contains(&dead_conn), "asked at {k}");
        h.reply(live_conn, live, T0 + u64::from(k) * LIVENESS + 1);
    }
    let (ts, reporter) = (T0 + u64::from(MISSES + 1) * LIVENESS, me());
    let check = h.check((MISSES + 1).into());
    assert!(events(&check).contains(&Event::DeadNodeReported { addr: dead }));
    let report = Message::DeadNode {
        addr: dead,
        ts,
        reporter,
    };
    let mut reported = pick!(sends(&check), (c, m) if *m == report => *c);
    reported.sort();
    assert_eq!(reported, h.seeds, "to every registered seed");
    assert_eq!(closes(&check), vec![dead_conn]);
    assert!(!asked(&check).contains(&dead_conn), "not asked once dead");
    let spare = all.into_iter().filter(|p| *p != dead && *p != live);
    assert_eq!(dialled(&check), spare.collect::<Vec<_>>(), "refilled");
    assert_eq!(h.neighbors(), vec![live]);
    h.core.message(dead_conn, gossip_msg(dead, 1), ts + 1);
    assert!(h.drain().is_empty(), "its connection is gone");
    let next = h.check((MISSES + 2).into());
    assert!(misses(&next).iter().all(|m| m.0 != dead), "forgotten");
    assert!(!dialled(&next).contains(&dead), "not a candidate");
}

#[test]
fn a_liveness_reply_resets_the_miss_count() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001)]);
    h.check(1);
    h.check(2);
    assert_eq!(misses(&h.check(3)), vec![(peer(9001), 2)]);
    h.reply(conns[0], peer(9001), T0 + 3 * LIVENESS + 1);
    assert!(misses(&h.check(4)).is_empty());
    assert_eq!(misses(&h.check(5)), vec![(peer(9001), 1)]);
    h.check(6);
    assert_eq!(h.neighbors(), vec![peer(9001)], "two misses only");
}

#[test]
fn any_frame_from_a_neighbour_counts_as_a_sign_of_life() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001)]);
    h.check(1);
    h.check(2);
    assert_eq!(misses(&h.check(3)), vec![(peer(9001), 2)]);
    let now = T0 + 3 * LIVENESS + 1;
    h.core.message(conns[0], gossip_msg(peer(9001), 1), now);
    h.drain();
    assert!(misses(&h.check(4)).is_empty(), "gossip proved it alive");
    assert_eq!(
        misses(&h.check(5)),
        vec![(peer(9001), 1)],
        "silence counts again"
    );
}

#[test]
fn input_waiting_unread_from_a_neighbour_counts_as_a_sign_of_life() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001)]);
    h.check(1);
    h.check(2);
    h.core.input_waiting(conns[0], T0 + 3 * LIVENESS);
    assert!(
        misses(&h.check(3)).is_empty(),
        "its bytes wait in our socket"
    );
    h.core.input_waiting(ConnId(999), T0 + 3 * LIVENESS);
    assert!(h.drain().is_empty(), "an unknown connection is ignored");
}

#[test]
fn frames_read_late_count_from_when_they_arrived_not_when_they_were_read() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001)]);
    h.check(1);
    // Sent before our request of check 1, read only after it: not an answer.
    let read = T0 + LIVENESS + 2_000;
    h.core.message(conns[0], gossip_msg(peer(9001), 1), read);
    h.core.arrived(conns[0], T0 + LIVENESS - 5);
    h.drain();
    assert_eq!(
        misses(&h.check(2)),
        vec![(peer(9001), 1)],
        "a miss all the same"
    );
    // Input waiting unread since before the request of check 2: no answer either.
    h.core.input_waiting(conns[0], T0 + 2 * LIVENESS - 5);
    assert_eq!(misses(&h.check(3)), vec![(peer(9001), 2)]);
    // What came after a request answers it, however late it is read.
    h.core
        .message(conns[0], gossip_msg(peer(9001), 2), T0 + 4 * LIVENESS - 1);
    h.core.arrived(conns[0], T0 + 3 * LIVENESS + 1);
    h.drain();
    assert!(misses(&h.check(4)).is_empty(), "answered");
}

#[test]
fn a_lost_outgoing_neighbour_is_redialled_at_the_next_check() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001)]);
    let (inbound, _) = h.accept_hello(peer(9002), T0);
    h.check(1);
    h.core.closed(conns[0], Disconnect::Closed, T0 + 1_500);
    h.core.closed(inbound, Disconnect::Closed, T0 + 1_500);
    let lost = h.drain();
    let (addr, reason) = (peer(9001), "connection closed by remote".into());
    assert!(events(&lost).contains(&Event::NeighborLost { addr, reason }));
    assert!(connects(&lost).is_empty(), "the redial waits");
    let check = h.check(2);
    assert_eq!(misses(&check), vec![(peer(9001), 1), (peer(9002), 1)]);
    let (redial, addr) = only(connects(&check));
    assert_eq!(addr, peer(9001), "an incoming one redials itself");
    h.core.connected(redial, T0 + 2_100);
    assert_eq!(sends(&h.drain()), vec![(redial, hello(me()))]);
    let check = h.check(3);
    assert_eq!(misses(&check), vec![(peer(9002), 2)], "9001 reset");
    assert_eq!(asked(&check), vec![redial]);
}

/// One end of a pair of peers that dial each other.
struct End {
    h: Harness,
    addr: SocketAddr,
    dial: ConnId,
    inbound: Option<ConnId>,
    closed: Vec<ConnId>,
}

fn end(addr: SocketAddr, other: SocketAddr) -> End {
    let cfg = PeerConfig {
        max_neighbors: 1,
        ..config(addr, seeds(2))
    };
    let (h, dials) = Harness::registered(cfg, &[other]);
    let (dial, _) = only(connects(&dials));
    let (inbound, closed) = (None, Vec::new());
    End {
        h,
        addr,
        dial,
        inbound,
        closed,
    }
}

/// Runs both ends' chains (the dialler connects, then the other end accepts and reads its
/// hello), interleaved as `order` says: the n-th mention of an end runs its n-th step.
fn cross_connect(order: [usize; 4]) -> [End; 2] {
    let mut ends = [end(peer(9001), peer(9002)), end(peer(9002), peer(9001))];
    let mut connected = [false; 2];
    for (t, &i) in order.iter().enumerate() {
        let now = T0 + 1 + t as u64;
        if !connected[i] {
            let e = &mut ends[i];
            e.h.core.connected(e.dial, now);
            connected[i] = true;
        } else {
            let (hello, remote) = (hello(ends[i].addr), ephemeral(ends[i].addr.port()));
            let e = &mut ends[1 - i];
            let conn = e.h.core.accept(remote, now);
            e.h.core.message(conn, hello, now);
            e.inbound = Some(conn);
        }
        for e in ends.iter_mut() {
            e.closed.extend(closes(&e.h.drain()));
        }
    }
    ends
}

#[test]
fn both_ends_keep_the_connection_opened_by_the_smaller_address() {
    let orders = [
        [0, 0, 1, 1],
        [0, 1, 0, 1],
        [0, 1, 1, 0],
        [1, 0, 0, 1],
        [1, 0, 1, 0],
        [1, 1, 0, 0],
    ];
    for order in orders {
        let [small, large] = cross_connect(order);
        // The smaller end keeps its dial; the larger keeps the one it accepted.
        let kept = [Some(small.dial), large.inbound];
        let lost = [small.inbound, Some(large.dial)];
        for ((mut e, kept), lost) in [small, large].into_iter().zip(kept).zip(lost) {
            assert_eq!(e.closed, Vec::from_iter(lost), "{order:?}");
            assert_eq!(asked(&e.h.check(1)), Vec::from_iter(kept), "{order:?}");
            assert_eq!(e.h.neighbors().len(), 1);
        }
    }
}

#[test]
fn a_second_connection_opened_by_the_same_end_replaces_the_first() {
    let (mut h, _) = Harness::registered(config(me(), seeds(2)), &[]);
    let (older, _) = h.accept_hello(peer(9001), T0);
    let (newer, actions) = h.accept_hello(peer(9001), T0 + 10);
    assert_eq!(closes(&actions), vec![older]);
    h.core.message(older, gossip_msg(peer(9001), 1), T0 + 11);
    assert!(h.drain().is_empty(), "the older connection is gone");
    assert_eq!(asked(&h.check(1)), vec![newer]);
}

#[test]
fn a_protocol_error_logs_exactly_one_warning_and_closes_the_connection() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001)]);
    let pre_hello = h.core.accept(ephemeral(9002), T0);
    let own_hello = h.core.accept(ephemeral(9003), T0);
    let register = Message::Register { addr: peer(9001) };
    let cases = [
        (conns[0], register, peer(9001), "unexpected register frame"),
        (
            pre_hello,
            gossip_msg(peer(9002), 1),
            ephemeral(9002),
            "unexpected gossip frame",
        ),
        (
            own_hello,
            hello(me()),
            ephemeral(9003),
            "hello names our own address",
        ),
    ];
    for (conn, msg, remote, reason) in cases {
        h.core.message(conn, msg, T0 + 1);
        let actions = h.drain();
        let bad_frame = Event::BadFrame {
            remote,
            reason: reason.into(),
        };
        assert_eq!(warnings(&actions), vec![bad_frame]);
        assert_eq!(closes(&actions), vec![conn]);
        h.core.message(conn, request(1, remote), T0 + 2);
        assert!(h.drain().is_empty(), "{reason}: conn forgotten");
    }
    assert!(h.neighbors().is_empty());
}

#[test]
fn a_protocol_error_on_a_seed_connection_logs_exactly_one_warning() {
    let (mut h, _) = Harness::registered(config(me(), seeds(2)), &[]);
    let conn = h.seeds[0];
    h.core.message(conn, hello(peer(9001)), T0 + 1);
    let actions = h.drain();
    assert_eq!(closes(&actions), vec![conn]);
    assert_eq!(warnings(&actions).len(), 1, "{actions:?}");
}

#[test]
fn an_idle_pending_connect_logs_exactly_one_warning() {
    let cfg = PeerConfig {
        idle_timeout: 10_000,
        ..config(me(), seeds(2))
    };
    let (mut h, dials) = Harness::registered(cfg, &[peer(9001)]);
    let (conn, _) = only(connects(&dials));
    for seed_conn in h.seeds.clone() {
        h.core
            .message(seed_conn, request(T0, peer(8001)), T0 + 9_000);
    }
    h.drain();
    h.core.timer(Timer::IdleSweep, T0 + 10_000);
    let actions = h.drain();
    assert_eq!(closes(&actions), vec![conn], "only the dial is idle");
    assert_eq!(warnings(&actions).len(), 1, "{actions:?}");
}

#[test]
fn input_on_an_unknown_connection_is_ignored() {
    let (mut h, _) = Harness::with_neighbors(&[peer(9001)]);
    let (unknown, g) = (ConnId(999), gossip(peer(9001), 1, 1));
    assert!(!h.core.absorb_duplicate(unknown, &g, T0));
    h.core.message(unknown, Message::Gossip(g), T0);
    h.core.message(unknown, list(&[peer(9005)]), T0);
    h.core.connected(unknown, T0);
    h.core.closed(unknown, refused(), T0);
    assert!(h.drain().is_empty());
    assert_eq!(h.core.stats(), PeerStats::default());
}

#[test]
fn stale_timer_wake_ups_do_nothing() {
    let (mut h, _) = Harness::with_neighbors(&[peer(9001)]);
    h.core.timer(Timer::Liveness, T0 + LIVENESS - 1);
    h.core.timer(Timer::Gossip, T0 + GOSSIP - 1);
    h.core.timer(Timer::SeedRetry, T0 + LIVENESS);
    assert!(h.drain().is_empty());
    h.check(1);
    h.check(2);
    assert!(h.check(2).is_empty(), "a second wake-up for one check");
    assert_eq!(misses(&h.check(3)), vec![(peer(9001), 2)]);
}

// After the helpers and macros above, which they use.
mod liveness;
mod seeds;

/// A million simulated peers hold about ten connections each, and a frame reads one.
#[test]
fn a_connection_entry_is_48_bytes() {
    assert_eq!(std::mem::size_of::<super::PeerConn>(), 48);
}

/// A connection names an IPv4 neighbour itself and finds an IPv6 one in the neighbour
/// table: either way, what arrives on it is from the neighbour's announced address, not
/// from the ephemeral end of the connection it opened.
#[test]
fn frames_from_an_ipv4_or_ipv6_neighbour_are_from_its_announced_address() {
    let v6: SocketAddr = "[::1]:9005".parse().expect("an IPv6 address");
    let (mut h, _) = Harness::registered(config(me(), seeds(2)), &[]);
    for (i, from) in [peer(9004), v6].into_iter().enumerate() {
        let conn = h.core.accept(ephemeral(50_000 + i as u16), T0);
        h.core.message(conn, hello(from), T0);
        h.drain();
        h.core
            .message(conn, gossip_msg(peer(9007), 1 + i as u64), T0 + 1);
        let logged_from: Vec<SocketAddr> = events(&h.drain())
            .into_iter()
            .filter_map(|e| match e {
                Event::GossipReceived { from, .. } => Some(from),
                _ => None,
            })
            .collect();
        assert_eq!(logged_from, vec![from]);
        h.core.closed(conn, Disconnect::Closed, T0 + 2);
        let lost = events(&h.drain());
        assert!(
            lost.iter()
                .any(|e| matches!(e, Event::NeighborLost { addr, .. } if *addr == from)),
            "{lost:?}"
        );
    }
}
