//! The supervisor–worker protocol: JSON messages in length-prefixed frames (the gossip
//! protocol's framing) over one loopback TCP connection per worker, non-blocking on both
//! sides so each side keeps its one poll loop.
//!
//! A worker connects, binds its nodes' listeners and sends `Bound`; the supervisor, once
//! every worker is bound, sends each `Start` with every node's address; workers send
//! `Progress` every second and `Done` when stopped. What a worker sends is outside data
//! to the supervisor: a malformed frame is a typed error, never a panic.

use mio::net::TcpStream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

use crate::codec::{encode_json, EncodeError, FrameDecoder, FrameError};
use crate::net::NetStats;
use crate::proto::Millis;
use crate::report::Tally;

/// A control frame may carry a whole tally: a few MiB for the largest swarms.
const MAX_CONTROL_FRAME: usize = 256 << 20;
const READ_CHUNK: usize = 64 * 1024;

/// Supervisor to worker. (Externally tagged: an internally tagged enum would buffer its
/// content, and the tally's histogram keys, numbers in JSON strings, then fail to parse.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToWorker {
    /// Every node is bound: start. Addresses by seed index and by peer index.
    Start {
        seeds: Vec<SocketAddr>,
        peers: Vec<SocketAddr>,
    },
    /// Stop the nodes and send `Done`.
    Stop,
}

/// Worker to supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromWorker {
    /// The worker's listeners are bound: (seed index, address) and (peer index, address).
    Bound {
        worker: usize,
        pid: u32,
        seeds: Vec<(usize, SocketAddr)>,
        peers: Vec<(usize, SocketAddr)>,
    },
    Progress(Box<Progress>),
    /// The last progress: the worker's nodes are stopped.
    Done(Box<Progress>),
}

/// A worker's figures so far; each message supersedes the previous one, except `spreads`,
/// which holds only what changed since.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Nodes started so far.
    pub started: usize,
    pub tally: Tally,
    pub spreads: Vec<SpreadDelta>,
    /// When each failure planned for this worker's peers actually happened.
    pub failed: Vec<(SocketAddr, Millis)>,
    /// Summed over the worker's peers (from their cores).
    pub gossip_frames_received: u64,
    pub gossip_first_receipts: u64,
    pub net: NetStats,
    pub sockets: usize,
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
    /// The worker's RSS when it started, before it bound or hosted a node.
    #[serde(default)]
    pub base_rss_kib: u64,
}

/// What a worker saw of one message since its previous progress message.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpreadDelta {
    pub origin: SocketAddr,
    pub seq: u64,
    /// Set by the worker hosting the origin.
    pub created: Option<Millis>,
    /// First receipts by this worker's peers that are not planned to fail.
    pub delivered: u64,
    pub last_delivery: Millis,
    pub max_hops: u32,
}

/// What can go wrong on a control connection.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("control connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("control connection: bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("control connection: bad message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("control connection: cannot encode a message: {0}")]
    Encode(#[from] EncodeError),
    #[error("control connection closed by the other side")]
    Closed,
}

/// One end of a control connection: a non-blocking stream, its decoder and send queue.
pub struct Channel {
    stream: TcpStream,
    decoder: FrameDecoder,
    out: Vec<u8>,
    sent: usize,
    eof: bool,
}

impl Channel {
    pub fn new(stream: TcpStream) -> Channel {
        let _ = stream.set_nodelay(true);
        Channel {
            stream,
            decoder: FrameDecoder::new(MAX_CONTROL_FRAME),
            out: Vec::new(),
            sent: 0,
            eof: false,
        }
    }

    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Queues `msg` and writes what the socket takes now.
    pub fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), WireError> {
        encode_json(msg, MAX_CONTROL_FRAME, &mut self.out)?;
        self.flush().map(|_| ())
    }

    /// Writes queued bytes until done or the socket would block; true when all are out.
    pub fn flush(&mut self) -> Result<bool, WireError> {
        while let Some(pending) = self.out.get(self.sent..).filter(|p| !p.is_empty()) {
            match self.stream.write(pending) {
                Ok(0) => return Err(WireError::Closed),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(true)
    }

    /// The next message, reading what has arrived; Ok(None) until a whole one is in.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        if let Some(msg) = self.next_buffered()? {
            return Ok(Some(msg));
        }
        self.fill()?;
        match self.next_buffered()? {
            Some(msg) => Ok(Some(msg)),
            None if self.eof => Err(WireError::Closed),
            None => Ok(None),
        }
    }

    fn next_buffered<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        match self.decoder.next_frame()? {
            Some(body) => Ok(Some(serde_json::from_slice(body)?)),
            None => Ok(None),
        }
    }

    /// Reads until the socket would block or the other side has closed.
    fn fill(&mut self) -> Result<(), WireError> {
        let mut chunk = [0u8; READ_CHUNK];
        while !self.eof {
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.decoder.extend(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn pair() -> (Channel, Channel) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let wrap = |s| Channel::new(TcpStream::from_std(s));
        (wrap(a), wrap(b))
    }

    fn wait_recv<T: DeserializeOwned>(c: &mut Channel) -> Result<T, WireError> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(m) = c.recv()? {
                return Ok(m);
            }
            assert!(Instant::now() < end, "nothing arrived");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_start_message_crosses_the_channel_whole() {
        let (mut a, mut b) = pair();
        let start = ToWorker::Start {
            seeds: vec!["127.0.0.2:9000".parse().unwrap()],
            peers: (0..5000)
                .map(|i| SocketAddr::from(([127, 0, 0, 2], i)))
                .collect(),
        };
        a.send(&start).unwrap();
        while !a.flush().unwrap() {
            std::thread::sleep(Duration::from_millis(1));
            let _ = b.recv::<ToWorker>();
        }
        assert_eq!(wait_recv::<ToWorker>(&mut b).unwrap(), start);
    }

    #[test]
    fn garbage_from_a_worker_is_an_error_not_a_panic() {
        let (mut a, mut b) = pair();
        a.stream_mut().write_all(b"\0\0\0\x05hello").unwrap();
        assert!(matches!(
            wait_recv::<FromWorker>(&mut b),
            Err(WireError::Json(_))
        ));
        let (mut a, mut b) = pair();
        a.stream_mut().write_all(b"\xff\xff\xff\xff").unwrap();
        assert!(matches!(
            wait_recv::<FromWorker>(&mut b),
            Err(WireError::Frame(_))
        ));
    }

    #[test]
    fn a_closed_channel_says_so() {
        let (a, mut b) = pair();
        drop(a);
        assert!(matches!(
            wait_recv::<FromWorker>(&mut b),
            Err(WireError::Closed)
        ));
    }
}
