//! Hierarchical hashed timer wheel: owns every pending deadline (gossip, liveness,
//! retry) and hands the values back in deadline order. It is a pure data structure:
//! time is a `u64` of milliseconds passed in by the caller. It must never read a clock,
//! do I/O, or know what its values mean.
//!
//! Layout, after tokio's wheel:
//! - Entries live in one `Slab`; every slot and the due list is an intrusive doubly
//!   linked list of slab indices, so insert and cancel are O(1).
//! - Level `k` has 64 slots of `64^k` ms. A timer sits at the level of the highest
//!   6-bit group in which its deadline differs from the wheel's position, and moves
//!   down (cascades) when the position reaches its slot. Eleven levels span all of
//!   `u64`, so a deadline years away needs no overflow list with its re-scans.
//! - A `u64` bitmap per level marks occupied slots: a jump of days skips empty slots,
//!   and `next_deadline` reads one bitmap per level.
//! - `poll` first moves every timer due at `now` into the due list, in order. After
//!   that every occupied slot starts after `now`, so `next_deadline` is either a due
//!   deadline or strictly after `now`.
//! - A timer inserted already due but earlier than the due list's tail (a late insert)
//!   goes to a small ordered map and is merged with the due list on the way out.

use std::collections::BTreeMap;

use slab::Slab;

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// 11 levels of 6 bits cover 66 >= 64 bits: every `u64` deadline fits in the wheel.
const LEVELS: usize = 11;
/// End of an intrusive list.
const NIL: usize = usize::MAX;

/// Handle for cancelling one inserted timer. A key whose timer already fired or was
/// cancelled is stale: cancel() returns None for it, even if the slab slot was reused
/// (keep a generation counter in the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: usize,
    /// Insertion sequence number: unique per wheel, so it doubles as the generation.
    seq: u64,
}

struct Entry<T> {
    deadline: u64,
    seq: u64,
    prev: usize,
    next: usize,
    /// In `late` rather than a list. Otherwise the list follows from the deadline: due
    /// if it is at or before the position, else the slot `level_for`/`slot_for` name.
    /// Not storing the slot lets a level-0 slot join the due list in O(1).
    late: bool,
    value: T,
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: usize,
    tail: usize,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
        }
    }
}

