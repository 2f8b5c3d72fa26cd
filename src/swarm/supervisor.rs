//! The swarm supervisor: starts the worker processes (this binary, re-executed with the
//! hidden `swarm-worker` subcommand), hears them on one mio loop over loopback control
//! connections, starts the run once every node is bound, decides when it is over, and
//! stops every worker: by message first, then by PID for any that does not answer.
//! It never leaves a worker behind: dropping the supervisor kills what still runs.

use anyhow::{Context, Result};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::wire::{Channel, FromWorker, Progress, ToWorker};
use crate::net::signals::StopSignals;
use crate::stress::StressArgs;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const CHANNELS: usize = 2;
/// How long workers may take to bind their listeners and check in.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long stopped workers may take to send their last figures.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// What the supervisor heard from or about a worker.
pub enum Heard {
    Bound {
        seeds: Vec<(usize, SocketAddr)>,
        peers: Vec<(usize, SocketAddr)>,
    },
    Progress(usize, Progress),
    Done(usize, Progress),
    /// The worker exited or its connection failed before its last report.
    Lost(usize, String),
}

/// One worker process.
struct Link {
    child: Child,
    channel: Option<usize>,
    done: bool,
    lost: bool,
}

/// An accepted control connection, and the worker it turned out to be.
struct Conn {
    channel: Channel,
    worker: Option<usize>,
    open: bool,
}

pub struct Supervisor {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    signals: StopSignals,
    /// A stop signal arrived.
    interrupted: bool,
    links: Vec<Link>,
    conns: Vec<Conn>,
}

impl Supervisor {
    /// Binds the control listener and starts `workers` worker processes.
    pub fn spawn(stress: &StressArgs, workers: usize, rng_seed: u64) -> Result<Supervisor> {
        let poll = Poll::new().context("cannot create the supervisor's poll")?;
        let mut listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .context("cannot listen for the workers")?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let signals = StopSignals::register(poll.registry(), SIGNALS)
            .context("cannot install the signal handlers")?;
        let control = listener.local_addr()?;
        let mut sup = Supervisor {
            poll,
            events: Events::with_capacity(256),
            listener,
            signals,
            interrupted: false,
            links: Vec::new(),
            conns: Vec::new(),
        };
        let flags = super::stress_flags(stress, rng_seed);
        for w in 0..workers {
            // Pushed one by one, so a failure to start one still stops the others.
            let child = spawn_worker(control, w, workers, &flags)?;
            sup.links.push(Link {
                child,
                channel: None,
                done: false,
                lost: false,
            });
        }
        Ok(sup)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.links.iter().map(|l| l.child.id()).collect()
    }

    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    /// Whether every worker has sent its last report or is gone.
    pub fn all_finished(&self) -> bool {
        self.links.iter().all(|l| l.done || l.lost)
    }

