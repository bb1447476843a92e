//! Simulated microservice cluster with fault injection, driven by scenario files.
