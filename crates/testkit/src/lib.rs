#![doc = include_str!("../README.md")]

pub mod data;
pub mod kubernetes;
pub mod notify;
pub mod peers;
pub mod process;
pub mod stand_in;
pub mod tls;

/// What a helper could not do, when the caller decides whether that fails the test.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("{what} did not answer on 127.0.0.1:{port} within {seconds} s")]
    NotReady {
        what: &'static str,
        port: u16,
        seconds: u64,
    },
}
