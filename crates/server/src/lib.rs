#![doc = include_str!("../README.md")]

pub mod alerts_out;
pub mod assistant;
pub mod auth;
pub mod config;
mod error;
pub mod mcp;
pub mod remediation;
pub mod remote;
mod serve;
pub mod slack;
pub mod tls;
pub mod yaml_files;

pub use config::Config;
pub use error::ServerError;
pub use serve::serve;

pub(crate) use nightshift_sources::now_ms;
