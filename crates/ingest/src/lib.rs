#![doc = include_str!("../README.md")]

pub mod remote_write;

pub use remote_write::{RemoteWriteError, WriteBatch, decode_write_request};
