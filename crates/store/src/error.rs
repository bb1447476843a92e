//! The one error type every store operation returns.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened at the given location.
    #[error("cannot open store at {location:?}: {source}")]
    Open {
        location: String,
        #[source]
        source: sqlx::Error,
    },
    /// The database rejected or failed a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The embedded schema migrations could not be applied.
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value handed to the store cannot be represented in the schema.
    #[error("cannot store {what}: {reason}")]
    Invalid { what: String, reason: String },
    /// A stored row does not decode into the data model (written by another version, or edited by hand).
    #[error("cannot read stored {what}: {reason}")]
    Corrupt { what: String, reason: String },
}

impl StoreError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl ToString) -> Self {
        Self::Invalid {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, reason: impl ToString) -> Self {
        Self::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
