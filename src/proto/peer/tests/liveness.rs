//! Unit tests of the peer core's liveness judgments while its loop is behind: the excuse,
//! its recheck every quarter interval, and a request judged half an interval after it
//! went out.

use super::*;

#[test]
fn a_check_while_the_loop_is_behind_excuses_only_neighbours_heard_lately() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001), peer(9002)]);
    h.core
        .message(conns[1], gossip_msg(peer(9002), 1), T0 + 900);
    h.drain();
    h.check(1);
    // Asked at 1 s, neither answers; 9001 was last heard at T0, 9002 at 0.9 s.
    h.core.loop_behind();
    assert_eq!(misses(&h.check(2)), vec![(peer(9001), 1)], "9002 excused");
    h.core.loop_behind();
    let silent = misses(&h.check(3));
    assert_eq!(silent, vec![(peer(9001), 2), (peer(9002), 1)]);
    assert_eq!(misses(&h.check(4)), vec![(peer(9001), 3), (peer(9002), 2)]);
    assert_eq!(h.neighbors(), vec![peer(9002)], "9001 reported");
}

#[test]
fn a_silent_neighbour_is_reported_while_the_loop_stays_behind() {
    let (mut h, _) = Harness::with_neighbors(&[peer(9001)]);
    h.check(1);
    for k in 2..=4 {
        h.core.loop_behind();
        let check = h.check(k);
        let expected = u32::try_from(k - 1).unwrap_or(u32::MAX);
        assert_eq!(misses(&check), vec![(peer(9001), expected)]);
    }
    assert!(h.neighbors().is_empty(), "reported after three misses");
}

/// The recheck after the check due at T0 + k intervals, `quarters` quarter intervals on.
fn recheck(h: &mut Harness, k: u64, quarters: u64) -> Vec<Action> {
    h.core
        .timer(Timer::Recheck, T0 + k * LIVENESS + quarters * LIVENESS / 4);
    h.drain()
}

/// A neighbour heard last at 0.9 s, asked at 1 s, and unanswered at the check due at 2 s,
/// which the loop, behind, makes; that check's actions.
fn excused_at_the_second_check() -> (Harness, Vec<ConnId>, Vec<Action>) {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001)]);
    h.core
        .message(conns[0], gossip_msg(peer(9001), 1), T0 + 900);
    h.drain();
    h.check(1);
    h.core.loop_behind();
    let check = h.check(2);
    (h, conns, check)
}

#[test]
fn an_excused_neighbour_is_judged_again_a_quarter_interval_on() {
    let (mut h, conns, check) = excused_at_the_second_check();
    assert!(misses(&check).is_empty(), "excused while behind");
    let at = T0 + 2 * LIVENESS + LIVENESS / 4;
    assert_eq!(timers(&check, Timer::Recheck), vec![at]);
    assert!(asked(&check).is_empty(), "its request stays pending");
    // The loop has caught up a quarter interval on: the unanswered request is a miss,
    // asked again at the next check, which does not count it twice.
    let rechecked = recheck(&mut h, 2, 1);
    assert_eq!(misses(&rechecked), vec![(peer(9001), 1)]);
    assert!(asked(&rechecked).is_empty());
    let check = h.check(3);
    assert!(misses(&check).is_empty(), "counted at the recheck");
    assert_eq!(asked(&check), vec![conns[0]], "asked again");
    assert_eq!(misses(&recheck(&mut h, 3, 2)), vec![(peer(9001), 2)]);
    h.check(4);
    assert_eq!(misses(&recheck(&mut h, 4, 2)), vec![(peer(9001), 3)]);
    assert!(h.neighbors().is_empty(), "reported at the third miss");
}

#[test]
fn a_request_unanswered_half_an_interval_on_is_a_miss_then() {
    let (mut h, conns) = Harness::with_neighbors(&[peer(9001), peer(9002)]);
    let check = h.check(1);
    assert_eq!(asked(&check), conns);
    assert_eq!(
        timers(&check, Timer::Recheck),
        vec![T0 + LIVENESS + LIVENESS / 2]
    );
    // 9002 answers within half an interval; 9001, frozen, never does.
    h.reply(conns[1], peer(9002), T0 + LIVENESS + 300);
    assert!(misses(&recheck(&mut h, 1, 1)).is_empty(), "not due yet");
    assert_eq!(misses(&recheck(&mut h, 1, 2)), vec![(peer(9001), 1)]);
    for k in 2..=3 {
        let check = h.check(k);
        assert!(misses(&check).is_empty(), "counted half an interval before");
        assert_eq!(asked(&check), conns, "both asked again");
        h.reply(conns[1], peer(9002), T0 + k * LIVENESS + 300);
        let expected = u32::try_from(k).unwrap_or(u32::MAX);
        assert_eq!(misses(&recheck(&mut h, k, 2)), vec![(peer(9001), expected)]);
    }
    // Reported 2.5 intervals after the first request it left unanswered.
    assert_eq!(h.neighbors(), vec![peer(9002)]);
}

#[test]
fn an_excused_neighbour_that_answers_before_the_recheck_misses_nothing() {
    let (mut h, conns, check) = excused_at_the_second_check();
    assert!(misses(&check).is_empty());
    h.reply(conns[0], peer(9001), T0 + 2 * LIVENESS + 100);
    let rechecked = recheck(&mut h, 2, 1);
    assert!(misses(&rechecked).is_empty() && asked(&rechecked).is_empty());
    assert!(misses(&h.check(3)).is_empty(), "answered");
}

#[test]
fn an_excuse_lasts_while_the_loop_stays_behind_but_not_past_the_next_check() {
    let (mut h, _, _) = excused_at_the_second_check();
    for q in 1..=2 {
        h.core.loop_behind();
        let rechecked = recheck(&mut h, 2, q);
        assert!(misses(&rechecked).is_empty(), "still behind at quarter {q}");
        let next = T0 + 2 * LIVENESS + (q + 1) * LIVENESS / 4;
        assert_eq!(timers(&rechecked, Timer::Recheck), vec![next]);
    }
    h.core.loop_behind();
    let last = recheck(&mut h, 2, 3);
    assert!(misses(&last).is_empty());
    assert!(
        timers(&last, Timer::Recheck).is_empty(),
        "the check comes first"
    );
    // Silent for over two intervals by then: no longer excused.
    h.core.loop_behind();
    assert_eq!(misses(&h.check(3)), vec![(peer(9001), 1)]);
}
