//! Where a swarm's nodes live and when they start: how many worker processes, which
//! seeds and peers each one hosts, the loopback address each node listens on, and each
//! node's start time. Pure functions of the flags and the plan, so the supervisor and
//! every worker compute the same layout without being told it.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;

use crate::proto::Millis;
use crate::stress::{Plan, StressArgs};

/// File descriptors a worker may plan for, of the 20,000 a process may open here: the
/// rest is headroom for redials, peers that draw more incoming neighbours than average,
/// and the worker's own files.
pub const FD_BUDGET: usize = 15_000;
/// A process may not open more than this; a layout that would need it is refused.
pub const FD_LIMIT: usize = 20_000;
/// Listeners per loopback address. Every listener takes a port from the ephemeral range
/// (about 28,000 ports), and connects share that range, so each address stays well
/// below it; peers go on 127.0.0.2, 127.0.0.3, ... and 127.0.0.1 is left to connects.
pub const LISTENERS_PER_IP: usize = 10_000;
/// Below this many nodes a second worker costs more than it brings.
const NODES_PER_WORKER_MIN: usize = 500;
/// Seeds start first; peers from this long after.
const SEED_LEAD_MS: Millis = 100;
/// Non-originating peers start at this pace across the whole swarm (2,000 a second),
/// so registrations, connects and the liveness timers they arm are spread out.
const START_GAP_US: u64 = 500;

/// What one worker hosts: seed indices and a range of peer indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub seeds: Vec<usize>,
    pub peers: Range<usize>,
}

/// Why a layout cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("--workers {workers} is more than the {nodes} nodes to host")]
    TooManyWorkers { workers: usize, nodes: usize },
    #[error(
        "worker {worker} would need about {fds} file descriptors (a process may open \
         {FD_LIMIT}); use --workers {suggested} or more"
    )]
    TooFewWorkers {
        worker: usize,
        fds: usize,
        suggested: usize,
    },
    #[error(
        "each of the {seeds} seeds would hold about {fds} connections from {peers} peers, \
         more than one worker process can host (it may open {FD_LIMIT} files, and plans \
         for {FD_BUDGET}); {advice}"
    )]
    SeedTooLoaded {
        seeds: usize,
        peers: usize,
        fds: usize,
        advice: String,
    },
    #[error("worker {worker} is not one of the {workers} workers")]
    NoSuchWorker { worker: usize, workers: usize },
}

/// The whole swarm's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub shares: Vec<Share>,
}

/// The seeds a peer registers with: floor(n/2)+1.
fn majority(seeds: usize) -> usize {
    seeds / 2 + 1
}

/// A peer's file descriptors: its listener, its ends of the connections to a majority of
/// seeds, and on average `max_neighbors` outgoing plus as many incoming neighbours.
pub fn fds_per_peer(s: &StressArgs) -> usize {
    1 + majority(s.seeds) + 2 * s.max_neighbors
}

/// A seed's file descriptors: its listener and one registration connection from each
/// peer that chose it (a majority of the seeds, at random).
pub fn fds_per_seed(s: &StressArgs) -> usize {
    1 + (s.peers * majority(s.seeds).min(s.seeds)).div_ceil(s.seeds.max(1))
}

pub fn total_fds(s: &StressArgs) -> usize {
    s.peers * fds_per_peer(s) + s.seeds * fds_per_seed(s)
}

/// Enough workers for the file descriptors, and one per core once there are enough
/// nodes to share.
pub fn default_workers(s: &StressArgs, cores: usize) -> usize {
    let by_fds = total_fds(s).div_ceil(FD_BUDGET);
    let by_cores = cores.min((s.peers + s.seeds).div_ceil(NODES_PER_WORKER_MIN));
    let workers = by_fds.max(by_cores).max(1);
    if check_seed_fds(s).is_err() || Layout::spread(s, workers).fits(s) {
        return workers;
    }
    Layout::fewest_workers(s, workers)
}

