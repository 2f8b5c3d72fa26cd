//! Unit tests of the peer core (being written).
