//! One TCP connection in the driver: its socket, frame decoder and bounded send queue.
//!
//! Knows bytes and frames, not the protocol: decoded frames are handed up as messages.

use mio::net::TcpStream;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use crate::codec::FrameDecoder;
use crate::proto::{ConnId, Disconnect, Message};

/// What one read pass produced.
pub enum ReadOutcome {
    /// Nothing more to read for now.
    Open,
    /// The connection ended (cleanly or not); no more input will come.
    Ended(Disconnect),
}

/// A connection hosted by the driver.
pub struct Conn {
    pub node: usize,
    pub id: ConnId,
    pub stream: TcpStream,
    pub remote: SocketAddr,
    /// An outgoing connect still in progress.
    pub connecting: bool,
    decoder: FrameDecoder,
    out: Vec<u8>,
    out_pos: usize,
    max_queue: usize,
    pub frames_queued: u64,
}

impl Conn {
    pub fn new(
        node: usize,
        id: ConnId,
        stream: TcpStream,
        remote: SocketAddr,
        max_frame: usize,
    ) -> Self {
        Conn {
            node,
            id,
            stream,
            remote,
            connecting: false,
            decoder: FrameDecoder::new(max_frame),
            out: Vec::new(),
            out_pos: 0,
            max_queue: send_queue_limit(max_frame),
            frames_queued: 0,
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

    /// Reads until the socket would block, handing each complete message to `on_msg`.
    pub fn read(&mut self, scratch: &mut [u8], mut on_msg: impl FnMut(Message)) -> ReadOutcome {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return ReadOutcome::Ended(self.eof()),
                Ok(n) => {
                    self.decoder.extend(scratch.get(..n).unwrap_or_default());
                    if let Err(why) = self.decode(&mut on_msg) {
                        return ReadOutcome::Ended(why);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return ReadOutcome::Open,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return ReadOutcome::Ended(Disconnect::Error(e.to_string())),
            }
        }
    }

    fn decode(&mut self, on_msg: &mut impl FnMut(Message)) -> Result<(), Disconnect> {
        loop {
            let frame = self
                .decoder
                .next_frame()
                .map_err(|e| Disconnect::BadFrame(e.to_string()))?;
            let Some(body) = frame else {
                return Ok(());
            };
            let msg = Message::from_frame(body).map_err(|e| Disconnect::BadFrame(bad_json(e)))?;
            on_msg(msg);
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

    /// Appends bytes already encoded as a frame (a broadcast encodes once). Err when the
    /// queue is past its bound: the remote is not reading, and the connection must go
    /// rather than grow without end.
    pub fn queue_encoded(&mut self, frame: &[u8]) -> Result<(), Disconnect> {
        if self.out.len() - self.out_pos > self.max_queue {
            let limit = self.max_queue;
            return Err(Disconnect::Error(format!(
                "send queue over {limit} bytes: remote is not reading"
            )));
        }
        self.out.extend_from_slice(frame);
        self.frames_queued += 1;
        Ok(())
    }

    pub fn has_output(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// Writes queued bytes until done or the socket would block. Returns write calls made.
    pub fn flush(&mut self) -> Result<u64, Disconnect> {
        let mut writes = 0;
        while let Some(pending) = self.out.get(self.out_pos..).filter(|p| !p.is_empty()) {
            match self.stream.write(pending) {
                Ok(0) => return Err(Disconnect::Error("write returned 0".into())),
                Ok(n) => {
                    writes += 1;
                    self.out_pos += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(writes),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Disconnect::Error(e.to_string())),
            }
        }
        // Thousands of connections sit idle between bursts: an empty queue holds no memory.
        self.out = Vec::new();
        self.out_pos = 0;
        Ok(writes)
    }
}

/// The most a connection may hold unsent: a few maximum frames, at least 4 MiB.
pub fn send_queue_limit(max_frame: usize) -> usize {
    (4 * max_frame).max(4 << 20)
}

fn bad_json(e: serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON",
        serde_json::error::Category::Data => "not a valid message",
        serde_json::error::Category::Io => "unreadable",
    };
    format!("{what}: {e}")
}
