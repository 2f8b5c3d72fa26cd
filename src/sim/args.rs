//! `gossipd sim` flags: the stress flags shared with `swarm`, plus the virtual network's
//! latency, loss and partitions, validated into a [`Scenario`] in one place.

use clap::builder::TypedValueParser;
use clap::Parser;
use std::str::FromStr;

use super::scenario::{Scenario, ScenarioError};
use super::{FrameKinds, NetModel};
use crate::cli::duration;
use crate::proto::Millis;
use crate::stress::StressArgs;

/// `gossipd sim` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    #[command(flatten)]
    pub stress: StressArgs,
    /// One-way latency of every frame, connect and close: fixed (`5ms`) or uniform over a
    /// range (`1ms..20ms`).
    #[arg(long, default_value = "1ms..5ms")]
    pub latency: Latency,
    /// Probability that a frame is lost, 0 to 1 (connects and closes are not lost).
    #[arg(long, default_value_t = 0.0, value_parser = loss)]
    pub loss: f64,
    /// The frame types `--loss` applies to: `all`, or `type` names separated by commas.
    /// By default the traffic that flows all the time (gossip and liveness); `all` also
    /// drops one-off handshake frames (`register`, `peer_list`, `hello`), which delays a
    /// peer's join: it then gets only the last 256 messages each new neighbour relayed.
    #[arg(long, default_value = "gossip,liveness_request,liveness_reply")]
    pub loss_types: FrameKinds,
    /// F@T..T2: a fraction F of the peers is cut off from the other peers and the seeds
    /// from T until T2 (frames across are lost, connects refused), then healed. Repeatable.
    #[arg(long)]
    pub partition: Vec<PartitionSpec>,
    /// Threads that run the nodes of a busy virtual millisecond (default: one per core).
    /// The report is the same for any number.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256).map(usize::from))]
    pub threads: Option<usize>,
}

/// The flags alone, for building a [`SimArgs`] from a list of words.
#[derive(Debug, Parser)]
#[command(name = "gossipd sim")]
struct SimFlags {
    #[command(flatten)]
    args: SimArgs,
}

impl SimArgs {
    /// Parses `gossipd sim` flags, e.g. `["--peers", "2000", "--loss", "0.01"]`.
    pub fn from_flags<I, S>(flags: I) -> Result<SimArgs, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let words = std::iter::once("gossipd-sim".into()).chain(flags.into_iter().map(Into::into));
        SimFlags::try_parse_from(words).map(|f| f.args)
    }

    /// The run these flags describe, with `rng_seed` for every random choice.
    /// Without `--warmup`, a simulated overlay forms within milliseconds, so messages start
    /// at once, unless `--loss` drops handshake frames (then 3 liveness intervals, in which
    /// a peer whose `peer_list` was lost asks again).
    pub fn scenario(&self, rng_seed: u64) -> Result<Scenario, ScenarioError> {
        let mut stress = self.stress.clone();
        let slow_joins = self.loss > 0.0 && self.loss_types.has_handshakes();
        stress.warmup = stress.warmup.or(Some(if slow_joins {
            3 * stress.liveness_interval()
        } else {
            0
        }));
        let scenario = Scenario {
            stress,
            rng_seed,
            net: NetModel {
                latency_min: self.latency.min,
                latency_max: self.latency.max,
                loss: self.loss,
            },
            lossy: self.loss_types,
            partitions: self.partition.clone(),
            threads: self.threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            }),
            exits_after: false,
        };
        scenario.validate()?;
        Ok(scenario)
    }
}

/// A one-way latency: uniform over `min..=max` ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub min: Millis,
    pub max: Millis,
}

impl FromStr for Latency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (min, max) = match s.split_once("..") {
            Some((a, b)) => (duration(a)?, duration(b)?),
            None => (duration(s)?, duration(s)?),
        };
        if min > max {
            return Err(format!("'{s}': the range ends before it starts"));
        }
        if max > 60_000 {
            return Err(format!("'{s}': latencies above 1m are not supported"));
        }
        Ok(Latency { min, max })
    }
}

fn loss(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a probability"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("{p} is not between 0 and 1"));
    }
    Ok(p)
}

/// `F@T..T2`: a fraction F of the peers cut off from the rest from T until T2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionSpec {
    pub fraction: f64,
    pub from: Millis,
    pub until: Millis,
}

impl FromStr for PartitionSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (f, span) = s
            .split_once('@')
            .ok_or("expected F@T..T2, e.g. 0.2@5s..20s")?;
        let (from, until) = span
            .split_once("..")
            .ok_or("expected F@T..T2, e.g. 0.2@5s..20s")?;
        let fraction: f64 = f.parse().map_err(|_| format!("'{f}' is not a fraction"))?;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(format!("fraction {fraction} is not between 0 and 1"));
        }
        let (from, until) = (duration(from)?, duration(until)?);
        if until <= from {
            return Err(format!("'{span}': the partition must heal after it starts"));
        }
        Ok(PartitionSpec {
            fraction,
            from,
            until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_fixed_or_a_range() {
        assert_eq!("5ms".parse(), Ok(Latency { min: 5, max: 5 }));
        assert_eq!("1ms..20ms".parse(), Ok(Latency { min: 1, max: 20 }));
        assert!("20ms..1ms".parse::<Latency>().is_err());
        assert!("fast".parse::<Latency>().is_err());
    }

    #[test]
    fn partitions_read_like_fraction_at_start_until_heal() {
        assert_eq!(
            "0.2@5s..20s".parse(),
            Ok(PartitionSpec {
                fraction: 0.2,
                from: 5_000,
                until: 20_000
            })
        );
        assert!("0.2@5s".parse::<PartitionSpec>().is_err());
        assert!("0.2@5s..5s".parse::<PartitionSpec>().is_err());
        assert!("2@1s..2s".parse::<PartitionSpec>().is_err());
    }

    #[test]
    fn flags_parse_into_a_scenario() {
        let args = SimArgs::from_flags(["--peers", "50", "--loss", "0.01", "--latency", "2ms"]);
        let s = args.map(|a| a.scenario(3));
        assert!(s.is_ok_and(|s| s.is_ok_and(|s| s.net.loss == 0.01 && s.net.latency_min == 2)));
        assert!(SimArgs::from_flags(["--loss", "1.5"]).is_err());
    }

    #[test]
    fn more_partitions_than_the_simulator_tracks_are_refused() {
        let mut flags = Vec::new();
        for _ in 0..=crate::sim::routes::MAX_CUTS {
            flags.extend(["--partition", "0.1@1s..2s"]);
        }
        let args = SimArgs::from_flags(flags);
        assert!(args.is_ok_and(|a| a.scenario(1).is_err()));
    }
}