/// The fewest seeds (up to the flag's 64) over which `s.peers` peers' registrations fit
/// one worker's budget per seed, if any.
fn seeds_that_fit(s: &StressArgs) -> Option<usize> {
    (s.seeds.max(1)..=64)
        .find(|&seeds| fds_per_seed(&StressArgs { seeds, ..s.clone() }) <= FD_BUDGET)
}

/// A seed's registrations cannot be split over workers: it must fit one process.
fn check_seed_fds(s: &StressArgs) -> Result<(), LayoutError> {
    let fds = fds_per_seed(s);
    if s.seeds == 0 || fds <= FD_BUDGET {
        return Ok(());
    }
    let advice = match seeds_that_fit(s) {
        Some(n) => format!("use --seeds {n} or more, or fewer peers"),
        None => "use fewer peers (a peer registers with a majority of the seeds, so each \
                 seed holds at least half of them)"
            .to_string(),
    };
    Err(LayoutError::SeedTooLoaded {
        seeds: s.seeds,
        peers: s.peers,
        fds,
        advice,
    })
}

impl Layout {
    /// Seeds go round-robin over the workers; peers in contiguous index ranges sized so
    /// every worker plans for about the same number of file descriptors.
    pub fn new(s: &StressArgs, workers: usize) -> Result<Layout, LayoutError> {
        let nodes = s.peers + s.seeds;
        if workers == 0 || workers > nodes {
            return Err(LayoutError::TooManyWorkers { workers, nodes });
        }
        check_seed_fds(s)?;
        let layout = Layout::spread(s, workers);
        if layout.fits(s) {
            return Ok(layout);
        }
        let fds = (0..workers).map(|w| layout.fds(s, w));
        let (worker, fds) = fds.enumerate().max_by_key(|&(_, f)| f).unwrap_or((0, 0));
        Err(LayoutError::TooFewWorkers {
            worker,
            fds,
            suggested: Layout::fewest_workers(s, workers),
        })
    }

    /// The fewest workers, more than `tried`, whose layout fits: the total budget's
    /// share is a lower bound, but a worker hosting a busy seed has room for fewer peers.
    fn fewest_workers(s: &StressArgs, tried: usize) -> usize {
        let nodes = s.peers + s.seeds;
        let from = total_fds(s).div_ceil(FD_BUDGET).max(tried + 1);
        (from..=nodes)
            .find(|&w| Layout::spread(s, w).fits(s))
            .unwrap_or(nodes)
    }

    fn spread(s: &StressArgs, workers: usize) -> Layout {
        let seeds: Vec<Vec<usize>> = (0..workers)
            .map(|w| (w..s.seeds).step_by(workers).collect())
            .collect();
        let counts = peer_counts(s, &seeds);
        let mut next = 0;
        let shares: Vec<Share> = seeds
            .into_iter()
            .zip(counts)
            .map(|(seeds, n)| {
                next += n;
                Share {
                    seeds,
                    peers: next - n..next,
                }
            })
            .collect();
        Layout { shares }
    }

    pub fn share(&self, worker: usize) -> Result<&Share, LayoutError> {
        self.shares.get(worker).ok_or(LayoutError::NoSuchWorker {
            worker,
            workers: self.shares.len(),
        })
    }

    /// The file descriptors worker `w` plans for.
    pub fn fds(&self, s: &StressArgs, w: usize) -> usize {
        self.shares.get(w).map_or(0, |sh| {
            sh.seeds.len() * fds_per_seed(s) + sh.peers.len() * fds_per_peer(s)
        })
    }

    fn fits(&self, s: &StressArgs) -> bool {
        (0..self.shares.len()).all(|w| self.fds(s, w) <= FD_LIMIT)
    }
}

