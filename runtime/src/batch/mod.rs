//! Dynamic batching: a queue per model version, owned by the thread that runs the model.

mod executor;
mod policy;
mod run;

pub use executor::{BatchSettings, Executor, Job, JobResult, Loader};
pub use policy::{Batchable, dispatch_wait, take_batch};
