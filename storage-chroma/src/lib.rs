#![doc = include_str!("../README.md")]

mod client;
mod naming;
mod options;
mod record;
mod store;

pub use options::{
    AuthHeader, ChromaOptions, HnswSettings, RetrySettings, AUTH_HEADER_ENV, DEFAULT_DATABASE,
    DEFAULT_TENANT, TOKEN_ENV, URL_ENV,
};
pub use store::ChromaContentStore;
