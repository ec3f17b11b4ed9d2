#![doc = include_str!("../README.md")]

mod compatibility;
mod encoder;
mod http;
mod kernels;
mod minilm;
mod model_dir;

pub use compatibility::check_collection;
pub use encoder::Precision;
pub use http::{HttpEmbedder, HttpEmbedderConfig, API_KEY_ENV, DIMENSION_ENV, MODEL_ENV, URL_ENV};
pub use minilm::{EmbedTimings, MiniLmEmbedder, MiniLmOptions, PRECISION_ENV};
pub use model_dir::{ModelDir, Pooling, DEFAULT_MODEL, MODEL_DIR_ENV};
