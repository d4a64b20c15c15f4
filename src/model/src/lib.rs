//! The facts about Olist data that golden360 and its sample generator
//! share, in one place: the nine files and their columns, the order
//! statuses and payment types (and which orders count), and the calendar
//! arithmetic both use for dates. Plain Rust, no pgrx.

pub mod calendar;
pub mod codes;
mod files;

pub use files::{SourceFile, SOURCE_FILES};
