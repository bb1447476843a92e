#![doc = include_str!("../README.md")]

mod pipeline;
mod replay;

pub use pipeline::{Evaluation, Pipeline, PipelineConfig, PipelineError, PipelineStats};
pub use replay::{Replay, replay};
