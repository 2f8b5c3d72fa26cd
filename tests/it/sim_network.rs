//! Protocol behaviour on the simulator: the same cores as the daemon, a virtual network,
//! a virtual clock. Each test prints its RNG seed when it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use gossipd::proto::{Event, Node, PeerConfig, PeerCore, SeedConfig, SeedCore};
use gossipd::sim::{Failure, Logged, NetModel, Sim};

const INTERVAL: u64 = 1_000;
const MISSES: u32 = 3;

fn seed_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16))
}

fn peer_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16))
}

/// Seeds then peers (peers start 2 ms apart, all before the first gossip); returns the sim and the peers' node indices.
fn network(seeds: usize, peers: usize, rng_seed: u64) -> (Sim, Vec<usize>) {
    let mut sim = Sim::new(NetModel::default(), rng_seed);
    let seed_addrs: Vec<SocketAddr> = (0..seeds).map(seed_addr).collect();
    for (i, &addr) in seed_addrs.iter().enumerate() {
        let mut cfg = SeedConfig::new(addr);
        cfg.liveness_interval = INTERVAL;
        cfg.liveness_misses = MISSES;
        cfg.idle_timeout = 5 * INTERVAL;
        sim.add(Node::Seed(SeedCore::new(cfg, rng_seed ^ i as u64)), 0);
    }
    let mut idx = Vec::new();
    for i in 0..peers {
        let mut cfg = PeerConfig::new(peer_addr(i), seed_addrs.clone());
        cfg.gossip_interval = 500;
        cfg.messages = 10;
        cfg.liveness_interval = INTERVAL;
        cfg.liveness_misses = MISSES;
        cfg.idle_timeout = 5 * INTERVAL;
        let core = PeerCore::new(cfg, rng_seed.wrapping_mul(31).wrapping_add(i as u64));
        idx.push(sim.add(Node::Peer(core), 10 + 2 * i as u64));
    }
    (sim, idx)
}

/// (receiver, origin, seq) -> number of first receipts logged.
fn receipts(events: &[Logged]) -> BTreeMap<(SocketAddr, SocketAddr, u64), u32> {
    let mut n = BTreeMap::new();
    for l in events {
        if let Event::GossipReceived { origin, seq, .. } = &l.event {
            *n.entry((l.node, *origin, *seq)).or_insert(0) += 1;
        }
    }
    n
}

/// Names the first missing deliveries, to tell a lost message from a late joiner.
fn print_missing(
    events: &[Logged],
    got: &BTreeMap<(SocketAddr, SocketAddr, u64), u32>,
    peers: usize,
) {
    let created = events.iter().filter_map(|l| match &l.event {
        Event::GossipCreated { origin, seq, .. } => Some((l.at, *origin, *seq)),
        _ => None,
    });
    let mut shown = 0;
    for (at, origin, seq) in created {
        for p in (0..peers).map(peer_addr) {
            if p != origin && !got.contains_key(&(p, origin, seq)) && shown < 20 {
                eprintln!("missing: {p} never got {origin}#{seq} (created at {at})");
                shown += 1;
            }
        }
    }
}

