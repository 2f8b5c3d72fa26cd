//! What `swarm` and `sim` share: their flags, the deterministic plan of a run (which
//! peers originate gossip, which fail and when), and how nodes are configured for it.

use clap::builder::TypedValueParser as _;
use rand::rngs::SmallRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::cli::duration;
use crate::proto::{Millis, PeerConfig, SeedConfig};
use crate::report::FailureKind;

/// `F@T`: a fraction F of the peers fails at time T after the start (e.g. `0.1@10s`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureSpec {
    pub fraction: f64,
    pub at: Millis,
}

impl FromStr for FailureSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (f, t) = s.split_once('@').ok_or("expected F@T, e.g. 0.1@10s")?;
        let fraction: f64 = f.parse().map_err(|_| format!("'{f}' is not a fraction"))?;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(format!("fraction {fraction} is not between 0 and 1"));
        }
        Ok(FailureSpec {
            fraction,
            at: duration(t)?,
        })
    }
}

/// Without `--duration`, a run that has passed its plan stops once it has made no
/// progress (no delivery, no failure found or removed) for this long.
pub const STALL: Millis = 30_000;

/// Flags common to `swarm` and `sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct StressArgs {
    /// Seeds to start.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64).map(|v| v as usize))]
    pub seeds: usize,
    /// Peers to start.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=10_000_000).map(|v| v as usize))]
    pub peers: usize,
    /// Gossip messages each originator creates.
    #[arg(long, default_value_t = 10)]
    pub messages: u64,
    /// Peers that create gossip [default: all].
    #[arg(long)]
    pub originators: Option<usize>,
    /// Time between an originator's messages.
    #[arg(long, default_value = "500ms", value_parser = duration)]
    pub gossip_interval: Millis,
    /// Time between liveness checks [default: 1 s per 1,000 peers, at least 1 s, so that
    /// liveness traffic stays near 20,000 frames a second however large the run].
    #[arg(long, value_parser = duration)]
    pub liveness_interval: Option<Millis>,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub liveness_misses: u32,
    /// Peers each peer connects to.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024).map(|v| v as usize))]
    pub max_neighbors: usize,
    /// Most peers in a seed's answer.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub peer_list_max: usize,
    /// F@T: a fraction F of the peers crashes at T (sockets closed, no goodbye). Repeatable.
    #[arg(long)]
    pub kill: Vec<FailureSpec>,
    /// F@T: a fraction F of the peers stops reading and answering at T, connections left
    /// open. Repeatable.
    #[arg(long)]
    pub freeze: Vec<FailureSpec>,
    /// No message is created until this long after its originator started, so that the
    /// overlay has formed (peer lists lost to `--loss` asked for again) before the first
    /// one [default: 3 liveness intervals].
    #[arg(long, value_parser = duration)]
    pub warmup: Option<Millis>,
    /// Stop after this long even if deliveries are missing [default: when everything
    /// planned has happened; past the plan, after 30 s without progress, or 10 minutes].
    #[arg(long, value_parser = duration)]
    pub duration: Option<Millis>,
    /// Seed for every random choice [default: random, printed].
    #[arg(long)]
    pub rng_seed: Option<u64>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the nodes' events as JSON Lines to this file.
    #[arg(long)]
    pub events: Option<PathBuf>,
}

/// Which peers (by index, 0-based) originate and which fail, decided from the RNG seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub rng_seed: u64,
    pub originators: Vec<usize>,
    /// (peer index, kind, time after start), in time order.
    pub failures: Vec<(usize, FailureKind, Millis)>,
}

impl StressArgs {
    pub fn originator_count(&self) -> usize {
        self.originators.unwrap_or(self.peers).min(self.peers)
    }

    /// The run's plan. Failing peers are disjoint and never originators while enough
    /// others exist, so "messages created after the failures" have live origins.
    pub fn plan(&self, rng_seed: u64) -> Plan {
        let mut rng = SmallRng::seed_from_u64(rng_seed ^ 0x5EED_F00D);
        let order = sample(&mut rng, self.peers, self.peers).into_vec();
        let originators: Vec<usize> = order
            .iter()
            .copied()
            .take(self.originator_count())
            .collect();
        let mut pool = order.into_iter().rev();
        let specs = self
            .kill
            .iter()
            .map(|s| (FailureKind::Kill, s))
            .chain(self.freeze.iter().map(|s| (FailureKind::Freeze, s)));
        let mut failures = Vec::new();
        for (kind, spec) in specs {
            let n = (spec.fraction * self.peers as f64).round() as usize;
            failures.extend(pool.by_ref().take(n).map(|p| (p, kind, spec.at)));
        }
        failures.sort_by_key(|f| f.2);
        Plan {
            rng_seed,
            originators,
            failures,
        }
    }

