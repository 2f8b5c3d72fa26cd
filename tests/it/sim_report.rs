//! `gossipd sim` reports (being written).
