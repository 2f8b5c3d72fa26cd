//! The virtual network's wiring: each node's open connections and where frames sent on
//! them arrive, and the partitions that cut some nodes off from the rest for a while.
//!
//! Pure bookkeeping: no clock, no RNG, no cores. The simulator decides when frames go.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};

use crate::hint;
use crate::proto::{ConnId, Millis};

/// One end of a connection, as its node sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    /// This end's connection id, as the node's core named it.
    pub(crate) conn: ConnId,
    /// The other end (node index and its connection id), once the connection is accepted.
    pub(crate) peer: u32,
    pub(crate) peer_conn: ConnId,
    /// Frames on a connection arrive in order: when the last one sent this way arrives.
    pub(crate) last_arrival: Millis,
    /// False while a dial is on its way: the remote has not accepted yet.
    pub(crate) open: bool,
}

impl Route {
    /// A dial to `peer` that has not been accepted yet.
    pub(crate) fn dialing(conn: ConnId, peer: u32) -> Self {
        Route {
            conn,
            peer,
            peer_conn: ConnId(0),
            last_arrival: 0,
            open: false,
        }
    }
}

/// A node's connections up to this many are kept in a sorted `Vec`, more in a map.
const SMALL: usize = 32;

type Map = HashMap<ConnId, Route, BuildHasherDefault<DefaultHasher>>;

/// One node's connections. A peer has a few, searched in one or two cache lines; a seed
/// has one per registered peer (hundreds of thousands at scale), where a binary search
/// would cost a cache miss per step, so a seed's table becomes a hash map.
#[derive(Debug)]
enum Table {
    Small(Vec<Route>),
    Large(Map),
}

impl Default for Table {
    fn default() -> Self {
        Table::Small(Vec::new())
    }
}

impl Table {
    fn get_mut(&mut self, conn: ConnId) -> Option<&mut Route> {
        match self {
            Table::Small(v) => {
                let i = v.binary_search_by_key(&conn, |r| r.conn).ok()?;
                v.get_mut(i)
            }
            Table::Large(m) => m.get_mut(&conn),
        }
    }

    fn insert(&mut self, route: Route) {
        match self {
            Table::Small(v) => match v.binary_search_by_key(&route.conn, |r| r.conn) {
                Ok(i) => {
                    if let Some(r) = v.get_mut(i) {
                        *r = route;
                    }
                }
                Err(i) if v.len() < SMALL => v.insert(i, route),
                Err(_) => {
                    let mut m: Map = v.drain(..).map(|r| (r.conn, r)).collect();
                    m.insert(route.conn, route);
                    *self = Table::Large(m);
                }
            },
            Table::Large(m) => {
                m.insert(route.conn, route);
            }
        }
    }

    fn remove(&mut self, conn: ConnId) -> Option<Route> {
        match self {
            Table::Small(v) => {
                let i = v.binary_search_by_key(&conn, |r| r.conn).ok()?;
                let route = v.remove(i);
                if v.is_empty() {
                    // A node that lost every connection gives the memory back.
                    *v = Vec::new();
                }
                Some(route)
            }
            Table::Large(m) => m.remove(&conn),
        }
    }

    /// Every connection, in id order (so what follows is the same from run to run).
    fn take_all(&mut self) -> Vec<Route> {
        match std::mem::take(self) {
            Table::Small(v) => v,
            Table::Large(m) => {
                let mut v: Vec<Route> = m.into_values().collect();
                v.sort_by_key(|r| r.conn);
                v
            }
        }
    }

    fn retain(&mut self, keep: impl Fn(&Route) -> bool) {
        match self {
            Table::Small(v) => v.retain(|r| keep(r)),
            Table::Large(m) => m.retain(|_, r| keep(r)),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Table::Small(v) => v.capacity() * std::mem::size_of::<Route>(),
            Table::Large(m) => m.capacity() * (std::mem::size_of::<(ConnId, Route)>() + 1),
        }
    }
}