    /// The liveness interval: `--liveness-interval`, or 1 s per 1,000 peers (at least 1 s).
    pub fn liveness_interval(&self) -> Millis {
        let scaled = (self.peers as u64).div_ceil(1000) * 1000;
        self.liveness_interval.unwrap_or(scaled.max(1000))
    }

    /// How long after its start an originator creates its first message, at the earliest.
    pub fn warmup(&self) -> Millis {
        self.warmup.unwrap_or(3 * self.liveness_interval())
    }

    /// How long the plan takes: every message created, every failure detected and
    /// removed (a run under load takes longer).
    pub fn planned(&self) -> Millis {
        let gossip = self.warmup() + (self.messages + 2) * self.gossip_interval;
        let last_failure = self
            .kill
            .iter()
            .chain(&self.freeze)
            .map(|s| s.at)
            .max()
            .unwrap_or(0);
        let detection = (u64::from(self.liveness_misses) + 2) * self.liveness_interval();
        gossip.max(last_failure + detection + self.gossip_interval)
    }

    /// How long to run unless `--duration` says otherwise.
    pub fn run_for(&self) -> Millis {
        self.duration.unwrap_or(self.planned() + STALL)
    }

    /// The longest a run can last: `--duration`, or the plan plus 10 minutes for a run
    /// that is still making progress.
    pub fn time_limit(&self) -> Millis {
        self.duration.unwrap_or(self.planned() + 600_000)
    }

    pub fn idle_timeout(&self) -> Millis {
        (u64::from(self.liveness_misses) + 2) * self.liveness_interval()
    }

    pub fn seed_config(&self, addr: SocketAddr) -> SeedConfig {
        let mut cfg = SeedConfig::new(addr);
        cfg.peer_list_max = self.peer_list_max;
        cfg.liveness_interval = self.liveness_interval();
        cfg.liveness_misses = self.liveness_misses;
        cfg.idle_timeout = self.idle_timeout();
        cfg
    }

    /// A peer's config; a peer that is not an originator creates no messages.
    pub fn peer_config(
        &self,
        addr: SocketAddr,
        seeds: Vec<SocketAddr>,
        originator: bool,
    ) -> PeerConfig {
        let mut cfg = PeerConfig::new(addr, seeds);
        cfg.max_neighbors = self.max_neighbors;
        cfg.gossip_interval = self.gossip_interval;
        cfg.messages = if originator { self.messages } else { 0 };
        cfg.gossip_delay = self.warmup();
        cfg.liveness_interval = self.liveness_interval();
        cfg.liveness_misses = self.liveness_misses;
        cfg.idle_timeout = self.idle_timeout();
        cfg
    }
}

/// A per-node RNG seed derived from the run's seed.
pub fn node_seed(rng_seed: u64, node: usize) -> u64 {
    rng_seed ^ (node as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// StressArgs from a list of flags, for tests.
#[cfg(test)]
pub(crate) fn test_args(extra: &[&str]) -> StressArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: StressArgs,
    }
    let mut v = vec!["t"];
    v.extend_from_slice(extra);
    T::parse_from(v).a
}

#[cfg(test)]
mod tests {
    use super::test_args as args;
    use super::*;

    #[test]
    fn failure_specs_read_like_fraction_at_time() {
        assert_eq!(
            "0.1@10s".parse(),
            Ok(FailureSpec {
                fraction: 0.1,
                at: 10_000
            })
        );
        assert!("1.5@1s".parse::<FailureSpec>().is_err());
        assert!("0.1".parse::<FailureSpec>().is_err());
    }

    #[test]
    fn the_plan_is_a_function_of_the_seed_with_disjoint_failures() {
        let a = args(&[
            "--peers",
            "100",
            "--originators",
            "10",
            "--kill",
            "0.1@5s",
            "--freeze",
            "0.05@6s",
        ]);
        let p = a.plan(7);
        assert_eq!(p, a.plan(7));
        assert_ne!(p, a.plan(8));
        assert_eq!(p.originators.len(), 10);
        assert_eq!(p.failures.len(), 15);
        let mut failed: Vec<usize> = p.failures.iter().map(|f| f.0).collect();
        failed.sort_unstable();
        failed.dedup();
        assert_eq!(failed.len(), 15, "no peer fails twice");
        assert!(failed.iter().all(|f| !p.originators.contains(f)));
    }
}
