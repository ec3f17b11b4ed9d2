#![doc = include_str!("../README.md")]

mod collection;
mod error;
mod filter;
mod graph;
mod lock;
mod markup;
mod read_only;
mod schema;
mod store;

pub use lock::WriterInfo;
pub use store::{directory_size, SearchTuning, VectorStore, VectorStoreOptions};
