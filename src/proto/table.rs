//! A small ordered map for a peer's connection and neighbour tables: the keys in one
//! sorted vector, the values in another.
//!
//! A peer holds about ten connections and eight neighbours. As a `BTreeMap` each table is
//! at least one 11-slot leaf, and a second leaf and a root once it passes 11: 1.6 KB and
//! 1.1 KB a peer in a million-peer simulation. A sorted vector of pairs is smaller but
//! slower, as a binary search then strides over whole entries (measured: 9% more CPU in
//! the simulator). Here the search reads the keys alone, which sit together as they do in
//! a B-tree leaf, and then the one value it found. Capacity grows by half the length and
//! shrinks when the table empties by half, so a table holds little more than its entries.
//! Iteration is in key order, as a `BTreeMap`'s is.
//!
//! Small keys can be kept in the table itself ([`Inline`]) while they are few: a lookup
//! then reads the table's owner and the value, not a separate key array in between (one
//! cache miss less in a row of them, on every frame a large simulation delivers).

use crate::hint;

/// Where a table keeps its sorted keys.
pub trait Keys<K>: Default {
    fn as_slice(&self) -> &[K];
    fn insert(&mut self, i: usize, key: K);
    fn remove(&mut self, i: usize);
    /// Room for `more` keys beyond the current ones.
    fn reserve_exact(&mut self, more: usize);
    /// Gives back the room past `room` keys.
    fn shrink_to(&mut self, room: usize);
    /// Cache hints for the keys a search reads (see [`crate::hint`]); none by default.
    fn prefetch(&self) {}
}

impl<K> Keys<K> for Vec<K> {
    fn as_slice(&self) -> &[K] {
        self
    }
    fn insert(&mut self, i: usize, key: K) {
        Vec::insert(self, i, key)
    }
    fn remove(&mut self, i: usize) {
        Vec::remove(self, i);
    }
    fn reserve_exact(&mut self, more: usize) {
        Vec::reserve_exact(self, more)
    }
    fn shrink_to(&mut self, room: usize) {
        Vec::shrink_to(self, room)
    }
}

/// Up to `N` keys in place, more in a vector (all of them then).
#[derive(Debug)]
pub struct Inline<K, const N: usize> {
    len: usize,
    here: [K; N],
    spilled: Vec<K>,
}

impl<K: Copy + Default, const N: usize> Default for Inline<K, N> {
    fn default() -> Self {
        Inline {
            len: 0,
            here: [K::default(); N],
            spilled: Vec::new(),
        }
    }
}

impl<K: Copy + Default, const N: usize> Keys<K> for Inline<K, N> {
    fn as_slice(&self) -> &[K] {
        match self.here.get(..self.len) {
            Some(keys) => keys,
            None => &self.spilled,
        }
    }

    fn insert(&mut self, i: usize, key: K) {
        if self.len < N {
            if let Some(tail) = self.here.get_mut(i..=self.len) {
                tail.rotate_right(1);
                if let Some(first) = tail.first_mut() {
                    *first = key;
                }
            }
        } else {
            if self.len == N {
                self.spilled.reserve_exact(N + N / 2);
                self.spilled.extend_from_slice(&self.here);
            }
            self.spilled.insert(i, key);
        }
        self.len += 1;
    }

    fn remove(&mut self, i: usize) {
        if self.len <= N {
            if let Some(tail) = self.here.get_mut(i..self.len) {
                tail.rotate_left(1);
            }
        } else {
            self.spilled.remove(i);
            if self.len == N + 1 {
                for (here, key) in self.here.iter_mut().zip(&self.spilled) {
                    *here = *key;
                }
                self.spilled = Vec::new();
            }
        }
        self.len -= 1;
    }

    /// Only spilled keys take room; keys still in place take none, even when the
    /// table's values grow past `N` (they spill by half as much again when they must).
    fn reserve_exact(&mut self, more: usize) {
        if self.len > N {
            self.spilled.reserve_exact(more);
        }
    }

    fn shrink_to(&mut self, room: usize) {
        self.spilled.shrink_to(room);
    }

    /// The length and the keys in place (they span two or three cache lines).
    fn prefetch(&self) {
        hint::prefetch(&self.len);
        if let Some(middle) = self.here.get(N / 2) {
            hint::prefetch(middle);
        }
        if let Some(last) = self.here.last() {
            hint::prefetch(last);
        }
    }
}

#[derive(Debug)]
pub struct Table<K, V, S = Vec<K>> {
    keys: S,
    vals: Vec<V>,
    marker: std::marker::PhantomData<K>,
}

impl<K, V, S: Keys<K>> Default for Table<K, V, S> {
    fn default() -> Self {
        Table {
            keys: S::default(),
            vals: Vec::new(),
            marker: std::marker::PhantomData,
        }
    }
}

