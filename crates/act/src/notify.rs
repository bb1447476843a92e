//! The HTTP providers (placeholder: being written).