impl List {
    fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

struct Level {
    /// Bit `s` is set iff `slots[s]` is non-empty.
    occupied: u64,
    slots: [List; SLOTS],
}

impl Default for Level {
    fn default() -> Self {
        Level {
            occupied: 0,
            slots: [List::default(); SLOTS],
        }
    }
}

/// One occupied slot that the wheel must process next.
#[derive(Debug, Clone, Copy)]
struct Expiration {
    level: usize,
    slot: usize,
    /// The slot's first millisecond: a lower bound on every deadline in it.
    start: u64,
}

/// A hierarchical hashed timer wheel keyed by millisecond deadlines.
pub struct TimerWheel<T> {
    entries: Slab<Entry<T>>,
    levels: Vec<Level>,
    /// Timers with deadline <= `now`, sorted by (deadline, seq).
    due: List,
    /// Late inserts: due, but earlier than `due`'s tail.
    late: BTreeMap<(u64, u64), usize>,
    /// The wheel's position. Between calls every slotted timer is after it.
    now: u64,
    next_seq: u64,
}

impl<T> TimerWheel<T> {
    /// A wheel whose clock starts at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        TimerWheel {
            entries: Slab::new(),
            levels: (0..LEVELS).map(|_| Level::default()).collect(),
            due: List::default(),
            late: BTreeMap::new(),
            now: now_ms,
            next_seq: 0,
        }
    }

    /// Adds a timer. A deadline at or before the wheel's current time fires at the next poll.
    pub fn insert(&mut self, deadline_ms: u64, value: T) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let index = self.entries.insert(Entry {
            deadline: deadline_ms,
            seq,
            prev: NIL,
            next: NIL,
            late: false,
            value,
        });
        self.place(index);
        TimerKey { index, seq }
    }

    /// Removes a pending timer and returns its value; None if stale.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let entry = self.entries.get(key.index)?;
        if entry.seq != key.seq {
            return None;
        }
        Some(self.remove(key.index).value)
    }

    /// Advances the wheel's clock to `now_ms` (never backwards: an earlier now is treated as
    /// the current time) and returns one expired timer (deadline <= now_ms) as (deadline, value),
    /// or None when none is due. Call repeatedly until None. Expired timers come out in
    /// non-decreasing deadline order; timers with equal deadlines in insertion order.
    pub fn poll(&mut self, now_ms: u64) -> Option<(u64, T)> {
        if now_ms > self.now {
            self.advance(now_ms);
        }
        let index = self.next_due()?;
        let entry = self.remove(index);
        Some((entry.deadline, entry.value))
    }

    /// The earliest time at which poll may return something: an exact deadline or a lower
    /// bound (e.g. the start of a higher-level slot that must be cascaded). None when empty.
    /// Must be > the wheel's current time whenever nothing is already due, so a caller
    /// sleeping until it never busy-loops; it may be <= current time only if a poll now
    /// would return a timer.
    pub fn next_deadline(&self) -> Option<u64> {
        match self.next_due() {
            Some(index) => Some(self.entries[index].deadline),
            None => self.next_expiration().map(|exp| exp.start),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The wheel's current time (the latest now_ms passed to poll, or the start).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Moves the position to `target`, processing every slot that starts at or before
    /// it in time order, so that all timers due by `target` end up in the due list.
    fn advance(&mut self, target: u64) {
        while let Some(exp) = self.next_expiration() {
            if exp.start > target {
                break;
            }
            // Every other slot starts after `exp.start`, so slotted timers stay valid.
            self.now = exp.start;
            let list = self.take_slot(exp.level, exp.slot);
            if exp.level == 0 {
                append(&mut self.entries, &mut self.due, list); // all due exactly now
            } else {
                self.place_all(list);
            }
        }
        self.now = target;
    }

    /// The earliest occupied slot. Lower levels always hold earlier slots than higher
    /// ones, and no slot at or before the position is occupied, so the lowest set bit
    /// of the lowest non-empty level is it.
    fn next_expiration(&self) -> Option<Expiration> {
        let (level, occupied) = self
            .levels
            .iter()
            .map(|level| level.occupied)
            .enumerate()
            .find(|&(_, occupied)| occupied != 0)?;
        let slot = occupied.trailing_zeros() as usize;
        debug_assert!(slot >= slot_for(self.now, level), "slot behind the wheel");
        let start = slot_start(self.now, level, slot);
        Some(Expiration { level, slot, start })
    }

    /// The due timer that fires first: the earlier of the due list's head and the
    /// first late insert, by (deadline, insertion order).
    fn next_due(&self) -> Option<usize> {
        let listed = (!self.due.is_empty()).then_some(self.due.head);
        let late = self
            .late
            .first_key_value()
            .map(|(&key, &index)| (key, index));
        match (listed, late) {
            (Some(head), Some((key, index))) => {
                let entry = &self.entries[head];
                Some(if (entry.deadline, entry.seq) < key {
                    head
                } else {
                    index
                })
            }
            (head, late) => head.or(late.map(|(_, index)| index)),
        }
    }

    /// Links an entry wherever its deadline belongs relative to the position.
    fn place(&mut self, index: usize) {
        let deadline = self.entries[index].deadline;
        if deadline > self.now {
            self.push_slot(index, deadline);
        } else if self.due_tail_deadline() <= deadline {
            push_back(&mut self.entries, &mut self.due, index);
        } else {
            let entry = &mut self.entries[index];
            entry.late = true;
            self.late.insert((deadline, entry.seq), index);
        }
    }

    /// Re-places every entry of a detached list, keeping its order.
    fn place_all(&mut self, list: List) {
        let mut index = list.head;
        while index != NIL {
            let next = self.entries[index].next;
            self.place(index);
            index = next;
        }
    }

    fn push_slot(&mut self, index: usize, deadline: u64) {
        let level = level_for(self.now, deadline);
        let slot = slot_for(deadline, level);
        let level = &mut self.levels[level];
        push_back(&mut self.entries, &mut level.slots[slot], index);
        level.occupied |= 1 << slot;
    }

    fn take_slot(&mut self, level: usize, slot: usize) -> List {
        let level = &mut self.levels[level];
        level.occupied &= !(1 << slot);
        std::mem::take(&mut level.slots[slot])
    }

    fn due_tail_deadline(&self) -> u64 {
        match self.due.tail {
            NIL => 0,
            tail => self.entries[tail].deadline,
        }
    }

    /// Unlinks an entry from wherever it is and frees its slab slot.
    fn remove(&mut self, index: usize) -> Entry<T> {
        let entry = &self.entries[index];
        let deadline = entry.deadline;
        if entry.late {
            self.late.remove(&(deadline, entry.seq));
        } else if deadline <= self.now {
            unlink(&mut self.entries, &mut self.due, index);
        } else {
            let level = level_for(self.now, deadline);
            let slot = slot_for(deadline, level);
            let level = &mut self.levels[level];
            unlink(&mut self.entries, &mut level.slots[slot], index);
            if level.slots[slot].is_empty() {
                level.occupied &= !(1 << slot);
            }
        }
        self.entries.remove(index)
    }
}

/// Summary only: the entries may be a million timers.
impl<T> std::fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerWheel")
            .field("now", &self.now)
            .field("len", &self.len())
            .field("next_deadline", &self.next_deadline())
            .finish()
    }
}