    /// Waits up to `wait` for news, and returns all of it.
    pub fn hear(&mut self, wait: Duration) -> Result<Vec<Heard>> {
        if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).context("supervisor poll failed");
            }
        }
        self.interrupted |= self.signals.arrived();
        self.accept()?;
        let mut heard = Vec::new();
        for c in 0..self.conns.len() {
            self.read_conn(c, &mut heard);
        }
        self.reap(&mut heard);
        Ok(heard)
    }

    fn accept(&mut self) -> Result<()> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let mut channel = Channel::new(stream);
                    let token = Token(CHANNELS + self.conns.len());
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    self.poll
                        .registry()
                        .register(channel.stream_mut(), token, interest)?;
                    self.conns.push(Conn {
                        channel,
                        worker: None,
                        open: true,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("cannot accept a worker's connection"),
            }
        }
    }

    /// Reads every whole message a connection has; a broken one loses its worker.
    fn read_conn(&mut self, c: usize, heard: &mut Vec<Heard>) {
        loop {
            let Some(conn) = self.conns.get_mut(c).filter(|c| c.open) else {
                return;
            };
            let _ = conn.channel.flush();
            match conn.channel.recv::<FromWorker>() {
                Ok(None) => return,
                Ok(Some(msg)) => self.take(c, msg, heard),
                Err(e) => {
                    conn.open = false;
                    if let Some(w) = conn.worker {
                        self.lose(w, e.to_string(), heard);
                    }
                    return;
                }
            }
        }
    }

    fn take(&mut self, c: usize, msg: FromWorker, heard: &mut Vec<Heard>) {
        let worker = match &msg {
            FromWorker::Bound { worker, .. } => {
                self.bind(c, *worker);
                Some(*worker)
            }
            _ => self.conns.get(c).and_then(|conn| conn.worker),
        };
        let Some(w) = worker.filter(|&w| w < self.links.len()) else {
            return;
        };
        heard.push(match msg {
            FromWorker::Bound { seeds, peers, .. } => Heard::Bound { seeds, peers },
            FromWorker::Progress(p) => Heard::Progress(w, *p),
            FromWorker::Done(p) => {
                if let Some(l) = self.links.get_mut(w) {
                    l.done = true;
                }
                Heard::Done(w, *p)
            }
        });
    }

    /// Ties connection `c` to `worker`, unless another connection already claimed it.
    fn bind(&mut self, c: usize, worker: usize) {
        let Some(link) = self.links.get_mut(worker).filter(|l| l.channel.is_none()) else {
            return;
        };
        link.channel = Some(c);
        if let Some(conn) = self.conns.get_mut(c) {
            conn.worker = Some(worker);
        }
    }

    fn lose(&mut self, w: usize, why: String, heard: &mut Vec<Heard>) {
        if let Some(l) = self.links.get_mut(w).filter(|l| !l.done && !l.lost) {
            l.lost = true;
            heard.push(Heard::Lost(w, why));
        }
    }

    /// Notices workers that exited, after reading what they sent before exiting.
    fn reap(&mut self, heard: &mut Vec<Heard>) {
        for w in 0..self.links.len() {
            let Some(l) = self.links.get_mut(w).filter(|l| !l.done && !l.lost) else {
                continue;
            };
            let Ok(Some(status)) = l.child.try_wait() else {
                continue;
            };
            if let Some(c) = l.channel {
                self.read_conn(c, heard);
            }
            self.lose(w, format!("exited ({status})"), heard);
        }
    }

    /// Sends `msg` to every worker still running.
    pub fn tell_all(&mut self, msg: &ToWorker) {
        let mut heard = Vec::new();
        for w in 0..self.links.len() {
            let Some(c) = self.links.get(w).and_then(|l| l.channel) else {
                continue;
            };
            let Some(conn) = self.conns.get_mut(c).filter(|c| c.open) else {
                continue;
            };
            if let Err(e) = conn.channel.send(msg) {
                conn.open = false;
                self.lose(w, e.to_string(), &mut heard);
            }
        }
    }

    /// Asks every worker to stop, gathers their last reports, and kills by PID whatever
    /// has not answered in time. Returns what was heard meanwhile.
    pub fn stop_all(&mut self) -> Vec<Heard> {
        self.tell_all(&ToWorker::Stop);
        let end = Instant::now() + STOP_TIMEOUT;
        let mut heard = Vec::new();
        while !self.all_finished() && Instant::now() < end {
            match self.hear(Duration::from_millis(100)) {
                Ok(h) => heard.extend(h),
                Err(e) => {
                    log::warn!("{e:#}");
                    break;
                }
            }
        }
        self.kill_all();
        heard
    }

    /// Kills (SIGKILL, by PID) every worker still running and reaps them all.
    fn kill_all(&mut self) {
        for l in &mut self.links {
            if let Ok(None) = l.child.try_wait() {
                let _ = l.child.kill();
            }
            let _ = l.child.wait();
        }
    }
}

/// Starts worker `w` of `workers`: this program again, as `swarm-worker`.
fn spawn_worker(
    control: SocketAddr,
    w: usize,
    workers: usize,
    flags: &[OsString],
) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find this program to run workers")?;
    Command::new(exe)
        .arg("swarm-worker")
        .args(["--control", &control.to_string()])
        .args([
            "--worker",
            &w.to_string(),
            "--workers",
            &workers.to_string(),
        ])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start worker {w}"))
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.kill_all();
    }
}
