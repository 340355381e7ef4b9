//! [`Worker`]: a `jetway-worker` process (a [`Jetway`] in the worker role).
//! Its address is its health port; `/readyz` answers 200 once it is
//! connected to NATS and pulling from the workers' consumer.

use crate::jetway::{Jetway, JetwayBuilder, Role};

/// The worker role: `jetway-worker`, instance ids `wk-N`.
#[derive(Debug, Clone)]
pub struct WorkerRole;

impl Role for WorkerRole {
    const BIN: &'static str = "jetway-worker";
    const ID_PREFIX: &'static str = "wk";
    const NATS_ROLE: crate::nats_users::NatsRole = crate::nats_users::NatsRole::Worker;
}

/// A running `jetway-worker` process.
pub type Worker = Jetway<WorkerRole>;
/// Options for starting a [`Worker`].
pub type WorkerBuilder = JetwayBuilder<WorkerRole>;
