#![doc = include_str!("../README.md")]

mod apply;
mod crypto;
mod error;
mod migration;
mod outbox;
mod read;
mod reindex;
mod sql;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod txn;
mod validate;

pub use chatvault_core::redact_url;
pub use crypto::TokenKey;
pub use store::{ConnectOptions, SqlMetadataStore};

/// Every table of the schema, in creation order (the outbox last). For tools and schema tests.
pub const TABLES: &[&str] = migration::TABLES;