/// The level for a deadline after `now`: the highest 6-bit group in which they differ.
fn level_for(now: u64, deadline: u64) -> usize {
    let differing = (now ^ deadline) | (SLOTS as u64 - 1);
    let top_bit = 63 - differing.leading_zeros();
    (top_bit / SLOT_BITS) as usize
}

fn slot_for(deadline: u64, level: usize) -> usize {
    ((deadline >> (SLOT_BITS * level as u32)) & (SLOTS as u64 - 1)) as usize
}

/// First millisecond of `slot` at `level` within the level's span that contains `now`.
fn slot_start(now: u64, level: usize, slot: usize) -> u64 {
    let shift = SLOT_BITS * level as u32;
    // The top level spans all of u64, so its span mask is empty.
    let span_mask = u64::MAX.checked_shl(shift + SLOT_BITS).unwrap_or(0);
    (now & span_mask) + ((slot as u64) << shift)
}

fn push_back<T>(entries: &mut Slab<Entry<T>>, list: &mut List, index: usize) {
    let entry = &mut entries[index];
    entry.prev = list.tail;
    entry.next = NIL;
    match list.tail {
        NIL => list.head = index,
        tail => entries[tail].next = index,
    }
    list.tail = index;
}

/// Moves all of `other` to the end of `list` in O(1).
fn append<T>(entries: &mut Slab<Entry<T>>, list: &mut List, other: List) {
    if other.is_empty() {
        return;
    }
    match list.tail {
        NIL => list.head = other.head,
        tail => {
            entries[tail].next = other.head;
            entries[other.head].prev = tail;
        }
    }
    list.tail = other.tail;
}

