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

#[derive(Debug)]
pub struct Table<K, V> {
    keys: Vec<K>,
    vals: Vec<V>,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            keys: Vec::new(),
            vals: Vec::new(),
        }
    }
}

impl<K: Ord, V> Table<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn find(&self, key: &K) -> Result<usize, usize> {
        self.keys.binary_search(key)
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
                if self.keys.len() == self.keys.capacity() {
                    let more = (self.keys.len() / 2).max(2);
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
        let len = self.keys.len();
        if self.keys.capacity() > 2 * len + 2 {
            let room = len + len / 2;
            self.keys.shrink_to(room);
            self.vals.shrink_to(room);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.keys.iter().zip(self.vals.iter())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> + '_ {
        self.keys.iter().zip(self.vals.iter_mut())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.vals.iter()
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
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k % 40, v)),
            3 => any::<u8>().prop_map(|k| Op::Remove(k % 40)),
            2 => any::<u8>().prop_map(|k| Op::Bump(k % 40)),
        ]
    }

    proptest! {
        /// Every operation gives what a `BTreeMap` gives, and iteration is in its order.
        #[test]
        fn behaves_as_a_btreemap(ops in proptest::collection::vec(op(), 0..300)) {
            let mut table = Table::new();
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
                }
                prop_assert_eq!(table.len(), model.len());
                let pairs: Vec<_> = table.iter().map(|(k, v)| (*k, *v)).collect();
                let expected: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(pairs, expected);
                prop_assert!(table.keys.windows(2).all(|w| w.first() < w.last()));
            }
        }
    }

    #[test]
    fn room_stays_close_to_the_entries() {
        let mut table = Table::new();
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
}
