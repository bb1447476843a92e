#![doc = include_str!("../README.md")]

pub mod baseline;
mod error;
pub mod export_rcaeval;
pub mod llm;
pub mod loghub;
pub mod nab;
pub mod nab_score;
pub mod offline;
pub mod rca_data;
pub mod rca_sim;
pub mod series_csv;
pub mod text;

pub use error::EvalError;
