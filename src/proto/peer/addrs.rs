//! The peer's candidates: a compact set of addresses, in `SocketAddr` order.
//!
//! A million simulated peers each keep up to 64 candidates. As a `BTreeSet<SocketAddr>`
//! (32-byte keys in 11-slot nodes) that is about 2.4 KB a peer; here IPv4 addresses (all
//! of them in practice) are 8-byte integers in one sorted `Vec`, 0.5 KB. Iteration gives
//! `SocketAddr`'s own order (IPv4 before IPv6, then address, then port), so every choice
//! made from the set is the one a `BTreeSet` would give.

use std::cmp::Ordering;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// An IPv4 address and port as one integer, ordered as `SocketAddrV4` orders them.
pub(super) fn key(a: &SocketAddrV4) -> u64 {
    (u64::from(a.ip().to_bits()) << 16) | u64::from(a.port())
}

pub(super) fn from_key(k: u64) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from_bits((k >> 16) as u32), k as u16))
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct AddrSet {
    v4: Vec<u64>,
    v6: Vec<SocketAddr>,
}

impl AddrSet {
    /// From addresses already in `SocketAddr` order and distinct.
    pub(super) fn from_sorted(addrs: Vec<SocketAddr>) -> Self {
        let mut set = AddrSet::default();
        for a in addrs {
            match a {
                SocketAddr::V4(x) => set.v4.push(key(&x)),
                SocketAddr::V6(_) => set.v6.push(a),
            }
        }
        set.v4.shrink_to_fit();
        set.v6.shrink_to_fit();
        set
    }

    /// From IPv4 keys already in order and distinct. They are copied to a block of
    /// their size: `shrink_to_fit` may leave them where they are (mimalloc keeps a block
    /// shrunk by less than half), and a million peers would each keep twice the room.
    pub(super) fn from_v4_keys(v4: Vec<u64>) -> Self {
        AddrSet {
            v4: v4.as_slice().to_vec(),
            v6: Vec::new(),
        }
    }

    /// The sorted union of this set and `peers` but `me`, as IPv4 keys; None when an
    /// IPv6 address is on either side. The keys sort as the addresses do, so the union
    /// is the one [`merge_sorted`] gives, without a `SocketAddr` (32 bytes) in sight.
    pub(super) fn union_v4(&self, peers: &[SocketAddr], me: &SocketAddr) -> Option<Vec<u64>> {
        if !self.v6.is_empty() {
            return None;
        }
        let mut incoming = Vec::with_capacity(peers.len());
        for p in peers.iter().filter(|p| *p != me) {
            match p {
                SocketAddr::V4(x) => incoming.push(key(x)),
                SocketAddr::V6(_) => return None,
            }
        }
        incoming.sort_unstable();
        incoming.dedup();
        Some(merge_keys(&self.v4, &incoming))
    }

    pub(super) fn contains_v4(&self, k: u64) -> bool {
        self.v4.binary_search(&k).is_ok()
    }

    pub(super) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub(super) fn contains(&self, a: &SocketAddr) -> bool {
        match a {
            SocketAddr::V4(x) => self.v4.binary_search(&key(x)).is_ok(),
            SocketAddr::V6(_) => self.v6.binary_search(a).is_ok(),
        }
    }

    /// Removes `a`; true when it was there.
    pub(super) fn remove(&mut self, a: &SocketAddr) -> bool {
        let (v4, v6) = (&mut self.v4, &mut self.v6);
        match a {
            SocketAddr::V4(x) => v4.binary_search(&key(x)).map(|i| v4.remove(i)).is_ok(),
            SocketAddr::V6(_) => v6.binary_search(a).map(|i| v6.remove(i)).is_ok(),
        }
    }

    /// The addresses, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let v4 = self.v4.iter().map(|&k| from_key(k));
        v4.chain(self.v6.iter().copied())
    }
}

impl FromIterator<SocketAddr> for AddrSet {
    fn from_iter<I: IntoIterator<Item = SocketAddr>>(addrs: I) -> Self {
        AddrSet::from_sorted(sorted_distinct(addrs.into_iter()))
    }
}

/// `SocketAddr`'s own order, with IPv4 pairs compared as one integer.
fn addr_order(a: &SocketAddr, b: &SocketAddr) -> Ordering {
    match (a, b) {
        (SocketAddr::V4(x), SocketAddr::V4(y)) => key(x).cmp(&key(y)),
        _ => a.cmp(b),
    }
}

/// The addresses in `SocketAddr` order, without repeats. IPv4 addresses (all of them,
/// in practice) are sorted as integers, several times faster than as `SocketAddr`s.
pub(super) fn sorted_distinct(addrs: impl Iterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut v4: Vec<u64> = Vec::new();
    let mut v6: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        match a {
            SocketAddr::V4(x) => v4.push(key(&x)),
            SocketAddr::V6(_) => v6.push(a),
        }
    }
    v4.sort_unstable();
    v4.dedup();
    v6.sort_unstable();
    v6.dedup();
    v4.into_iter().map(from_key).chain(v6).collect()
}