/// Peers per worker: what is left of an equal share of file descriptors once the
/// worker's seeds are counted, in proportion, with the rounding spread out.
fn peer_counts(s: &StressArgs, seeds: &[Vec<usize>]) -> Vec<usize> {
    let fair = total_fds(s).div_ceil(seeds.len());
    let room: Vec<usize> = seeds
        .iter()
        .map(|sd| fair.saturating_sub(sd.len() * fds_per_seed(s)).max(1))
        .collect();
    let total_room: usize = room.iter().sum();
    let mut counts: Vec<usize> = room.iter().map(|r| s.peers * r / total_room).collect();
    let short = s.peers - counts.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..room.len()).collect();
    order.sort_by_key(|&w| std::cmp::Reverse(room.get(w).copied().unwrap_or(0)));
    for w in order.into_iter().cycle().take(short) {
        if let Some(c) = counts.get_mut(w) {
            *c += 1;
        }
    }
    counts
}

/// The loopback address of node `g` (seeds are 0..S, peers S..S+N).
pub fn node_ip(g: usize) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    let step = u32::try_from(g / LISTENERS_PER_IP).unwrap_or(u32::MAX);
    // 127.0.0.0/8 holds 16 million addresses; past that the last one is reused.
    let last = u32::from(Ipv4Addr::new(127, 255, 255, 254));
    IpAddr::V4(Ipv4Addr::from(base.saturating_add(step).min(last)))
}

/// When each peer starts, in ms after the start signal. Seeds start at 0. Peers that
/// only forward start first, at a steady pace in a scattered order (so every worker
/// starts some at a time); then the originators, spread over most of a gossip interval.
/// A peer's first message comes a gossip interval after its first neighbour, so every
/// node is up before the first message, and creations (and the load they bring) stay
/// spread over the interval instead of coming in one burst.
#[derive(Debug, Clone)]
pub struct Schedule {
    offsets: Vec<Millis>,
}

impl Schedule {
    pub fn new(s: &StressArgs, plan: &Plan) -> Schedule {
        let mut offsets = vec![0; s.peers];
        let mut originator = vec![false; s.peers];
        for &p in &plan.originators {
            if let Some(o) = originator.get_mut(p) {
                *o = true;
            }
        }
        let forwarders = originator.iter().filter(|o| !**o).count() as u64;
        let forward_window = forwarders * START_GAP_US / 1000;
        for (p, slot) in offsets.iter_mut().enumerate() {
            if originator.get(p) == Some(&false) {
                *slot = SEED_LEAD_MS + (scatter(p) * forward_window as f64) as Millis;
            }
        }
        let origin_start = SEED_LEAD_MS + forward_window;
        let n = plan.originators.len().max(1) as u64;
        let window = s.gossip_interval - origin_margin(s.gossip_interval);
        for (rank, &p) in plan.originators.iter().enumerate() {
            if let Some(slot) = offsets.get_mut(p) {
                *slot = origin_start + window * rank as u64 / n;
            }
        }
        Schedule { offsets }
    }

    /// Peer `p`'s start, in ms after the start signal.
    pub fn peer(&self, p: usize) -> Millis {
        self.offsets.get(p).copied().unwrap_or(0)
    }

    /// When the last peer starts.
    pub fn last(&self) -> Millis {
        self.offsets.iter().copied().max().unwrap_or(0)
    }
}

/// How long before the first message the last originator starts: time to register and
/// connect, a tenth of the interval but at least a second (at most half the interval).
fn origin_margin(interval: Millis) -> Millis {
    (interval / 10).max(1_000).min(interval / 2)
}

