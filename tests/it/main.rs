//! One integration-test binary made of modules, so linking stays fast.

mod sim_network;