/// The sorted union, without repeats, of two sorted sequences of distinct addresses.
pub(super) fn merge_sorted(
    a: impl Iterator<Item = SocketAddr>,
    b: Vec<SocketAddr>,
) -> Vec<SocketAddr> {
    let mut out = Vec::with_capacity(b.len());
    let mut b = b.into_iter().peekable();
    for x in a {
        while let Some(y) = b.next_if(|y| addr_order(y, &x) == Ordering::Less) {
            out.push(y);
        }
        b.next_if(|y| *y == x);
        out.push(x);
    }
    out.extend(b);
    out
}

/// The sorted union, without repeats, of two sorted sequences of distinct keys.
fn merge_keys(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    while let (Some(&&x), Some(&&y)) = (a.peek(), b.peek()) {
        match x.cmp(&y) {
            Ordering::Less => out.extend(a.next()),
            Ordering::Greater => out.extend(b.next()),
            Ordering::Equal => {
                out.extend(a.next());
                b.next();
            }
        }
    }
    out.extend(a.chain(b));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_fast_address_order_is_the_standard_one() {
        let addrs: Vec<SocketAddr> = [
            "1.2.3.4:5",
            "1.2.3.4:4",
            "9.0.0.1:9000",
            "10.0.0.1:1",
            "255.0.0.0:0",
            "[::1]:1",
            "[::1]:0",
            "0.0.0.0:65535",
        ]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
        for a in &addrs {
            for b in &addrs {
                assert_eq!(addr_order(a, b), a.cmp(b), "{a} {b}");
            }
        }
        let (mut x, mut y) = (addrs[..4].to_vec(), addrs[3..].to_vec());
        x.sort();
        y.sort();
        let mut all = addrs.clone();
        all.sort();
        all.dedup();
        assert_eq!(merge_sorted(x.into_iter(), y), all);
        assert_eq!(sorted_distinct(addrs.iter().rev().copied()), all);
    }

    fn v4(rng: &mut SmallRng) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, rng.random_range(0..8)], rng.random_range(1..4)))
    }

    #[test]
    fn the_ipv4_union_is_the_address_union() {
        let mut rng = SmallRng::seed_from_u64(5);
        for round in 0..300 {
            let set: AddrSet = (0..rng.random_range(0..20)).map(|_| v4(&mut rng)).collect();
            let peers: Vec<SocketAddr> =
                (0..rng.random_range(0..20)).map(|_| v4(&mut rng)).collect();
            let me = v4(&mut rng);
            let others = peers.iter().copied().filter(|p| *p != me);
            let want = merge_sorted(set.iter(), sorted_distinct(others));
            let got = set.union_v4(&peers, &me).map(|keys| {
                let set = AddrSet::from_v4_keys(keys);
                set.iter().collect::<Vec<_>>()
            });
            assert_eq!(got, Some(want), "round {round}");
        }
        let v6: SocketAddr = "[::1]:5".parse().unwrap();
        let with_v6: AddrSet = [v6].into_iter().collect();
        let me = SocketAddr::from(([10, 0, 0, 1], 1));
        assert_eq!(with_v6.union_v4(&[me], &v6), None);
        assert_eq!(AddrSet::default().union_v4(&[me, v6], &me), None);
    }

    /// The IPv4 path of the candidates' merge shuffles keys where the general path
    /// shuffles addresses: both must draw the same permutation from the same RNG.
    #[test]
    fn a_shuffle_of_keys_permutes_as_one_of_their_addresses() {
        for seed in 0..20 {
            let keys: Vec<u64> = (0..128u64).map(|i| (i << 16) | 9000).collect();
            let mut addrs: Vec<SocketAddr> = keys.iter().map(|&k| from_key(k)).collect();
            let mut shuffled = keys.clone();
            shuffled.shuffle(&mut SmallRng::seed_from_u64(seed));
            addrs.shuffle(&mut SmallRng::seed_from_u64(seed));
            let back: Vec<SocketAddr> = shuffled.into_iter().map(from_key).collect();
            assert_eq!(back, addrs, "seed {seed}");
        }
    }

    #[test]
    fn the_set_iterates_in_order_and_finds_and_removes_what_it_holds() {
        let addrs: Vec<SocketAddr> = ["10.0.0.2:1", "[::1]:5", "10.0.0.1:9", "10.0.0.1:9"]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        let mut set: AddrSet = addrs.iter().copied().collect();
        let mut std: Vec<SocketAddr> = addrs.clone();
        std.sort();
        std.dedup();
        assert_eq!(set.iter().collect::<Vec<_>>(), std);
        assert_eq!(set.len(), 3);
        assert!(addrs.iter().all(|a| set.contains(a)));
        assert!(set.remove(&addrs[1]) && !set.contains(&addrs[1]) && !set.remove(&addrs[1]));
        assert!(set.remove(&addrs[0]) && set.len() == 1);
    }
}
