#![doc = include_str!("../README.md")]

mod citations;
mod grounded;
mod http;
mod sse;
#[cfg(feature = "testing")]
pub mod testing;

pub use citations::{check_citations, CitationCheck};
pub use grounded::{
    answer_grounded, generate, Checks, GroundedAnswer, Outcome, RelevanceGate, Source, NOT_FOUND,
};
pub use http::{HttpAnswerer, HttpAnswererConfig, API_KEY_ENVS, MODEL_ENV, URL_ENV};
