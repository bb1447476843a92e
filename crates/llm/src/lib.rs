#![doc = include_str!("../README.md")]

pub mod anthropic;
pub mod chat;
pub mod investigate;
pub mod openai;
pub mod provider;
pub mod quirks;
pub mod redact;

pub use chat::{ChatRequest, ChatResponse, Message, StopReason, ToolCall, ToolSpec, Usage};
pub use investigate::{
    DailyBudget, Investigation, Investigator, Limits, Step, Task, Toolbox, check_conclusion,
    quote_data, truncate,
};
pub use provider::{ApiKind, LlmError, LlmProvider, ProviderConfig};
pub use redact::{redact, redact_json};
