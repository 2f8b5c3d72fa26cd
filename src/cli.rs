//! Command-line flags, parsed and validated into the cores' configs in one place.

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::auth::{AuthError, ClusterKey};
use crate::codec::DEFAULT_MAX_FRAME;
use crate::proto::{Millis, PeerConfig, Role, SeedConfig};

/// A seed's default `--max-connections`: one registration connection per peer it lists.
pub const SEED_MAX_CONNECTIONS: usize = 4096;
/// A peer's default `--max-connections`: its neighbours and seeds, with room to spare.
pub const PEER_MAX_CONNECTIONS: usize = 1024;

#[derive(Debug, Parser)]
#[command(
    name = "gossipd",
    version,
    about = "A low-footprint gossip network daemon: seeds, peers and a local swarm"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a seed: keeps the peer list, answers registrations, drops dead peers.
    Seed(SeedArgs),
    /// Run a peer: registers with a majority of seeds, gossips, checks liveness.
    Peer(PeerArgs),
    /// Run seeds and peers inside this process on 127.0.0.1 and report each message's spread.
    Swarm(crate::swarm::SwarmArgs),
    /// Run the same seed and peer cores on a simulated network with a virtual clock.
    #[command(
        after_help = "Memory: the simulator runs on transparent huge pages. It runs itself again in this process with MIMALLOC_ALLOW_THP=1 and MIMALLOC_PURGE_DELAY=-1 added to its environment; a variable already set is left as it is, and MIMALLOC_ALLOW_THP=0 keeps it on small pages. The report is the same either way."
    )]
    Sim(crate::sim::SimArgs),
    /// One worker process of a swarm, started and driven by `gossipd swarm`.
    #[command(hide = true)]
    SwarmWorker(crate::swarm::WorkerArgs),
}

/// Parses `5s`, `200ms`, `1m`, `1h 30m` into milliseconds (at least 1 ms).
pub fn duration(s: &str) -> Result<Millis, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 5s, 200ms, 1m)"))?;
    match d.as_millis() {
        0 => Err("must be at least 1ms".into()),
        ms => Millis::try_from(ms).map_err(|_| "too long".into()),
    }
}

/// Flags every node takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Directory for the node's text log <role>-<IP>-<PORT>.log.
    #[arg(long, default_value = "logs")]
    pub log_dir: PathBuf,
    /// Also write every event as JSON Lines to this file (appended).
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Largest frame accepted or sent, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME, value_parser = clap::value_parser!(u32).range(64..=1 << 30).map(|v| v as usize))]
    pub max_frame: usize,
    /// Time between liveness checks.
    #[arg(long, default_value = "13s", value_parser = duration)]
    pub liveness_interval: Millis,
    /// Consecutive missed liveness checks that make a node dead.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub liveness_misses: u32,
    /// Close a connection silent this long [default: (misses + 2) liveness intervals].
    #[arg(long, value_parser = duration)]
    pub idle_timeout: Option<Millis>,
    /// Seed for the node's random choices (default: from the OS).
    #[arg(long)]
    pub rng_seed: Option<u64>,
    /// Authenticate every frame with HMAC-SHA256 under the key in this file (at least
    /// 16 bytes; a final newline is ignored). Every node of the network needs the same key.
    #[arg(long, value_name = "FILE")]
    pub cluster_key: Option<PathBuf>,
    /// Most open connections (accepted and dialled); connections accepted past it are
    /// closed at once [default: 4096 for a seed, 1024 for a peer].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub max_connections: Option<usize>,
}

