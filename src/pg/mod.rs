//! The PostgreSQL-facing layer: every raw `pg_sys` call of the extension's
//! data path lives here, behind safe wrappers whose guards close and
//! restore in `Drop`. The layers (bronze, silver, gold) use these only.
//!
//! - `types`: the SQL types golden360's tables declare, as type OIDs and typmods;
//! - `relation`: finding golden360's *own* tables (extension members, plain
//!   tables, exactly the declared columns) and checking privileges;
//! - `owner`: running a step as the extension's owner with a safe search_path;
//! - `scan`: sequential heap scans and btree index scans that read datums in place;
//! - `bulk`: COPY-style multi-inserts, tuple deletes and row building;
//! - `sort`: byte strings sorted by tuplesort within `maintenance_work_mem`, spilling beyond it;
//! - `context`: memory contexts for one row's datums, and a writer's batch context;
//! - `helper`: helper threads for work that touches no PostgreSQL state,
//!   spawned with signals blocked and waited for with cancel checks;
//! - `rust_heap`: the Rust heap listed among the backend's memory contexts;
//! - `worker`: a step's independent part run in a background worker, its
//!   input and output in dynamic shared memory;
//! - `snapshot`: seeing the refresh's own writes under the statement's
//!   snapshot, and the transaction's start time.

pub mod bulk;
pub mod context;
pub mod helper;
pub mod owner;
pub mod relation;
pub mod rust_heap;
pub mod scan;
pub mod snapshot;
pub mod sort;
pub mod types;
pub mod worker;
