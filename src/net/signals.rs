//! SIGINT, SIGTERM and SIGHUP as readiness on the loop's own poll: the signal handler
//! only writes to a self-pipe (signal-hook-mio), so the process needs no signal thread.

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

/// The stop signals, registered with a poll.
pub struct StopSignals {
    signals: Signals,
}

impl StopSignals {
    /// Installs the handlers and registers their pipe with `registry` under `token`.
    pub fn register(registry: &Registry, token: Token) -> std::io::Result<Self> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(StopSignals { signals })
    }

    /// True when a stop signal arrived since the last call (the pipe is drained).
    pub fn arrived(&mut self) -> bool {
        self.signals.pending().count() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_signal_wakes_the_poll_and_is_seen_once() {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut stop = StopSignals::register(poll.registry(), Token(7)).unwrap();
        assert!(!stop.arrived());
        signal_hook::low_level::raise(SIGHUP).unwrap();
        poll.poll(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == Token(7)));
        assert!(stop.arrived());
        assert!(!stop.arrived(), "drained");
    }
}
