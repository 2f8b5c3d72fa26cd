//! Where a daemon's events go: the console (through `log`, so `RUST_LOG` filters it), the
//! node's own text file `<log-dir>/<role>-<IP>-<PORT>.log`, and optionally a JSON Lines file.
//!
//! Every line is written through a `LineWriter`, so `tail -f` shows each event as it happens.

use std::fs::{self, File, OpenOptions};
use std::io::{self, LineWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::net::Sink;
use crate::proto::event::EventRecord;
use crate::proto::{Event, Millis, Role, Severity};

/// Sets up console logging: local time, level, message; `RUST_LOG` sets the level (default info).
pub fn init_console() {
    use std::io::Write as _;
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env)
        .format(|buf, record| {
            let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f");
            writeln!(buf, "{now} {:<5} {}", record.level(), record.args())
        })
        .try_init();
}

/// `ms` since the Unix epoch as local time, to the millisecond.
pub fn local_time(ms: Millis) -> String {
    let utc = chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default();
    utc.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

pub fn level(s: Severity) -> log::Level {
    match s {
        Severity::Debug => log::Level::Debug,
        Severity::Info => log::Level::Info,
        Severity::Warn => log::Level::Warn,
    }
}

/// The text log's path for a node.
pub fn log_path(dir: &Path, role: Role, addr: SocketAddr) -> PathBuf {
    dir.join(format!(
        "{}-{}-{}.log",
        role.as_str(),
        addr.ip(),
        addr.port()
    ))
}

/// Opens `path` for appending, creating it and its directory.
pub fn open_append(path: &Path) -> io::Result<LineWriter<File>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(LineWriter::new(file))
}

/// Writes one event as a JSON Lines record.
pub fn write_record(
    out: &mut impl Write,
    now: Millis,
    node: SocketAddr,
    event: &Event,
) -> io::Result<()> {
    let record = EventRecord {
        ts: now,
        node,
        event,
    };
    serde_json::to_writer(&mut *out, &record)?;
    out.write_all(b"\n")
}

/// The sink of a `gossipd seed` or `gossipd peer` process.
pub struct NodeLog {
    text: LineWriter<File>,
    events: Option<LineWriter<File>>,
    write_failed: bool,
}

impl NodeLog {
    pub fn open(text: &Path, events: Option<&Path>) -> io::Result<Self> {
        Ok(NodeLog {
            text: open_append(text)?,
            events: events.map(open_append).transpose()?,
            write_failed: false,
        })
    }

    fn write(
        &mut self,
        now: Millis,
        addr: SocketAddr,
        event: &Event,
        line: &str,
    ) -> io::Result<()> {
        let lvl = level(event.severity());
        writeln!(self.text, "{} {lvl:<5} {line}", local_time(now))?;
        if let Some(out) = self.events.as_mut().filter(|_| lvl <= log::Level::Info) {
            write_record(out, now, addr, event)?;
        }
        Ok(())
    }
}

impl Sink for NodeLog {
    fn event(&mut self, now: Millis, _node: usize, addr: SocketAddr, role: Role, event: &Event) {
        let line = event.text(addr, now);
        log::log!(level(event.severity()), "[{} {addr}] {line}", role.as_str());
        if let Err(e) = self.write(now, addr, event, &line) {
            if !self.write_failed {
                log::error!("cannot write the log files: {e}; events go to the console only");
                self.write_failed = true;
            }
        }
    }

    fn flush(&mut self) {
        let _ = self.text.flush();
        if let Some(out) = self.events.as_mut() {
            let _ = out.flush();
        }
    }
}