impl CommonArgs {
    pub fn idle_timeout(&self) -> Millis {
        self.idle_timeout
            .unwrap_or((u64::from(self.liveness_misses) + 2) * self.liveness_interval)
    }
    pub fn rng_seed(&self) -> u64 {
        self.rng_seed.unwrap_or_else(rand::random)
    }
    pub fn max_connections(&self, role: Role) -> usize {
        self.max_connections.unwrap_or(match role {
            Role::Seed => SEED_MAX_CONNECTIONS,
            Role::Peer => PEER_MAX_CONNECTIONS,
        })
    }
    /// The cluster key, read from its file, if `--cluster-key` was given.
    pub fn cluster_key(&self) -> Result<Option<ClusterKey>, AuthError> {
        self.cluster_key
            .as_deref()
            .map(ClusterKey::read)
            .transpose()
    }
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Address to listen on, IP:PORT.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Most peers in one peer-list answer (a random sample past it).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub peer_list_max: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl SeedArgs {
    /// The seed's config, for the address it actually bound.
    pub fn config(&self, addr: SocketAddr) -> SeedConfig {
        let mut cfg = SeedConfig::new(addr);
        cfg.peer_list_max = self.peer_list_max;
        cfg.liveness_interval = self.common.liveness_interval;
        cfg.liveness_misses = self.common.liveness_misses;
        cfg.idle_timeout = self.common.idle_timeout();
        cfg
    }
}

#[derive(Debug, Args)]
pub struct PeerArgs {
    /// Address to listen on, IP:PORT; other peers know this peer by it.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The seed list: one IP:PORT a line.
    #[arg(long, default_value = "config.txt")]
    pub config: PathBuf,
    /// Peers to connect to (incoming connections come on top).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024).map(|v| v as usize))]
    pub max_neighbors: usize,
    /// Time between this peer's gossip messages.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub gossip_interval: Millis,
    /// Gossip messages to create in all.
    #[arg(long, default_value_t = 10)]
    pub messages: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl PeerArgs {
    /// The peer's config, for the address it actually bound.
    pub fn config(&self, addr: SocketAddr, seeds: Vec<SocketAddr>) -> PeerConfig {
        let mut cfg = PeerConfig::new(addr, seeds);
        cfg.max_neighbors = self.max_neighbors;
        cfg.gossip_interval = self.gossip_interval;
        cfg.messages = self.messages;
        cfg.liveness_interval = self.common.liveness_interval;
        cfg.liveness_misses = self.common.liveness_misses;
        cfg.idle_timeout = self.common.idle_timeout();
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_5s_200ms_1m() {
        assert_eq!(duration("5s"), Ok(5_000));
        assert_eq!(duration("200ms"), Ok(200));
        assert_eq!(duration("1m"), Ok(60_000));
        assert!(duration("5").is_err());
        assert!(duration("0s").is_err());
        assert!(duration("soon").is_err());
    }

    #[test]
    fn flags_parse_into_a_peer_config() {
        let cli = Cli::try_parse_from([
            "gossipd",
            "peer",
            "--listen",
            "127.0.0.1:9001",
            "--gossip-interval",
            "200ms",
            "--liveness-interval",
            "1s",
        ])
        .unwrap();
        let Command::Peer(args) = cli.command else {
            panic!("not peer")
        };
        let cfg = args.config(args.listen, vec![]);
        assert_eq!(
            (cfg.gossip_interval, cfg.liveness_interval, cfg.idle_timeout),
            (200, 1_000, 5_000)
        );
    }

    #[test]
    fn the_cluster_key_flag_names_a_file_that_is_read_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let (good, empty) = (dir.path().join("key"), dir.path().join("empty"));
        std::fs::write(&good, "0123456789abcdef\n").unwrap();
        std::fs::write(&empty, "\n").unwrap();
        let common = |path: &std::path::Path| {
            let listen = ["gossipd", "seed", "--listen", "127.0.0.1:9000"];
            let path = path.to_str().unwrap();
            let cli = Cli::try_parse_from(listen.into_iter().chain(["--cluster-key", path]));
            let Command::Seed(args) = cli.unwrap().command else {
                panic!("not seed")
            };
            args.common
        };
        assert!(common(&good).cluster_key().unwrap().is_some());
        let short = common(&empty).cluster_key().unwrap_err();
        assert!(
            matches!(short, AuthError::KeyTooShort { len: 0 }),
            "{short}"
        );
        let missing = common(&dir.path().join("none")).cluster_key().unwrap_err();
        assert!(matches!(missing, AuthError::Read { .. }), "{missing}");
    }

    #[test]
    fn a_bad_listen_address_is_a_usage_error() {
        assert!(Cli::try_parse_from(["gossipd", "seed", "--listen", "nowhere"]).is_err());
    }
}