/// Every node's connections.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    tables: Vec<Table>,
}

impl Routes {
    pub(crate) fn reserve(&mut self, more: usize) {
        self.tables.reserve_exact(more);
    }

    pub(crate) fn add_node(&mut self) {
        self.tables.push(Table::default());
    }

    /// Every node's table, to lend to the simulator's shards.
    pub(crate) fn slice(&mut self) -> RouteSlice<'_> {
        RouteSlice {
            base: 0,
            tables: &mut self.tables,
        }
    }

    /// Forgets every other node's open connection to `node`: a restarted process knows
    /// none of them, so frames sent on them from now on go nowhere. A scan of every table,
    /// for the rare restart only. Dials still on their way to `node` are kept.
    pub(crate) fn forget_towards(&mut self, node: u32) {
        for t in &mut self.tables {
            t.retain(|r| !(r.open && r.peer == node));
        }
    }

    /// Heap bytes held by the tables, for memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        let tables = self.tables.capacity() * std::mem::size_of::<Table>();
        tables + self.tables.iter().map(Table::heap_bytes).sum::<usize>()
    }
}

/// The tables of a run of consecutive nodes (`base`, `base + 1`, ...): what one shard of
/// the simulator may change. Nodes outside it are not found.
#[derive(Debug)]
pub(crate) struct RouteSlice<'a> {
    base: u32,
    tables: &'a mut [Table],
}

impl<'a> RouteSlice<'a> {
    /// Splits before node `at`: the tables below it, and the rest. The slice itself back
    /// when `at` is not inside it (or is its first node).
    pub(crate) fn split_at(self, at: u32) -> Result<(RouteSlice<'a>, RouteSlice<'a>), Self> {
        let Some(mid) = at.checked_sub(self.base).filter(|&m| m > 0) else {
            return Err(self);
        };
        if mid as usize > self.tables.len() {
            return Err(self);
        }
        let (low, high) = self.tables.split_at_mut(mid as usize);
        let base = self.base;
        Ok((
            RouteSlice { base, tables: low },
            RouteSlice {
                base: at,
                tables: high,
            },
        ))
    }

    fn table_ref(&self, node: u32) -> Option<&Table> {
        let i = node.checked_sub(self.base)?;
        self.tables.get(i as usize)
    }

    fn table(&mut self, node: u32) -> Option<&mut Table> {
        let i = node.checked_sub(self.base)?;
        self.tables.get_mut(i as usize)
    }

    pub(crate) fn get_mut(&mut self, node: u32, conn: ConnId) -> Option<&mut Route> {
        self.table(node)?.get_mut(conn)
    }

    /// Cache hint for `node`'s table (see [`crate::hint`]).
    pub(crate) fn prefetch_table(&self, node: u32) {
        if let Some(t) = self.table_ref(node) {
            hint::prefetch(t);
        }
    }

