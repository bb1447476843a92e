#![doc = include_str!("../README.md")]

pub mod alertmanager;
pub mod changes;
pub mod kubernetes;
pub mod logline;
pub mod loki;
pub mod otlp;
pub mod promql;
pub mod remote_write;
pub mod slack;

pub use alertmanager::{AlertError, decode_postable, decode_webhook};
pub use promql::{QueryError, decode_query_response};
pub use remote_write::{RemoteWriteError, WriteBatch, decode_write_request};
