//! The peer's liveness checks: requests, replies, misses, dead-node reports, and the
//! redials and list refreshes that refill its neighbour slots.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{PeerCore, MAX_REFRESH_BACKOFF};
use crate::proto::{excused, judged_after, recheck_after, ConnId, Event, Message, Millis, Timer};

impl PeerCore {
    pub(super) fn on_liveness_request(&mut self, conn: ConnId, ts: Millis, from: SocketAddr) {
        self.out.log(Event::LivenessRequest {
            from,
            request_ts: ts,
        });
        let reply = Message::LivenessReply {
            ts,
            from,
            to: self.cfg.addr,
        };
        self.out.send_msg(conn, reply);
    }

    /// Bytes from `conn`'s remote, come at `at`, wait unread: a sign of life, as a frame
    /// would be.
    pub fn input_waiting(&mut self, conn: ConnId, at: Millis) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.link.last_heard = c.link.last_heard.max(at);
    }

    /// See [`crate::proto::Node::arrived`].
    pub fn arrived(&mut self, conn: ConnId, at: Millis) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.link.last_heard = at;
        }
    }

    /// See [`crate::proto::Node::loop_behind`].
    pub fn loop_behind(&mut self) {
        self.behind = true;
    }

    pub(super) fn on_liveness_reply(&mut self, addr: SocketAddr, ts: Millis) {
        self.out.log(Event::LivenessReply {
            from: addr,
            request_ts: ts,
        });
    }

    /// Asks every connected neighbour again, after counting a miss for each that sent
    /// nothing since it was last asked and was not judged for it yet, and reports one
    /// that reached the limit. While the loop is `behind`, a neighbour heard from recently
    /// is excused: its misses stay as they were and its request stays pending.
    pub(super) fn check_liveness(&mut self, now: Millis, behind: bool) {
        self.liveness_due = now + self.cfg.liveness_interval;
        self.out.timer(self.liveness_due, Timer::Liveness);
        self.recheck_due = None;
        self.judge_neighbors(now, behind, false);
        self.ask_pending_seeds_again(now);
        self.redial_lost(now);
        let short = self.top_up_neighbors(now);
        if short && self.neighbors.len() < self.cfg.max_neighbors && now >= self.refresh_due {
            self.refresh_peer_list();
            self.refresh_due = now + self.refresh_backoff * self.cfg.liveness_interval;
            self.refresh_backoff = (self.refresh_backoff * 2).min(MAX_REFRESH_BACKOFF);
        }
    }

    /// Judges the requests due: one unanswered half an interval after it went out is a
    /// miss then (the next check asks again without counting it twice), and one a check
    /// excused is judged again once the loop has caught up or its silence grew too long.
    pub(super) fn recheck_liveness(&mut self, now: Millis, behind: bool) {
        self.recheck_due = None;
        self.judge_neighbors(now, behind, true);
    }

    /// The judgment of a check (every neighbour, then asked again) or of a recheck (the
    /// pending requests that are due, none asked again).
    fn judge_neighbors(&mut self, now: Millis, behind: bool, recheck: bool) {
        let me = self.cfg.addr;
        let (limit, interval) = (self.cfg.liveness_misses, self.cfg.liveness_interval);
        let (early, later) = (
            now.saturating_sub(judged_after(interval)),
            recheck_after(interval),
        );
        let (mut dead, mut back, mut next) = (Vec::new(), Vec::new(), None::<Millis>);
        let mut pending = |at: Millis| next = Some(next.map_or(at, |n: Millis| n.min(at)));
        for (addr, n) in self.neighbors.iter_mut() {
            // Any frame from a neighbour proves it alive, as a reply does: under load,
            // gossip keeps flowing while replies wait behind it, and a dead or frozen node
            // sends nothing.
            let heard = n
                .conn
                .and_then(|c| self.conns.get(&c))
                .map(|c| c.link.last_heard);
            let answered = n.asked_at.is_none_or(|t| heard.is_some_and(|h| h >= t));
            if recheck {
                let due = n.deferred || n.asked_at.is_some_and(|t| t <= early);
                if answered || n.judged || !due {
                    if let (false, false, Some(t)) = (answered, n.judged, n.asked_at) {
                        pending(t + judged_after(interval));
                    }
                    continue;
                }
            }
            let excused = behind && heard.is_some_and(|h| excused(h, now, interval));
            n.deferred = false;
            if let (true, Some(conn)) = (answered, n.conn) {
                // One that had missed a check may have missed our messages too.
                if std::mem::take(&mut n.misses) > 0 {
                    back.push(conn);
                }
            } else if n.judged {
                // Counted when it was judged, half an interval after the request.
            } else if excused {
                // Its request stays pending, to be judged again a quarter interval on.
                n.deferred = true;
                pending(now + later);
                continue;
            } else {
                n.misses += 1;
                let (addr, misses) = (*addr, n.misses);
                self.out.log(Event::LivenessMiss { addr, misses });
                if misses >= limit {
                    dead.push(addr);
                    continue;
                }
                if recheck {
                    n.judged = true;
                    continue;
                }
            }
            n.judged = false;
            if let Some(conn) = n.conn {
                let req = Message::LivenessRequest { ts: now, from: me };
                self.out.send_msg(conn, req);
                n.asked_at = Some(now);
                pending(now + judged_after(interval));
            }
        }
        for conn in back {
            self.send_own(conn, now);
        }
        for addr in dead {
            self.report_dead(addr, now);
        }
        if let Some(at) = next {
            self.arm_recheck(at);
        }
    }

    /// Sets the next judgment at `at`, unless the next check comes first.
    fn arm_recheck(&mut self, at: Millis) {
        if at < self.liveness_due && self.recheck_due.is_none_or(|due| at < due) {
            self.recheck_due = Some(at);
            self.out.timer(at, Timer::Recheck);
        }
    }

    /// Dials again the neighbours we had connected to whose connection dropped: a live one
    /// answers and is kept (its misses reset); a dead one keeps missing until reported.
    pub(super) fn redial_lost(&mut self, now: Millis) {
        let dialing: BTreeSet<SocketAddr> = self.dialing().collect();
        let lost: Vec<SocketAddr> = self
            .neighbors
            .iter()
            .filter(|(a, n)| n.outgoing && n.conn.is_none() && !dialing.contains(a))
            .map(|(a, _)| *a)
            .collect();
        for addr in lost {
            self.dial(addr, now);
        }
    }

    /// Logs the dead node, tells every seed we registered with, and forgets the neighbour.
    pub(super) fn report_dead(&mut self, addr: SocketAddr, now: Millis) {
        self.out.log(Event::DeadNodeReported { addr });
        let report = Arc::new(Message::DeadNode {
            addr,
            ts: now,
            reporter: self.cfg.addr,
        });
        for conn in self.registered_seed_conns() {
            self.out.send(conn, Arc::clone(&report));
        }
        if let Some(conn) = self.neighbors.remove(&addr).and_then(|n| n.conn) {
            self.conns.remove(&conn);
            self.out.close(conn);
        }
        self.candidates.remove(&addr);
        self.refresh_backoff = 1;
        self.refresh_due = now;
    }
}
