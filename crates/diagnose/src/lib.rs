#![doc = include_str!("../README.md")]

pub mod ask;
pub mod explain;
pub mod rank;
pub mod recorded;

pub use ask::{Answer, AskContext, Cited, answer, known_entities};
pub use explain::{Conclusion, Source, evidence_ids, explain, recommended_action};
pub use rank::{RankConfig, Ranking, rank};

/// What can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DiagnoseError {
    /// A ranking setting out of its range, naming the field.
    #[error("{0}")]
    Config(String),
}
