//! One TCP connection in the driver: its socket, frame decoder and bounded send queues.
//!
//! Knows bytes and frames, not the protocol: decoded frames are handed up as messages.

use mio::net::TcpStream;
use std::io::{self, ErrorKind, Read, Write};

use super::sendq::SendQueue;
use crate::auth::ClusterKey;
use crate::codec::FrameDecoder;
use crate::proto::{ConnId, Disconnect, Message, Millis};

/// What one read pass produced.
pub enum ReadOutcome {
    /// Nothing more to read for now.
    Open,
    /// The read budget ran out with bytes possibly still waiting: read again next turn.
    More,
    /// The connection ended (cleanly or not); no more input will come.
    Ended(Disconnect),
}

/// A connection hosted by the driver.
pub struct Conn {
    pub node: usize,
    pub id: ConnId,
    pub stream: TcpStream,
    /// An outgoing connect still in progress.
    pub connecting: bool,
    /// On the driver's list of connections to read next turn (at most once).
    pub unread: bool,
    /// The remote closed or the socket erred: read to the end, no later event will come.
    pub to_end: bool,
    /// When the poll that reported the latest readiness event for input ran: no input
    /// read before the next one arrived later. A loop behind reads a connection's input seconds after it came, and
    /// a neighbour is judged by when it sent, not by when this loop got round to it.
    pub arrived: Option<Millis>,
    decoder: FrameDecoder,
    out: SendQueue,
    /// Frames queued since the last flush: the first one puts the connection on the
    /// driver's flush list.
    queued_since_flush: u32,
    /// The last write would have blocked: both socket buffers were full.
    blocked: bool,
    /// A write went through after one blocked: the remote's process read since.
    remote_read: bool,
}

impl Conn {
    pub fn new(node: usize, id: ConnId, stream: TcpStream, max_frame: usize) -> Self {
        Conn {
            node,
            id,
            stream,
            connecting: false,
            unread: false,
            to_end: false,
            arrived: None,
            decoder: FrameDecoder::new(max_frame),
            out: SendQueue::default(),
            queued_since_flush: 0,
            blocked: false,
            remote_read: false,
        }
    }