fn seed_lists(sim: &Sim, seeds: usize) -> Vec<BTreeSet<SocketAddr>> {
    (0..seeds)
        .filter_map(|i| match sim.node(i) {
            Some(Node::Seed(s)) => Some(s.peers().iter().copied().collect()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_peer_receives_every_message_exactly_once_then_crashed_peers_are_removed() {
    for rng_seed in [1u64, 2, 3] {
        let ok = std::panic::catch_unwind(|| fifty_peers_then_five_crash(rng_seed));
        assert!(ok.is_ok(), "failed with rng seed {rng_seed}");
    }
}

fn fifty_peers_then_five_crash(rng_seed: u64) {
    let (seeds, peers) = (3, 50);
    let (mut sim, idx) = network(seeds, peers, rng_seed);
    sim.run_for(20_000);

    let got = receipts(sim.events());
    let expected = peers * (peers - 1) * 10;
    if got.len() != expected {
        print_missing(sim.events(), &got, peers);
    }
    assert_eq!(got.len(), expected, "distinct deliveries");
    assert!(
        got.values().all(|&n| n == 1),
        "a message was delivered twice"
    );
    for l in sim.events() {
        if let Event::GossipReceived { origin, .. } = &l.event {
            assert_ne!(*origin, l.node, "a peer received its own message");
        }
    }
    let all: BTreeSet<SocketAddr> = (0..peers).map(peer_addr).collect();
    for list in seed_lists(&sim, seeds) {
        assert!(list.is_subset(&all) && !list.is_empty());
    }

    let crash_at = sim.now();
    let crashed: Vec<usize> = (0..5).map(|k| k * 10 + 3).collect();
    let crashed_addrs: BTreeSet<SocketAddr> = crashed.iter().map(|&k| peer_addr(k)).collect();
    for &k in &crashed {
        sim.fail(idx[k], Failure::Silent);
    }
    let deadline = u64::from(MISSES + 1) * INTERVAL + 10;
    sim.run_for(deadline);

    let mut reported = BTreeSet::new();
    for l in sim.events() {
        if let Event::DeadNodeReported { addr } = &l.event {
            assert!(
                crashed_addrs.contains(addr),
                "live peer {addr} reported dead"
            );
            assert!(l.at - crash_at <= deadline, "{addr} reported late");
            reported.insert(*addr);
        }
    }
    assert_eq!(reported, crashed_addrs, "every crashed peer is reported");
    for (i, list) in seed_lists(&sim, seeds).into_iter().enumerate() {
        let registered = registered_at(sim.events(), seed_addr(i));
        let expect: BTreeSet<SocketAddr> = registered.difference(&crashed_addrs).copied().collect();
        assert_eq!(list, expect, "seed {i}: dead peers dropped, live ones kept");
    }
    for l in sim.events() {
        if let Event::PeerRemoved { addr, .. } = &l.event {
            assert!(crashed_addrs.contains(addr), "live peer {addr} removed");
        }
    }
}

/// The peers that registered with `seed`, from its log.
fn registered_at(events: &[Logged], seed: SocketAddr) -> BTreeSet<SocketAddr> {
    events
        .iter()
        .filter(|l| l.node == seed)
        .filter_map(|l| match l.event {
            Event::PeerRegistered { peer } => Some(peer),
            _ => None,
        })
        .collect()
}

#[test]
fn peers_whose_process_dies_are_reported_too() {
    let rng_seed = 7;
    let (mut sim, idx) = network(2, 12, rng_seed);
    sim.run_for(10_000);
    sim.fail(idx[5], Failure::Crash);
    sim.run_for(u64::from(MISSES + 1) * INTERVAL + 10);
    let reported = sim
        .events()
        .iter()
        .any(|l| matches!(l.event, Event::DeadNodeReported { addr } if addr == peer_addr(5)));
    assert!(reported, "rng seed {rng_seed}: crash not reported");
    for list in seed_lists(&sim, 2) {
        assert!(!list.contains(&peer_addr(5)), "rng seed {rng_seed}");
    }
}

#[test]
fn same_rng_seed_replays_the_same_run() {
    let trace = |rng_seed| {
        let (mut sim, _) = network(3, 20, rng_seed);
        sim.run_for(8_000);
        sim.events()
            .iter()
            .map(|l| format!("{} {} {:?}", l.at, l.node, l.event))
            .collect::<Vec<_>>()
    };
    assert_eq!(trace(11), trace(11));
    assert_ne!(trace(11), trace(12));
}

#[test]
fn a_peer_registers_despite_an_unreachable_seed() {
    // Three seeds in the config, one never started: the peer must still reach a majority.
    let mut sim = Sim::new(NetModel::default(), 5);
    let seeds = vec![seed_addr(0), seed_addr(1), seed_addr(2)];
    for &a in &seeds[..2] {
        sim.add(Node::Seed(SeedCore::new(SeedConfig::new(a), 1)), 0);
    }
    for i in 0..4 {
        let core = PeerCore::new(PeerConfig::new(peer_addr(i), seeds.clone()), 40 + i as u64);
        sim.add(Node::Peer(core), 5);
    }
    sim.run_for(5_000);
    for i in 2..6 {
        let Some(Node::Peer(p)) = sim.node(i) else {
            panic!("not a peer")
        };
        assert_eq!(p.registered_seeds().count(), 2, "peer {i} lacks a majority");
        assert!(
            p.connected_neighbors().count() >= 1,
            "peer {i} has no neighbour"
        );
    }
}

#[test]
fn a_peer_that_joins_after_the_first_messages_still_gets_every_one() {
    for rng_seed in [1u64, 2, 3, 4, 5] {
        let ok = std::panic::catch_unwind(|| late_joiner(rng_seed));
        assert!(ok.is_ok(), "failed with rng seed {rng_seed}");
    }
}

/// Eight peers start together and create a message every 500 ms; a ninth starts 1.3 s
/// later, when two rounds have gone round, and links up to a few of them only.
fn late_joiner(rng_seed: u64) {
    let (seeds, early) = (2, 8);
    let (mut sim, _) = network(seeds, early, rng_seed);
    let mut cfg = PeerConfig::new(peer_addr(early), (0..seeds).map(seed_addr).collect());
    cfg.gossip_interval = 500;
    cfg.messages = 10;
    cfg.liveness_interval = INTERVAL;
    cfg.idle_timeout = 5 * INTERVAL;
    sim.add(Node::Peer(PeerCore::new(cfg, rng_seed)), 1_300);
    sim.run_for(15_000);
    let late = peer_addr(early);
    let joined = sim.events().iter().find_map(|l| match l.event {
        Event::NeighborConnected { .. } if l.node == late => Some(l.at),
        _ => None,
    });
    let before: usize = (sim.events().iter())
        .filter(|l| matches!(l.event, Event::GossipCreated { .. }))
        .filter(|l| joined.is_some_and(|j| l.at < j))
        .count();
    assert!(
        before >= early,
        "{before} messages created before it joined"
    );
    let got = receipts(sim.events());
    if got.len() != (early + 1) * early * 10 {
        print_missing(sim.events(), &got, early + 1);
    }
    let late_got = got.iter().filter(|((to, ..), _)| *to == late).count();
    assert_eq!(late_got, early * 10, "the late peer got every message");
    assert!(got.values().all(|&n| n == 1), "a message delivered twice");
}
