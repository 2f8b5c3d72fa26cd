//! One integration-test binary made of modules, so linking stays fast.

mod auth;
mod churn;
mod daemon;
mod hostile;
mod hosts;
mod limits;
mod sim_network;
mod sim_report;
mod swarm;