/// A well-spread fraction in [0, 1) for index `i` (the golden-ratio sequence).
fn scatter(i: usize) -> f64 {
    (i as f64 * 0.618_033_988_749_895).fract()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stress::test_args as args;

    #[test]
    fn a_small_swarm_runs_in_one_worker() {
        assert_eq!(default_workers(&args(&["--peers", "10"]), 2), 1);
    }

    #[test]
    fn ten_thousand_peers_need_enough_workers_for_their_file_descriptors() {
        let s = args(&["--peers", "10000", "--seeds", "3"]);
        let w = default_workers(&s, 2);
        let layout = Layout::new(&s, w).unwrap();
        assert!((0..w).all(|i| layout.fds(&s, i) <= FD_BUDGET + fds_per_peer(&s)));
        assert!(w >= total_fds(&s).div_ceil(FD_BUDGET));
    }

    #[test]
    fn every_peer_and_seed_is_hosted_exactly_once() {
        let s = args(&["--peers", "1001", "--seeds", "3"]);
        let layout = Layout::new(&s, 2).unwrap();
        let peers: Vec<usize> = layout
            .shares
            .iter()
            .flat_map(|sh| sh.peers.clone())
            .collect();
        assert_eq!(peers, (0..1001).collect::<Vec<_>>());
        let mut seeds: Vec<usize> = layout
            .shares
            .iter()
            .flat_map(|sh| sh.seeds.clone())
            .collect();
        seeds.sort_unstable();
        assert_eq!(seeds, vec![0, 1, 2]);
    }

    #[test]
    fn too_few_workers_for_the_file_descriptors_is_an_error() {
        let s = args(&["--peers", "10000", "--seeds", "3"]);
        assert!(matches!(
            Layout::new(&s, 1),
            Err(LayoutError::TooFewWorkers { .. })
        ));
        assert!(Layout::new(&args(&["--peers", "2", "--seeds", "1"]), 4).is_err());
    }

    #[test]
    fn a_seed_that_cannot_fit_one_process_is_an_error_that_names_the_seeds_needed() {
        let s = args(&["--peers", "20000", "--seeds", "2"]);
        let err = Layout::new(&s, default_workers(&s, 2)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LayoutError::SeedTooLoaded { .. }), "{text}");
        assert!(text.contains("--seeds 3 or more"), "{text}");
        let fit = args(&["--peers", "20000", "--seeds", "3"]);
        assert!(Layout::new(&fit, default_workers(&fit, 2)).is_ok());
        let s = args(&["--peers", "40000", "--seeds", "3"]);
        let text = Layout::new(&s, 30).unwrap_err().to_string();
        assert!(text.contains("use fewer peers"), "{text}");
    }

    #[test]
    fn the_workers_suggested_for_too_few_are_enough() {
        for (peers, seeds) in [
            ("10000", "3"),
            ("20000", "3"),
            ("5000", "1"),
            ("28000", "63"),
        ] {
            let s = args(&["--peers", peers, "--seeds", seeds]);
            match Layout::new(&s, 1) {
                Err(LayoutError::TooFewWorkers { suggested, .. }) => {
                    assert!(
                        Layout::new(&s, suggested).is_ok(),
                        "{peers}/{seeds}: {suggested}"
                    );
                    assert!(
                        Layout::new(&s, default_workers(&s, 2)).is_ok(),
                        "{peers}/{seeds}"
                    );
                }
                other => panic!("{peers} peers, {seeds} seeds on 1 worker: {other:?}"),
            }
        }
    }

    #[test]
    fn listeners_spread_over_loopback_addresses_past_ten_thousand() {
        assert_eq!(node_ip(0).to_string(), "127.0.0.2");
        assert_eq!(node_ip(LISTENERS_PER_IP).to_string(), "127.0.0.3");
        assert_eq!(node_ip(300 * LISTENERS_PER_IP).to_string(), "127.0.1.46");
    }

    #[test]
    fn forwarders_start_before_originators_and_originators_within_one_interval() {
        let s = args(&["--peers", "100", "--originators", "10"]);
        let plan = s.plan(3);
        let sched = Schedule::new(&s, &plan);
        let first_origin = plan.originators.iter().map(|&p| sched.peer(p)).min();
        let last_forwarder = (0..100)
            .filter(|p| !plan.originators.contains(p))
            .map(|p| sched.peer(p))
            .max();
        assert!(last_forwarder <= first_origin);
        let origin_window = sched.last() - first_origin.unwrap_or(0);
        assert!(origin_window <= s.gossip_interval / 2, "{origin_window}");
        let s = args(&["--peers", "100", "--gossip-interval", "30s"]);
        let sched = Schedule::new(&s, &s.plan(3));
        let origin_window = sched.last() - SEED_LEAD_MS;
        assert!(
            (20_000..=27_000).contains(&origin_window),
            "{origin_window}"
        );
    }
}
