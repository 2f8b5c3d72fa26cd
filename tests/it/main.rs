//! One integration-test binary made of modules, so linking stays fast.

mod daemon;
mod hostile;
mod hosts;
mod sim_network;
mod sim_report;
mod swarm;
