//! gossipd: a gossip network of seeds and peers.
//!
//! The protocol lives in pure modules (`codec`, `wheel`, `proto`) that never touch a
//! socket, read a clock or draw from a global RNG; `net` is the only mio shell and `sim`
//! drives the same cores on a virtual network.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod codec;
pub mod config;
pub mod hint;
pub mod logging;
pub mod net;
pub mod pages;
pub mod procstat;
pub mod proto;
pub mod report;
pub mod sim;
pub mod stress;
pub mod swarm;
pub mod wheel;
