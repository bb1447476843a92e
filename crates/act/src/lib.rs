#![doc = include_str!("../README.md")]

pub mod audit;
pub mod command;
pub mod execute;
pub mod govern;
pub mod kubernetes;
pub mod notify;
pub mod plan;
pub mod provider;
pub mod runbook;
pub mod template;

pub use audit::{AuditEntry, AuditLog, AuditProblem};
pub use command::{ArgKind, CommandError, CommandSpec};
pub use govern::{Action, Governor, Policy, State};
pub use plan::{PlannedStep, Proposal, Target, propose};
pub use provider::{StepError, StepOutcome};
pub use runbook::{Mode, Problem, Risk, Runbook, Step, Trigger};