fn unlink<T>(entries: &mut Slab<Entry<T>>, list: &mut List, index: usize) {
    let (prev, next) = (entries[index].prev, entries[index].next);
    match prev {
        NIL => list.head = next,
        prev => entries[prev].next = next,
    }
    match next {
        NIL => list.tail = prev,
        next => entries[next].prev = prev,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MINUTE: u64 = 60_000;
    const DAY: u64 = 24 * 60 * MINUTE;
    const YEAR: u64 = 365 * DAY;

    /// Deterministic xorshift64, so the big tests replay exactly without an RNG crate.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % bound
        }
    }

    /// 63, 64, 65, 4095, 4096, 4097, ... 64^10 + 1: the first and last ms of each level.
    fn level_boundaries() -> Vec<u64> {
        (1..LEVELS as u32)
            .flat_map(|k| [64u64.pow(k) - 1, 64u64.pow(k), 64u64.pow(k) + 1])
            .collect()
    }

    fn walk<T>(wheel: &TimerWheel<T>, list: List) -> Vec<usize> {
        let (mut out, mut prev, mut index) = (Vec::new(), NIL, list.head);
        while index != NIL {
            assert_eq!(wheel.entries[index].prev, prev, "broken back link");
            out.push(index);
            (prev, index) = (index, wheel.entries[index].next);
        }
        assert_eq!(list.tail, prev, "tail is not the last entry");
        out
    }

    /// Checks every structural fact the wheel's methods rely on.
    fn assert_invariants<T>(wheel: &TimerWheel<T>) {
        let mut linked = 0;
        for (level, slots) in wheel.levels.iter().enumerate() {
            for (slot, list) in slots.slots.iter().enumerate() {
                assert_eq!(slots.occupied >> slot & 1 == 1, !list.is_empty());
                for index in walk(wheel, *list) {
                    let entry = &wheel.entries[index];
                    assert!(entry.deadline > wheel.now, "slotted timer is already due");
                    assert!(!entry.late);
                    // remove() finds the slot from these two, so they must hold.
                    assert_eq!(level_for(wheel.now, entry.deadline), level);
                    assert_eq!(slot_for(entry.deadline, level), slot);
                    linked += 1;
                }
            }
        }
        let due: Vec<_> = walk(wheel, wheel.due)
            .into_iter()
            .map(|index| &wheel.entries[index])
            .inspect(|entry| assert!(!entry.late))
            .map(|entry| (entry.deadline, entry.seq))
            .collect();
        assert!(due.windows(2).all(|pair| pair[0] < pair[1]), "due unsorted");
        assert!(due.iter().all(|&(deadline, _)| deadline <= wheel.now));
        for (&(deadline, seq), &index) in &wheel.late {
            let entry = &wheel.entries[index];
            assert_eq!(
                (entry.deadline, entry.seq, entry.late),
                (deadline, seq, true)
            );
            assert!(deadline <= wheel.now);
        }
        assert_eq!(linked + due.len() + wheel.late.len(), wheel.len());
    }

    /// Drives the wheel like the daemon: sleep until next_deadline, poll until None.
    /// Returns (poll time, deadline, value) for every timer in firing order.
    fn drive<T>(wheel: &mut TimerWheel<T>) -> Vec<(u64, u64, T)> {
        let mut fired = Vec::new();
        while let Some(at) = wheel.next_deadline() {
            let (was, before) = (wheel.now(), fired.len());
            let now = at.max(was);
            while let Some((deadline, value)) = wheel.poll(now) {
                fired.push((now, deadline, value));
            }
            assert!(
                at > was || fired.len() > before,
                "next_deadline <= now but nothing due"
            );
            if wheel.len() < 1_000 {
                assert_invariants(wheel); // O(n): only on small wheels
            }
        }
        fired
    }

    fn assert_each_fired_on_time(fired: &[(u64, u64, usize)], expected: &[u64]) {
        let deadlines: Vec<u64> = fired.iter().map(|&(_, deadline, _)| deadline).collect();
        assert_eq!(deadlines, expected);
        for &(now, deadline, _) in fired {
            assert_eq!(now, deadline, "timer did not fire exactly at its deadline");
        }
    }

    #[test]
    fn timers_fire_in_deadline_order_across_levels() {
        let deadlines = [3 * DAY, 70_000, 1, 64, 4_097, 2 * MINUTE, 5, 3 * DAY + 1];
        let mut wheel = TimerWheel::new(0);
        for (value, &deadline) in deadlines.iter().enumerate() {
            wheel.insert(deadline, value);
        }
        let mut expected = deadlines.to_vec();
        expected.sort_unstable();
        assert_each_fired_on_time(&drive(&mut wheel), &expected);
        assert!(wheel.is_empty());
    }

    #[test]
    fn timers_with_equal_deadlines_fire_in_insertion_order() {
        let mut wheel = TimerWheel::new(0);
        wheel.insert(100_000, 'a');
        wheel.insert(100_000, 'b');
        assert_eq!(wheel.poll(70_000), None);
        wheel.insert(100_000, 'c');
        assert_eq!(wheel.poll(99_999), None);
        wheel.insert(100_000, 'd');
        wheel.insert(99_999, 'z');
        let fired: Vec<_> = std::iter::from_fn(|| wheel.poll(100_000)).collect();
        let expected = [(99_999, 'z'), (100_000, 'a'), (100_000, 'b')];
        let expected = [&expected[..], &[(100_000, 'c'), (100_000, 'd')]].concat();
        assert_eq!(fired, expected);
    }

    #[test]
    fn timer_never_fires_before_its_deadline_and_fires_at_the_first_poll_after() {
        for start in [0, 12_345, 1 << 40, u64::MAX - 64u64.pow(4)] {
            let boundaries = level_boundaries()
                .into_iter()
                .chain([1, 2, 63, 64, 4_095, 4_096]);
            for deadline in boundaries.filter_map(|offset| start.checked_add(offset)) {
                let mut wheel = TimerWheel::new(start);
                wheel.insert(deadline, ());
                assert_eq!(wheel.poll(deadline - 1), None, "fired early: {deadline}");
                assert!(wheel.next_deadline().is_some_and(|at| at == deadline));
                assert_eq!(wheel.poll(deadline), Some((deadline, ())));
            }
        }
    }

    #[test]
    fn deadlines_at_level_boundaries_fire_exactly_on_time() {
        let mut deadlines = level_boundaries();
        deadlines.extend([63, 64, 4_095, 4_096, 1, 0]);
        let mut wheel = TimerWheel::new(0);
        for (value, &deadline) in deadlines.iter().enumerate() {
            wheel.insert(deadline, value);
        }
        deadlines.sort_unstable();
        assert_each_fired_on_time(&drive(&mut wheel), &deadlines);
    }

    #[test]
    fn deadlines_years_away_fire_in_order_and_on_time() {
        let deadlines = [u64::MAX, 100 * YEAR, 1, 3 * YEAR, 10 * DAY, 3 * YEAR - 1];
        let mut wheel = TimerWheel::new(0);
        for (value, &deadline) in deadlines.iter().enumerate() {
            wheel.insert(deadline, value);
        }
        let mut expected = deadlines.to_vec();
        expected.sort_unstable();
        assert_each_fired_on_time(&drive(&mut wheel), &expected);
    }

    fn random_wheel(count: usize, horizon: u64) -> (TimerWheel<usize>, Vec<(u64, usize)>) {
        let (mut rng, mut wheel) = (XorShift(0x9E37_79B9_7F4A_7C15), TimerWheel::new(1_000));
        let mut model = Vec::with_capacity(count);
        for value in 0..count {
            let deadline = 1_000 + rng.below(horizon);
            wheel.insert(deadline, value);
            model.push((deadline, value));
        }
        model.sort(); // values rise with insertion, so this is (deadline, insertion) order
        (wheel, model)
    }

    #[test]
    fn a_hundred_thousand_timers_fire_in_order_when_driven_by_next_deadline() {
        let (mut wheel, model) = random_wheel(100_000, 30 * DAY);
        let fired = drive(&mut wheel);
        assert!(fired.iter().all(|&(now, deadline, _)| now == deadline));
        let fired: Vec<_> = fired.into_iter().map(|(_, d, v)| (d, v)).collect();
        assert_eq!(fired, model);
    }

    #[test]
    fn a_huge_jump_fires_every_timer_once_in_order() {
        let (mut wheel, model) = random_wheel(100_000, 10 * DAY);
        let fired: Vec<_> = std::iter::from_fn(|| wheel.poll(1_000 + 10 * DAY)).collect();
        assert_eq!(fired, model);
        assert_eq!((wheel.len(), wheel.next_deadline()), (0, None));
    }

    #[test]
    fn cancelled_timer_never_fires() {
        let mut wheel = TimerWheel::new(0);
        let keep = wheel.insert(70_000, "keep");
        let gone = wheel.insert(70_000, "gone");
        let far = wheel.insert(5 * YEAR, "far");
        assert_eq!(wheel.cancel(gone), Some("gone"));
        assert_eq!(wheel.cancel(far), Some("far"));
        assert_eq!(wheel.poll(u64::MAX), Some((70_000, "keep")));
        assert_eq!(wheel.poll(u64::MAX), None);
        assert_eq!(wheel.cancel(keep), None);
    }

    #[test]
    fn cancel_of_a_fired_key_returns_none_even_after_its_slot_is_reused() {
        let mut wheel = TimerWheel::new(0);
        let fired = wheel.insert(10, 1);
        assert_eq!(wheel.poll(10), Some((10, 1)));
        let reused = wheel.insert(20, 2);
        assert_eq!(reused.index, fired.index, "test expects slab slot reuse");
        assert_eq!(wheel.cancel(fired), None);
        assert_eq!(wheel.cancel(reused), Some(2));
    }

    #[test]
    fn cancel_of_a_cancelled_key_returns_none_even_after_its_slot_is_reused() {
        let mut wheel = TimerWheel::new(0);
        let first = wheel.insert(10, 1);
        assert_eq!(wheel.cancel(first), Some(1));
        assert_eq!(wheel.cancel(first), None);
        let second = wheel.insert(10, 2);
        assert_eq!(second.index, first.index, "test expects slab slot reuse");
        assert_eq!(wheel.cancel(first), None);
        assert_eq!(wheel.poll(10), Some((10, 2)));
    }

    #[test]
    fn inserting_a_past_deadline_fires_at_the_next_poll() {
        let mut wheel = TimerWheel::new(1_000);
        wheel.insert(500, "past");
        wheel.insert(1_000, "now");
        assert_eq!(wheel.next_deadline(), Some(500));
        assert_eq!(wheel.poll(0), Some((500, "past")));
        assert_eq!(wheel.poll(0), Some((1_000, "now")));
        assert_eq!(wheel.poll(0), None);
    }

    #[test]
    fn late_inserts_merge_in_deadline_order_with_due_timers() {
        let mut wheel = TimerWheel::new(0);
        wheel.insert(800, "a");
        wheel.insert(1_000, "b");
        assert_eq!(wheel.poll(1_000), Some((800, "a")));
        for (deadline, value) in [(900, "c"), (300, "d"), (1_000, "e"), (300, "f"), (50, "g")] {
            wheel.insert(deadline, value);
        }
        assert_invariants(&wheel);
        let fired: Vec<_> = std::iter::from_fn(|| wheel.poll(1_000)).collect();
        let order = [(50, "g"), (300, "d"), (300, "f"), (900, "c")];
        assert_eq!(fired, [&order[..], &[(1_000, "b"), (1_000, "e")]].concat());
    }

    #[test]
    fn next_deadline_is_after_now_when_nothing_is_due_and_none_when_empty() {
        let mut wheel = TimerWheel::new(5);
        assert_eq!(wheel.next_deadline(), None);
        let key = wheel.insert(5 + 3 * DAY, ());
        let at = wheel.next_deadline().expect("a timer is pending");
        assert!(at > wheel.now() && at <= 5 + 3 * DAY);
        assert_eq!(wheel.poll(at), None);
        assert!(wheel.next_deadline().is_some_and(|next| next > at));
        assert_eq!(wheel.cancel(key), Some(()));
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn poll_with_an_earlier_now_keeps_the_current_time() {
        let mut wheel = TimerWheel::new(100);
        wheel.insert(150, ());
        assert_eq!(wheel.poll(50), None);
        assert_eq!(wheel.now(), 100);
        assert_eq!(wheel.poll(149), None);
        assert_eq!(wheel.poll(120), None);
        assert_eq!(wheel.now(), 149);
        assert_eq!(wheel.poll(150), Some((150, ())));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        InsertPast(u64),
        Cancel(usize),
        Poll(u64),
        PollEarlier(u64),
    }

    fn span() -> impl Strategy<Value = u64> {
        let boundary = (1..LEVELS as u32, 0..3u64).prop_map(|(k, d)| 64u64.pow(k) + d - 1);
        prop_oneof![
            0..100u64,
            0..10_000u64,
            0..20 * MINUTE,
            0..60 * DAY,
            0..200 * YEAR,
            boundary,
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => span().prop_map(Op::Insert),
            1 => span().prop_map(Op::InsertPast),
            2 => any::<usize>().prop_map(Op::Cancel),
            4 => span().prop_map(Op::Poll),
            1 => span().prop_map(Op::PollEarlier),
        ]
    }

    /// The reference: every pending timer in a map ordered by (deadline, insertion).
    #[derive(Default)]
    struct Model {
        now: u64,
        timers: BTreeMap<(u64, u64), u64>,
        keys: Vec<(TimerKey, (u64, u64))>,
    }

    impl Model {
        fn poll(&mut self, now: u64) -> Option<(u64, u64)> {
            self.now = self.now.max(now);
            let (&(deadline, seq), _) = self.timers.first_key_value()?;
            let due = deadline <= self.now;
            due.then(|| (deadline, self.timers.remove(&(deadline, seq)).unwrap_or(0)))
        }
    }

    fn apply(wheel: &mut TimerWheel<u64>, model: &mut Model, op: Op) {
        match op {
            Op::Insert(_) | Op::InsertPast(_) => {
                let deadline = match op {
                    Op::Insert(span) => model.now.saturating_add(span),
                    _ => model.now.saturating_sub(1 + span_of(&op)),
                };
                let seq = model.keys.len() as u64;
                model.timers.insert((deadline, seq), seq);
                model
                    .keys
                    .push((wheel.insert(deadline, seq), (deadline, seq)));
            }
            Op::Cancel(pick) if !model.keys.is_empty() => {
                let (key, id) = model.keys[pick % model.keys.len()];
                assert_eq!(wheel.cancel(key), model.timers.remove(&id));
            }
            Op::Cancel(_) => {}
            Op::Poll(span) => {
                let now = model.now.saturating_add(span);
                assert_eq!(wheel.poll(now), model.poll(now));
            }
            Op::PollEarlier(span) => {
                let now = model.now.saturating_sub(span);
                assert_eq!(wheel.poll(now), model.poll(now));
            }
        }
    }

    fn span_of(op: &Op) -> u64 {
        match *op {
            Op::Insert(span) | Op::InsertPast(span) | Op::Poll(span) => span,
            Op::PollEarlier(span) => span,
            Op::Cancel(_) => 0,
        }
    }

    fn assert_next_deadline_is_sound(wheel: &TimerWheel<u64>, model: &Model) {
        let next = wheel.next_deadline();
        match model.timers.first_key_value() {
            None => assert_eq!(next, None),
            Some((&(earliest, _), _)) => {
                let next = next.expect("timers pending but no next deadline");
                assert!(next <= earliest, "next_deadline {next} after {earliest}");
                assert!(earliest <= model.now || next > model.now, "would busy-loop");
            }
        }
    }

    proptest! {
        #[test]
        fn wheel_matches_a_sorted_model(
            start in prop_oneof![Just(0u64), 0..1u64 << 40, Just(u64::MAX - 70 * DAY)],
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let mut wheel = TimerWheel::new(start);
            let mut model = Model { now: start, ..Model::default() };
            for op in ops {
                apply(&mut wheel, &mut model, op);
                assert_invariants(&wheel);
                assert_next_deadline_is_sound(&wheel, &model);
                prop_assert_eq!(wheel.now(), model.now);
                prop_assert_eq!(wheel.len(), model.timers.len());
            }
        }
    }
}
