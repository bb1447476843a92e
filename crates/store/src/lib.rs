#![doc = include_str!("../README.md")]

mod codec;
mod error;
mod filter;
mod sqlite;
mod store;

pub use error::StoreError;
pub use filter::{AlertFilter, AnomalyFilter, IncidentFilter};
pub use sqlite::SqliteStore;
pub use store::{Store, StoredAction, record_findings};