    /// Cache hints for `node`'s connections, once its table is in cache: the first
    /// entries and the middle, where a search of a few starts.
    pub(crate) fn prefetch_routes(&self, node: u32) {
        if let Some(Table::Small(v)) = self.table_ref(node) {
            if let Some(first) = v.first() {
                hint::prefetch(first);
            }
            if let Some(middle) = v.get(v.len() / 2) {
                hint::prefetch(middle);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&mut self, node: u32, conn: ConnId) -> bool {
        self.get_mut(node, conn).is_some()
    }

    /// Adds or replaces `node`'s end `route.conn`.
    pub(crate) fn insert(&mut self, node: u32, route: Route) {
        if let Some(t) = self.table(node) {
            t.insert(route);
        }
    }

    pub(crate) fn remove(&mut self, node: u32, conn: ConnId) -> Option<Route> {
        self.table(node)?.remove(conn)
    }

    /// Removes and returns every connection of `node`, in id order.
    pub(crate) fn take_all(&mut self, node: u32) -> Vec<Route> {
        self.table(node).map(Table::take_all).unwrap_or_default()
    }
}

/// The most partitions in force at once.
pub(crate) const MAX_CUTS: usize = 64;

/// Partitions in force: each cuts a set of nodes off from every node outside it until it
/// heals. Nodes on the same side of every active cut can talk.
#[derive(Debug)]
pub(crate) struct Cuts {
    /// Per node, bit k set when the node is inside cut k (empty until the first cut).
    inside: Vec<u64>,
    /// Bits of the cuts in force, and when each heals.
    active: u64,
    heal_at: [Millis; MAX_CUTS],
    /// The earliest heal among the cuts in force (u64::MAX when none).
    next_heal: Millis,
}

impl Cuts {
    pub(crate) fn new() -> Self {
        Cuts {
            inside: Vec::new(),
            active: 0,
            heal_at: [0; MAX_CUTS],
            next_heal: Millis::MAX,
        }
    }

    /// True when some cut in force has `a` and `b` on different sides.
    pub(crate) fn separates(&self, a: u32, b: u32) -> bool {
        self.active != 0 && self.mask(a, b) != 0
    }

    fn mask(&self, a: u32, b: u32) -> u64 {
        let side = |n: u32| self.inside.get(n as usize).copied().unwrap_or(0);
        (side(a) ^ side(b)) & self.active
    }

    /// When the last cut now separating `a` and `b` heals.
    pub(crate) fn heals_between(&self, a: u32, b: u32) -> Millis {
        let mask = self.mask(a, b);
        (0..MAX_CUTS)
            .filter(|k| mask & (1 << k) != 0)
            .filter_map(|k| self.heal_at.get(k).copied())
            .max()
            .unwrap_or(0)
    }

    /// Cuts `members` off from the other nodes of a network of `nodes` until `heal_at`.
    /// False when `MAX_CUTS` are already in force.
    pub(crate) fn start(&mut self, members: &[usize], nodes: usize, heal_at: Millis) -> bool {
        let Some(k) = (0..MAX_CUTS).find(|k| self.active & (1 << k) == 0) else {
            return false;
        };
        let bit = 1u64 << k;
        self.inside.resize(nodes.max(self.inside.len()), 0);
        for side in self.inside.iter_mut() {
            *side &= !bit;
        }
        for &m in members {
            if let Some(side) = self.inside.get_mut(m) {
                *side |= bit;
            }
        }
        self.active |= bit;
        if let Some(h) = self.heal_at.get_mut(k) {
            *h = heal_at;
        }
        self.next_heal = self.next_heal.min(heal_at);
        true
    }

    /// Heals every cut due at or before `now`.
    pub(crate) fn heal_due(&mut self, now: Millis) {
        if now < self.next_heal {
            return;
        }
        let mut next = Millis::MAX;
        for k in 0..MAX_CUTS {
            let Some(&at) = self.heal_at.get(k) else {
                continue;
            };
            if self.active & (1 << k) == 0 {
                continue;
            }
            if at <= now {
                self.active &= !(1 << k);
            } else {
                next = next.min(at);
            }
        }
        self.next_heal = next;
    }

    pub(crate) fn in_force(&self) -> usize {
        self.active.count_ones() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(conn: u64, peer: u32) -> Route {
        Route {
            conn: ConnId(conn),
            peer,
            peer_conn: ConnId(conn + 100),
            last_arrival: 0,
            open: true,
        }
    }

    #[test]
    fn routes_are_found_by_connection_whatever_the_insertion_order() {
        let mut routes = Routes::default();
        routes.add_node();
        let mut r = routes.slice();
        for c in [5, 2, 9, 7] {
            r.insert(0, open(c, c as u32));
        }
        assert_eq!(r.get_mut(0, ConnId(7)).map(|x| x.peer), Some(7));
        assert!(r.remove(0, ConnId(2)).is_some());
        assert!(!r.contains(0, ConnId(2)));
        assert!(r.get_mut(1, ConnId(5)).is_none(), "unknown node");
        let rest: Vec<u64> = r.take_all(0).iter().map(|x| x.conn.0).collect();
        assert_eq!(rest, vec![5, 7, 9]);
    }

    #[test]
    fn a_table_past_its_small_size_keeps_working_as_a_map() {
        let mut routes = Routes::default();
        routes.add_node();
        let mut r = routes.slice();
        for c in (1..=3 * SMALL as u64).rev() {
            r.insert(0, open(c, 1));
        }
        assert!(r.contains(0, ConnId(1)) && r.contains(0, ConnId(3 * SMALL as u64)));
        assert!(r.remove(0, ConnId(2)).is_some() && !r.contains(0, ConnId(2)));
        let all: Vec<u64> = r.take_all(0).iter().map(|x| x.conn.0).collect();
        assert_eq!(all.len(), 3 * SMALL - 1);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "in id order");
    }

    #[test]
    fn forgetting_a_node_drops_the_open_routes_towards_it_and_keeps_the_rest() {
        let mut routes = Routes::default();
        for _ in 0..3 {
            routes.add_node();
        }
        let mut r = routes.slice();
        r.insert(0, open(1, 2));
        r.insert(0, open(2, 1));
        r.insert(0, Route::dialing(ConnId(3), 2));
        for c in 1..=2 * SMALL as u64 {
            r.insert(1, open(c, 2));
        }
        r.insert(1, open(99, 0));
        routes.forget_towards(2);
        let mut r = routes.slice();
        assert!(!r.contains(0, ConnId(1)) && r.contains(0, ConnId(2)));
        assert!(
            r.contains(0, ConnId(3)),
            "a dial on its way reaches the new process"
        );
        let left: Vec<u64> = r.take_all(1).iter().map(|x| x.conn.0).collect();
        assert_eq!(left, vec![99]);
    }

    #[test]
    fn a_split_slice_holds_each_node_on_one_side_only() {
        let mut routes = Routes::default();
        for _ in 0..4 {
            routes.add_node();
        }
        let whole = routes.slice();
        let Err(whole) = whole.split_at(0) else {
            panic!("nothing below node 0")
        };
        let Ok((mut low, high)) = whole.split_at(2) else {
            panic!("nodes 0-1 and 2-3")
        };
        let Err(mut high) = high.split_at(9) else {
            panic!("node 9 is beyond the slice")
        };
        low.insert(1, open(1, 3));
        high.insert(3, open(2, 1));
        low.insert(3, open(3, 0));
        high.insert(1, open(4, 0));
        assert!(low.contains(1, ConnId(1)) && !low.contains(3, ConnId(2)));
        assert!(high.contains(3, ConnId(2)) && !high.contains(1, ConnId(1)));
        let mut r = routes.slice();
        assert_eq!(
            r.take_all(1).len() + r.take_all(3).len(),
            2,
            "out-of-slice inserts dropped"
        );
    }

    #[test]
    fn a_cut_separates_its_members_from_the_rest_until_it_heals() {
        let mut c = Cuts::new();
        assert!(!c.separates(0, 1));
        assert!(c.start(&[1, 2], 4, 500));
        assert!(c.separates(0, 1) && c.separates(2, 3));
        assert!(!c.separates(1, 2) && !c.separates(0, 3));
        assert_eq!(c.heals_between(0, 1), 500);
        c.heal_due(499);
        assert!(c.separates(0, 1));
        c.heal_due(500);
        assert!(!c.separates(0, 1));
        assert_eq!(c.in_force(), 0);
    }

    #[test]
    fn overlapping_cuts_separate_by_either() {
        let mut c = Cuts::new();
        assert!(c.start(&[1], 3, 100));
        assert!(c.start(&[2], 3, 200));
        assert!(c.separates(1, 2) && c.separates(0, 2));
        assert_eq!(c.heals_between(1, 2), 200);
        c.heal_due(150);
        assert!(!c.separates(0, 1) && c.separates(1, 2));
    }
}
