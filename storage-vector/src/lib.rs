#![doc = include_str!("../README.md")]

mod collection;
mod error;
mod filter;
mod graph;
mod markup;
mod schema;
mod store;

pub use store::{directory_size, SearchTuning, VectorStore, VectorStoreOptions};
