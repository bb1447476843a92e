//! Why a harness could not score its data.

use std::fmt::Display;

/// Errors of the evaluation harnesses: each names the file (and line, where there is one) at
/// fault and what is wrong with it. The cause, where there is one, is the error's source.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A data set or results file that is not as its format says, or cannot be read: the
    /// message names the file, the line and the field.
    #[error("{0}")]
    Data(String),
    /// The same, with the underlying error as its cause.
    #[error("{message}")]
    Caused {
        message: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Server(#[from] nightshift_server::ServerError),
}

/// `return Err(EvalError::Data(format!(...)))`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::EvalError::Data(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// Context on any error: the message first, the error as its cause.
pub(crate) trait Context<T> {
    fn context(self, message: impl Display) -> Result<T, EvalError>;
    fn with_context<M: Display>(self, message: impl FnOnce() -> M) -> Result<T, EvalError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for Result<T, E> {
    fn context(self, message: impl Display) -> Result<T, EvalError> {
        self.map_err(|e| EvalError::Caused {
            message: message.to_string(),
            source: Box::new(e),
        })
    }
    fn with_context<M: Display>(self, message: impl FnOnce() -> M) -> Result<T, EvalError> {
        self.map_err(|e| EvalError::Caused {
            message: message().to_string(),
            source: Box::new(e),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, message: impl Display) -> Result<T, EvalError> {
        self.ok_or_else(|| EvalError::Data(message.to_string()))
    }
    fn with_context<M: Display>(self, message: impl FnOnce() -> M) -> Result<T, EvalError> {
        self.ok_or_else(|| EvalError::Data(message().to_string()))
    }
}

/// `EvalError::Data(format!(...))`.
macro_rules! data_error {
    ($($arg:tt)*) => {
        $crate::EvalError::Data(format!($($arg)*))
    };
}
pub(crate) use data_error;
