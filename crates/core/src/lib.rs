//! squall's domain model: what an execution is, how its status moves, what an output record
//! holds, what an action and its parameters look like. Pure data and rules — no I/O, no wire
//! format (StackStorm's JSON quirks live in `squall-server`).

pub mod action;
pub mod auth;
pub mod execution;
pub mod id;
pub mod lines;
pub mod mask;
pub mod output;
pub mod params;
pub mod sealed;
pub mod status;
pub mod time;

pub use action::{Action, Catalog, RunnerType};
pub use execution::{Execution, LogEntry, OutputStats};
pub use output::{OutputRecord, StreamKind};
pub use status::Status;
pub use time::Timestamp;
pub mod shell;
