#![doc = include_str!("../README.md")]

mod codec;
mod error;
mod filter;
mod page;
mod sqlite;
mod store;

pub use error::StoreError;
pub use filter::{AlertFilter, AnomalyFilter, ChangeFilter, IncidentFilter};
pub use page::{Cursor, CursorError, Page};
pub use sqlite::SqliteStore;
pub use store::{Store, StoredAction, record_findings};
