//! Running actions: pack content, process supervision, output capture, the log writer and the
//! worker that drives executions from the work queue to a terminal status.

pub mod capture;
pub mod chain;
pub mod cluster;
pub mod content;
pub mod keeper;
pub mod local;
pub mod process;
pub mod python;
pub mod remote;
mod retry;
pub mod run_as;
pub mod worker;
pub mod writer;

pub use content::Content;
pub use worker::{RunnerSettings, Worker};
