//! `gossipd swarm` with workers, kills and freezes (being written).
