#![doc = include_str!("../README.md")]

pub mod log_patterns;
pub mod template_miner;

pub use log_patterns::LogTemplateTracker;
pub use template_miner::{Match, MinerConfig, Template, TemplateMiner, WILDCARD};

/// What can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogsError {
    /// A miner setting out of its range, naming the field.
    #[error("{0}")]
    Config(String),
}
