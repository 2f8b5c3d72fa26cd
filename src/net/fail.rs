//! Failing a hosted node on purpose, as a crash or a hang would, for the swarm's
//! `--kill` and `--freeze`. Only the driver's view of the node changes; its core is kept
//! (and never called again) so its counters can still be read.

use socket2::SockRef;
use std::time::Duration;

use super::{Driver, Entry, Sink};

/// Whether a hosted node still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Live,
    /// Hung: its sockets stay open but it reads, writes and wakes no more.
    Frozen,
    /// Crashed: its sockets were reset and its listener closed.
    Killed,
}

impl<S: Sink> Driver<S> {
    pub fn state(&self, node: usize) -> Option<NodeState> {
        self.nodes.get(node).map(|h| h.state)
    }

    /// Crashes a live or frozen node: every connection is reset (SO_LINGER 0, so the
    /// remote sees RST and no goodbye), its listener closes so later connects are
    /// refused, and its timers are dropped. False if it was not there or already dead.
    pub fn kill(&mut self, node: usize) -> bool {
        let Some(h) = self.nodes.get_mut(node) else {
            return false;
        };
        if h.state == NodeState::Killed {
            return false;
        }
        h.state = NodeState::Killed;
        let keys: Vec<usize> = h.conns.drain().map(|(_, key)| key).collect();
        h.conns.shrink_to_fit();
        let listener = h.listener;
        for key in keys.into_iter().chain([listener]) {
            self.reset(key);
        }
        true
    }

    /// Removes a socket from the loop and closes it abruptly.
    fn reset(&mut self, key: usize) {
        if !self.entries.contains(key) {
            return;
        }
        match self.entries.remove(key) {
            Entry::Conn(mut c) => {
                let _ = SockRef::from(&c.stream).set_linger(Some(Duration::ZERO));
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
            Entry::Listener { mut listener, .. } => {
                let _ = self.poll.registry().deregister(&mut listener);
            }
        }
    }

    /// Hangs a live node: from now on the driver feeds it no input, fires none of its
    /// timers and writes none of its queued bytes, while its connections and listener
    /// stay open (connects still complete in the kernel's backlog). Only liveness checks
    /// can find it. False if it was not live.
    pub fn freeze(&mut self, node: usize) -> bool {
        match self.nodes.get_mut(node) {
            Some(h) if h.state == NodeState::Live => {
                h.state = NodeState::Frozen;
                true
            }
            _ => false,
        }
    }
}