impl<K: Ord, V, S: Keys<K>> Table<K, V, S> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.vals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vals.is_empty()
    }

    fn find(&self, key: &K) -> Result<usize, usize> {
        self.keys.as_slice().binary_search(key)
    }

    /// Cache hints for a lookup: the keys, and where the values are (see [`crate::hint`]).
    pub fn prefetch(&self) {
        self.keys.prefetch();
        hint::prefetch(&self.vals);
    }

    /// Cache hint for `key`'s value, once the keys are in cache.
    pub fn prefetch_value(&self, key: &K) {
        if let Some(v) = self.get(key) {
            hint::prefetch(v);
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.find(key).ok().and_then(|i| self.vals.get(i))
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.find(key).ok().and_then(|i| self.vals.get_mut(i))
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts `val` under `key`; the value it replaces, if any.
    pub fn insert(&mut self, key: K, val: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => self.vals.get_mut(i).map(|v| std::mem::replace(v, val)),
            Err(i) => {
                if self.vals.len() == self.vals.capacity() {
                    let more = (self.vals.len() / 2).max(2);
                    self.keys.reserve_exact(more);
                    self.vals.reserve_exact(more);
                }
                self.keys.insert(i, key);
                self.vals.insert(i, val);
                None
            }
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.find(key).ok()?;
        self.keys.remove(i);
        let val = self.vals.remove(i);
        self.shrink();
        Some(val)
    }

    /// Gives back the room of a table that lost more than half its entries.
    fn shrink(&mut self) {
        let len = self.vals.len();
        if self.vals.capacity() > 2 * len + 2 {
            let room = len + len / 2;
            self.keys.shrink_to(room);
            self.vals.shrink_to(room);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.keys.as_slice().iter().zip(self.vals.iter())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> + '_ {
        self.keys.as_slice().iter().zip(self.vals.iter_mut())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.vals.iter()
    }

    /// Keeps the entries `keep` accepts, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        for i in (0..self.vals.len()).rev() {
            let gone = match (self.keys.as_slice().get(i), self.vals.get(i)) {
                (Some(k), Some(v)) => !keep(k, v),
                _ => false,
            };
            if gone {
                self.keys.remove(i);
                self.vals.remove(i);
            }
        }
        self.shrink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u32),
        Remove(u8),
        Bump(u8),
        /// Keeps the entries whose value is not a multiple of this.
        Retain(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k % 40, v)),
            3 => any::<u8>().prop_map(|k| Op::Remove(k % 40)),
            2 => any::<u8>().prop_map(|k| Op::Bump(k % 40)),
            1 => (2u8..9).prop_map(Op::Retain),
        ]
    }

    /// Applies `ops` to a table and to a `BTreeMap`; every answer, the length and the
    /// iteration order must agree, and the keys stay strictly sorted.
    fn check_against_btreemap<S: Keys<u8>>(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut table: Table<u8, u32, S> = Table::new();
        let mut model = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => prop_assert_eq!(table.insert(k, v), model.insert(k, v)),
                Op::Remove(k) => prop_assert_eq!(table.remove(&k), model.remove(&k)),
                Op::Bump(k) => {
                    if let (Some(a), Some(b)) = (table.get_mut(&k), model.get_mut(&k)) {
                        *a += 1;
                        *b += 1;
                    }
                    prop_assert_eq!(table.get(&k), model.get(&k));
                }
                Op::Retain(m) => {
                    table.retain(|_, v| v % u32::from(m) != 0);
                    model.retain(|_, v| *v % u32::from(m) != 0);
                }
            }
            prop_assert_eq!(table.len(), model.len());
            prop_assert_eq!(table.keys.as_slice().len(), model.len());
            let pairs: Vec<_> = table.iter().map(|(k, v)| (*k, *v)).collect();
            let expected: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(pairs, expected);
            let keys = table.keys.as_slice();
            prop_assert!(keys.windows(2).all(|w| w.first() < w.last()));
        }
        Ok(())
    }

    proptest! {
        /// Every operation gives what a `BTreeMap` gives, and iteration is in its order.
        #[test]
        fn behaves_as_a_btreemap(ops in proptest::collection::vec(op(), 0..300)) {
            check_against_btreemap::<Vec<u8>>(ops)?;
        }

        /// The same with keys kept in place up to 4 and spilled beyond: the table crosses
        /// that line both ways many times in a run (keys range over 40 values).
        #[test]
        fn inline_keys_behave_as_a_btreemap(ops in proptest::collection::vec(op(), 0..300)) {
            check_against_btreemap::<Inline<u8, 4>>(ops)?;
        }
    }

    #[test]
    fn room_stays_close_to_the_entries() {
        let mut table: Table<u64, [u8; 80]> = Table::new();
        for k in 0..10u64 {
            table.insert(k, [0u8; 80]);
        }
        assert!(table.keys.capacity() <= 13, "{}", table.keys.capacity());
        for k in 0..9u64 {
            table.remove(&k);
        }
        assert_eq!(table.len(), 1);
        assert!(table.keys.capacity() <= 4, "{}", table.keys.capacity());
        assert_eq!(table.keys.capacity(), table.vals.capacity());
    }

    #[test]
    fn inline_keys_spill_and_come_back() {
        let mut table: Table<u64, u64, Inline<u64, 5>> = Table::new();
        for k in 0..5 {
            table.insert(k, k);
        }
        // The values grew past 5 (to 6) on the fifth insert; the keys took no room.
        assert!(table.vals.capacity() > 5);
        assert_eq!(table.keys.spilled.capacity(), 0, "five keys fit in place");
        table.insert(5, 5);
        assert_eq!(table.keys.as_slice(), &[0, 1, 2, 3, 4, 5]);
        assert!(table.keys.spilled.capacity() >= 6);
        table.remove(&2);
        assert_eq!(table.keys.as_slice(), &[0, 1, 3, 4, 5]);
        assert_eq!(table.keys.spilled.capacity(), 0, "back in place");
        assert_eq!(table.get(&3), Some(&3));
    }
}
