//! The `gossipd` binary: parses flags, binds, and runs one seed, one peer or a swarm.
//! Errors are reported here, in one line, with exit code 2.

use anyhow::{bail, Context, Result};
use clap::Parser as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use gossipd::auth::ClusterKey;
use gossipd::cli::{Cli, Command, CommonArgs, PeerArgs, SeedArgs};
use gossipd::logging::{self, NodeLog};
use gossipd::net::{listener, Driver};
use gossipd::proto::{Node, PeerCore, Role, SeedCore};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    logging::init_console();
    choose_pages(&cli.command);
    let result = match cli.command {
        Command::Seed(args) => run_seed(&args).map(|()| true),
        Command::Peer(args) => run_peer(&args).map(|()| true),
        Command::Swarm(args) => gossipd::swarm::run(&args),
        Command::Sim(args) => gossipd::sim::run(&args),
        Command::SwarmWorker(args) => gossipd::swarm::run_worker(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        // A swarm that ended with deliveries missing: its summary says which.
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("gossipd: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The simulator runs on huge pages, which may mean running this program again in this
/// process with the allocator's settings for them; a daemon stays on small pages (see
/// `pages.rs`).
fn choose_pages(command: &Command) {
    match command {
        Command::Sim(_) => {
            if let Err(e) = gossipd::pages::exec_with_sim_allocator() {
                log::warn!("cannot run again with the allocator set for huge pages ({e}); going on without them");
            }
        }
        _ => {
            if let Err(e) = gossipd::pages::keep_small_pages() {
                log::debug!("cannot turn transparent huge pages off: {e}");
            }
        }
    }
}

/// Help and version go to stdout as clap prints them; a usage error is one line, exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        _ => {}
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    eprintln!("gossipd: {first} (see gossipd --help)");
    ExitCode::from(2)
}

fn run_seed(args: &SeedArgs) -> Result<()> {
    let key = args.common.cluster_key()?;
    let (listener, addr) = bind(args.listen)?;
    let core = Node::Seed(SeedCore::new(args.config(addr), args.common.rng_seed()));
    serve(core, listener, key, Role::Seed, &args.common)
}

fn run_peer(args: &PeerArgs) -> Result<()> {
    if args.listen.ip().is_unspecified() {
        bail!(
            "--listen {}: a peer is known by its listening address, so give a concrete IP",
            args.listen
        );
    }
    let key = args.common.cluster_key()?;
    let seeds = gossipd::config::read_seeds(&args.config)?;
    let (listener, addr) = bind(args.listen)?;
    let core = Node::Peer(PeerCore::new(
        args.config(addr, seeds),
        args.common.rng_seed(),
    ));
    serve(core, listener, key, Role::Peer, &args.common)
}

fn bind(addr: SocketAddr) -> Result<(mio::net::TcpListener, SocketAddr)> {
    let listener = listener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    Ok((listener, local))
}

/// Runs one node until Ctrl+C or SIGTERM, then closes its sockets and flushes its logs.
fn serve(
    core: Node,
    listener: mio::net::TcpListener,
    key: Option<ClusterKey>,
    role: Role,
    common: &CommonArgs,
) -> Result<()> {
    let addr = core.addr();
    let text = logging::log_path(&common.log_dir, role, addr);
    let sink = NodeLog::open(&text, common.events.as_deref())
        .with_context(|| format!("cannot open the log file {}", text.display()))?;
    let mut driver = Driver::new(sink, common.max_frame).context("cannot create the event loop")?;
    if let Some(key) = key {
        driver.set_cluster_key(key);
    }
    driver.set_max_connections(common.max_connections(role));
    driver
        .stop_on_signals()
        .context("cannot install the signal handlers")?;
    log::info!(
        "[{} {addr}] listening; log file {}",
        role.as_str(),
        text.display()
    );
    driver
        .add(core, listener)
        .context("cannot register the listener")?;
    driver.run().context("event loop failed")?;
    log::info!("[{} {addr}] stopped", role.as_str());
    Ok(())
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
