//! A seed's peer list: the live peers in registration order (a removal moves the last
//! one into its place), 8 bytes an entry.
//!
//! Every registration is answered with a uniform sample of the list, so a seed with a
//! million peers reads 64 random entries of it per registration: as `SocketAddr`s (32
//! bytes) the list is 32 MB and each read a cache and TLB miss; here an IPv4 address
//! (all of them, in practice) is one integer and the list a quarter of that. An IPv6
//! address is kept in a slab and its entry names its slot.

use slab::Slab;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Set in an entry that names an IPv6 slot; an IPv4 entry uses the low 48 bits.
const V6: u64 = 1 << 63;

#[derive(Debug, Default)]
pub(super) struct PeerList {
    entries: Vec<u64>,
    v6: Slab<SocketAddr>,
}

impl PeerList {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn push(&mut self, addr: SocketAddr) {
        let entry = match addr {
            SocketAddr::V4(a) => v4_entry(&a),
            SocketAddr::V6(_) => V6 | self.v6.insert(addr) as u64,
        };
        self.entries.push(entry);
    }

    pub(super) fn get(&self, i: usize) -> Option<SocketAddr> {
        self.entries.get(i).and_then(|&e| self.addr(e))
    }

    /// Removes entry `i`, moving the last entry into its place.
    pub(super) fn swap_remove(&mut self, i: usize) {
        if i >= self.entries.len() {
            return;
        }
        let e = self.entries.swap_remove(i);
        if e & V6 != 0 {
            self.v6.try_remove((e & !V6) as usize);
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.entries.iter().filter_map(|&e| self.addr(e))
    }

    fn addr(&self, e: u64) -> Option<SocketAddr> {
        if e & V6 != 0 {
            return self.v6.get((e & !V6) as usize).copied();
        }
        Some(SocketAddr::from((
            Ipv4Addr::from_bits((e >> 16) as u32),
            e as u16,
        )))
    }
}

fn v4_entry(a: &SocketAddrV4) -> u64 {
    (u64::from(a.ip().to_bits()) << 16) | u64::from(a.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(n: u16) -> SocketAddr {
        match n % 3 {
            0 => SocketAddr::from(([10, 0, (n >> 8) as u8, n as u8], n)),
            1 => SocketAddr::from(([0xfe80, 0, 0, 0, 0, 0, 0, n], n)),
            _ => SocketAddr::from(([255, 255, 255, 255], 65535 - n)),
        }
    }

    proptest! {
        /// Pushes and swap-removes give what a `Vec<SocketAddr>` gives, IPv6 too.
        #[test]
        fn behaves_as_a_vec_of_addresses(ops in prop::collection::vec((any::<bool>(), any::<u16>()), 0..200)) {
            let (mut list, mut model) = (PeerList::default(), Vec::new());
            for (push, n) in ops {
                if push {
                    list.push(addr(n));
                    model.push(addr(n));
                } else if !model.is_empty() {
                    let i = usize::from(n) % model.len();
                    list.swap_remove(i);
                    model.swap_remove(i);
                }
                prop_assert_eq!(list.iter().collect::<Vec<_>>(), model.clone());
                prop_assert_eq!(list.len(), model.len());
                prop_assert_eq!(list.v6.len(), model.iter().filter(|a| a.is_ipv6()).count());
                prop_assert!((0..=model.len()).all(|i| list.get(i) == model.get(i).copied()));
            }
        }
    }

    #[test]
    fn removing_past_the_end_does_nothing() {
        let mut list = PeerList::default();
        list.push(addr(1));
        list.swap_remove(5);
        assert_eq!(list.iter().collect::<Vec<_>>(), vec![addr(1)]);
    }
}
