//! One integration-test binary made of modules, so linking stays fast.

mod daemon;
mod sim_network;
mod sim_report;
mod swarm;
