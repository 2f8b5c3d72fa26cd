//! Unit tests of the peer core's side of the seeds: retries with backoff, spare seeds,
//! asking again for a lost peer list, and refreshing the list while slots stay empty.

use super::*;

#[test]
fn an_unreachable_seed_is_retried_with_growing_backoff() {
    let mut core = core(2);
    let (mut conn, target) = connects(&drain(&mut core))[0];
    let (mut now, mut delays) = (T0, Vec::new());
    for _ in 0..7 {
        core.closed(conn, refused(), now);
        let failed = drain(&mut core);
        let retry_ms = only(retry_delays(&failed));
        let error = "connect failed: refused".to_string();
        let unreachable = Event::SeedUnreachable {
            seed: target,
            error,
            retry_ms,
        };
        assert_eq!(events(&failed), vec![unreachable]);
        assert_eq!(timers(&failed, Timer::SeedRetry), vec![now + retry_ms]);
        core.timer(Timer::SeedRetry, now + retry_ms - 1);
        assert!(drain(&mut core).is_empty(), "not before the delay");
        now += retry_ms;
        core.timer(Timer::SeedRetry, now);
        let retried = only(connects(&drain(&mut core)));
        assert_eq!(retried.1, target);
        conn = retried.0;
        delays.push(retry_ms);
    }
    for (delay, base) in delays.iter().zip([100, 200, 400, 800, 1_000, 1_000, 1_000]) {
        assert!((base..=base + base / 4).contains(delay), "{delays:?}");
    }
    // Once it has answered, a lost connection is retried from the shortest delay again.
    core.connected(conn, now);
    core.message(conn, list(&[]), now);
    core.closed(conn, Disconnect::Closed, now + 1);
    let delay = only(retry_delays(&drain(&mut core)));
    assert!((100..=125).contains(&delay), "{delay}");
}

#[test]
fn a_spare_seed_is_tried_only_while_the_majority_lacks_answers() {
    let mut core = core(3);
    let chosen = connects(&drain(&mut core));
    let spare = seeds(3)
        .into_iter()
        .find(|s| chosen.iter().all(|c| c.1 != *s));
    core.closed(chosen[0].0, refused(), T0 + 1);
    let failed = drain(&mut core);
    assert_eq!(retry_delays(&failed).len(), 1);
    let tried = only(connects(&failed));
    assert_eq!(Some(tried.1), spare);
    for conn in [chosen[1].0, tried.0] {
        core.connected(conn, T0 + 2);
        core.message(conn, list(&[]), T0 + 2);
    }
    drain(&mut core);
    core.timer(Timer::SeedRetry, only(timers(&failed, Timer::SeedRetry)));
    assert_eq!(dialled(&drain(&mut core)), vec![], "the majority answered");
}

#[test]
fn a_seed_that_never_answered_is_dropped_when_it_fails_after_the_majority() {
    let mut core = core(3);
    let chosen = connects(&drain(&mut core));
    core.closed(chosen[0].0, refused(), T0 + 1);
    let failed = drain(&mut core);
    let spare = only(connects(&failed));
    core.timer(Timer::SeedRetry, only(timers(&failed, Timer::SeedRetry)));
    let retried = only(connects(&drain(&mut core)));
    for conn in [chosen[1].0, spare.0] {
        core.connected(conn, T0 + 2_000);
        core.message(conn, list(&[]), T0 + 2_000);
    }
    drain(&mut core);
    core.closed(retried.0, refused(), T0 + 2_001);
    assert!(drain(&mut core).is_empty(), "no longer needed: not retried");
}

#[test]
fn the_peer_list_refresh_backs_off_while_it_brings_nothing_new() {
    let (mut h, _) = Harness::registered(config(me(), seeds(2)), &[]);
    let register = Message::Register { addr: me() };
    let mut refreshed = Vec::new();
    for k in 1..=84 {
        let asked = pick!(sends(&h.check(k)), (c, m) if *m == register => *c);
        let Some(&seed_conn) = asked.first() else {
            continue;
        };
        assert!(asked.len() == 1 && h.seeds.contains(&seed_conn));
        refreshed.push(k);
        // Nothing new until the answer at 64, which brings one candidate.
        let peers = if k == 64 { vec![peer(9001)] } else { vec![] };
        h.core
            .message(seed_conn, list(&peers), T0 + k * LIVENESS + 1);
        h.drain();
    }
    // Waits of 1, 2, 4, 8, 16, 16, 16 intervals; back to 1 after the new candidate.
    assert_eq!(refreshed, vec![1, 2, 4, 8, 16, 32, 48, 64, 80, 81, 83]);
}

#[test]
fn a_seed_that_never_sends_its_peer_list_is_asked_again_each_interval() {
    let mut core = core(2);
    let conns: Vec<ConnId> = connects(&drain(&mut core)).iter().map(|c| c.0).collect();
    let (answers, silent) = (conns[0], conns[1]);
    core.connected(answers, T0 + 10);
    core.connected(silent, T0 + 10);
    core.message(answers, list(&[]), T0 + 20);
    drain(&mut core);
    let register = Message::Register { addr: me() };
    core.timer(Timer::Liveness, T0 + LIVENESS);
    let first = sends(&drain(&mut core));
    assert!(
        !first.contains(&(silent, register.clone())),
        "asked 990 ms ago: {first:?}"
    );
    core.timer(Timer::Liveness, T0 + 2 * LIVENESS);
    let second = sends(&drain(&mut core));
    assert!(second.contains(&(silent, register)), "{second:?}");
    assert!(!second.iter().any(|(c, _)| *c == answers), "{second:?}");
    core.message(silent, list(&[]), T0 + 2 * LIVENESS + 5);
    assert_eq!(
        core.registered_seeds().count(),
        2,
        "the second ask was answered"
    );
}