    /// Checks an outgoing connect after a readiness event: Ok(true) once established.
    pub fn finish_connect(&mut self) -> io::Result<bool> {
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                self.connecting = false;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads up to `budget` bytes, handing each complete message to `on_msg`, so one busy
    /// socket cannot hold the loop. Counts read calls in `reads`. With a cluster `key`,
    /// every frame must carry its tag, or the connection ends as a bad frame.
    ///
    /// A short read means the receive queue was empty at that instant; bytes arriving
    /// later raise a new edge-triggered event, so the read that would only say
    /// `WouldBlock` is skipped. That halves the read calls of a loop of small frames.
    /// Unless [`Conn::to_end`]: when the remote has closed (or erred), no later event
    /// will come, so the end must be read now.
    pub fn read(
        &mut self,
        scratch: &mut [u8],
        budget: usize,
        reads: &mut u64,
        key: Option<&ClusterKey>,
        mut absorb: impl FnMut(&[u8]) -> bool,
        mut on_msg: impl FnMut(Message),
    ) -> ReadOutcome {
        let mut taken = 0;
        loop {
            if taken >= budget {
                return ReadOutcome::More;
            }
            *reads += 1;
            match self.stream.read(scratch) {
                Ok(0) => return ReadOutcome::Ended(self.eof()),
                Ok(n) => {
                    taken += n;
                    self.decoder.extend(scratch.get(..n).unwrap_or_default());
                    if let Err(why) = self.decode(key, &mut absorb, &mut on_msg) {
                        return ReadOutcome::Ended(why);
                    }
                    if n < scratch.len() && !self.to_end {
                        return ReadOutcome::Open;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return ReadOutcome::Open,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return ReadOutcome::Ended(Disconnect::Error(e.to_string())),
            }
        }
    }

    /// Frees the decode buffer once it holds no partial frame: thousands of idle
    /// connections would otherwise each keep a small buffer pinned between bursts.
    pub fn release_idle_buffer(&mut self) {
        if self.decoder.buffered() == 0 {
            self.decoder = FrameDecoder::new(self.decoder.max_frame());
        }
    }

    /// Offers each whole frame's body to `absorb` (true: dealt with, e.g. a duplicate
    /// dropped), and parses the others for `on_msg`.
    fn decode(
        &mut self,
        key: Option<&ClusterKey>,
        absorb: &mut impl FnMut(&[u8]) -> bool,
        on_msg: &mut impl FnMut(Message),
    ) -> Result<(), Disconnect> {
        loop {
            let frame = self
                .decoder
                .next_frame()
                .map_err(|e| Disconnect::BadFrame(e.to_string()))?;
            let Some(payload) = frame else {
                return Ok(());
            };
            let body = open_payload(payload, key)?;
            if absorb(body) {
                continue;
            }
            on_msg(parse_body(body)?);
        }
    }

    fn eof(&self) -> Disconnect {
        match self.decoder.buffered() {
            0 => Disconnect::Closed,
            n => Disconnect::BadFrame(format!(
                "connection closed in the middle of a frame ({n} bytes held)"
            )),
        }
    }

    /// Appends bytes already encoded as a frame (a broadcast encodes once); `control`
    /// frames go out ahead of gossip. Err when both queues together are past their bound:
    /// the remote is not reading, and the connection must go rather than grow without end.
    pub fn queue_encoded(&mut self, frame: &[u8], control: bool) -> Result<(), Disconnect> {
        let limit = send_queue_limit(self.decoder.max_frame());
        if self.out.pending() > limit {
            return Err(Disconnect::Error(format!(
                "send queue over {limit} bytes: remote is not reading"
            )));
        }
        self.out.push(frame, control);
        self.queued_since_flush = self.queued_since_flush.saturating_add(1);
        Ok(())
    }

    /// True once since the remote's process was last seen reading: a write went through
    /// after the socket's buffers had filled up. On a congested link (the remote far
    /// behind on its input) this is the sign of life the remote cannot send in time.
    pub fn take_remote_read(&mut self) -> bool {
        std::mem::take(&mut self.remote_read)
    }

    /// Unsent bytes queued.
    pub fn queued(&self) -> usize {
        self.out.pending()
    }

    pub fn frames_queued_since_flush(&self) -> u32 {
        self.queued_since_flush
    }

    pub fn has_output(&self) -> bool {
        self.out.pending() > 0
    }

    /// Writes queued bytes, control first, until done or the socket would block.
    /// Returns write calls made. An emptied queue holds no memory: thousands of
    /// connections sit idle between bursts.
    pub fn flush(&mut self) -> Result<u64, Disconnect> {
        self.queued_since_flush = 0;
        let mut writes = 0;
        loop {
            let pending = self.out.next_bytes();
            if pending.is_empty() {
                return Ok(writes);
            }
            match self.stream.write(pending) {
                Ok(0) => return Err(Disconnect::Error("write returned 0".into())),
                Ok(n) => {
                    writes += 1;
                    self.out.advance(n);
                    self.remote_read |= std::mem::take(&mut self.blocked);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(writes);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Disconnect::Error(e.to_string())),
            }
        }
    }
}

/// The most a connection may hold unsent: a few maximum frames, at least 4 MiB.
pub fn send_queue_limit(max_frame: usize) -> usize {
    (4 * max_frame).max(4 << 20)
}

/// The message in a frame's payload, its tag checked first when there is a key.
pub fn parse_payload(payload: &[u8], key: Option<&ClusterKey>) -> Result<Message, Disconnect> {
    parse_body(open_payload(payload, key)?)
}

/// A frame payload's body: the payload itself, or with a key, what its checked tag seals.
fn open_payload<'a>(payload: &'a [u8], key: Option<&ClusterKey>) -> Result<&'a [u8], Disconnect> {
    match key {
        Some(k) => k
            .open(payload)
            .map_err(|e| Disconnect::BadFrame(e.to_string())),
        None => Ok(payload),
    }
}

fn parse_body(body: &[u8]) -> Result<Message, Disconnect> {
    Message::from_frame(body).map_err(|e| Disconnect::BadFrame(bad_json(e)))
}

fn bad_json(e: serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON",
        serde_json::error::Category::Data => "not a valid message",
        serde_json::error::Category::Io => "unreadable",
    };
    format!("{what}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_frame, HEADER_LEN};

    const HELLO: &[u8] = br#"{"type":"hello","addr":"127.0.0.1:9001"}"#;

    fn key(b: u8) -> ClusterKey {
        ClusterKey::from_bytes(&[b; 32]).unwrap()
    }

    /// The payload (what follows the length prefix) of `body` sealed with `k`.
    fn sealed_payload(k: &ClusterKey, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(body, 1 << 20, &mut out).unwrap();
        k.seal(&mut out, 0);
        out.split_off(HEADER_LEN)
    }

    #[test]
    fn a_sealed_payload_parses_with_the_key() {
        let k = key(1);
        let msg = parse_payload(&sealed_payload(&k, HELLO), Some(&k)).unwrap();
        assert!(matches!(msg, Message::Hello { .. }), "{msg:?}");
    }

    #[test]
    fn a_keyed_receiver_refuses_a_plain_or_foreign_payload_as_a_bad_frame() {
        let k = key(1);
        for payload in [
            HELLO.to_vec(),
            sealed_payload(&key(2), HELLO),
            vec![b'{'; 3],
        ] {
            let err = parse_payload(&payload, Some(&k)).unwrap_err();
            assert!(matches!(err, Disconnect::BadFrame(_)), "{err}");
        }
    }

    #[test]
    fn a_receiver_without_a_key_refuses_a_sealed_payload() {
        let err = parse_payload(&sealed_payload(&key(1), HELLO), None).unwrap_err();
        assert!(
            matches!(&err, Disconnect::BadFrame(r) if r.contains("not JSON")),
            "{err}"
        );
    }

    /// A connection to a std socket on 127.0.0.1 that the test reads (or not).
    fn pair() -> (Conn, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let out = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (remote, _) = l.accept().unwrap();
        out.set_nonblocking(true).unwrap();
        let stream = TcpStream::from_std(out);
        (Conn::new(0, ConnId(1), stream, 1 << 20), remote)
    }

    /// Queues frames and flushes until a write would block (both buffers full).
    fn fill(c: &mut Conn) {
        let frame = vec![7u8; 64 * 1024];
        for _ in 0..10_000 {
            if c.blocked {
                return;
            }
            let _ = c.queue_encoded(&frame, false);
            c.flush().unwrap();
        }
        panic!("the socket never filled up");
    }

    #[test]
    fn a_write_after_the_buffers_filled_shows_the_remote_reading() {
        let (mut c, mut remote) = pair();
        fill(&mut c);
        assert!(!c.take_remote_read(), "nobody has read yet");
        c.flush().unwrap();
        assert!(
            !c.take_remote_read(),
            "still full: the remote is not reading"
        );
        remote.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < 1 << 20 {
            match std::io::Read::read(&mut remote, &mut buf) {
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        assert!(got > 0);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !c.take_remote_read() {
            assert!(std::time::Instant::now() < end, "no write went through");
            c.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!c.take_remote_read(), "once per sign");
    }
}
