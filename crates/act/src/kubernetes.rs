//! The Kubernetes provider (placeholder: being written).
