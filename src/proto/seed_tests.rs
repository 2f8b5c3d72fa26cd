//! Unit tests of the seed core (being written).
