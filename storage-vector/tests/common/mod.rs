//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use chatvault_core::{
    ChannelId, ChannelKind, ContentAttributes, ContentDocument, MessageContent, MessageKey, Ts,
    UserId, WorkspaceId,
};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

pub fn ws(id: &str) -> WorkspaceId {
    WorkspaceId::new(id).unwrap()
}

pub fn key(ws: &str, channel: &str, ts_micros: i64) -> MessageKey {
    MessageKey::new(
        WorkspaceId::new(ws).unwrap(),
        ChannelId::new(channel).unwrap(),
        Ts::from_micros(ts_micros),
    )
}

pub fn attrs() -> ContentAttributes {
    ContentAttributes {
        user: Some(UserId::new("U1").unwrap()),
        thread_ts: None,
        is_reply: false,
        has_files: false,
        has_links: false,
        reaction_count: 0,
        visibility: ChannelKind::Public,
    }
}

pub fn doc(key: MessageKey, text: &str, embedding: Vec<f32>, version: u64) -> ContentDocument {
    ContentDocument {
        content: MessageContent {
            context: Default::default(),
            key,
            text: text.to_string(),
            attributes: attrs(),
        },
        embedding,
        version,
    }
}

/// A seeded mixture of Gaussians: `centres` centres with unit spread per dimension, points with
/// `noise` spread around them — the neighbourhood structure of real embeddings, unlike uniform
/// random vectors.
pub struct Mixture {
    centres: Vec<Vec<f32>>,
    noise: Normal<f32>,
    rng: rand::rngs::StdRng,
}

impl Mixture {
    pub fn new(seed: u64, dim: usize, centres: usize, noise: f32) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let unit = Normal::new(0.0f32, 1.0).unwrap();
        let centres = (0..centres)
            .map(|_| (0..dim).map(|_| unit.sample(&mut rng)).collect())
            .collect();
        Mixture {
            centres,
            noise: Normal::new(0.0, noise).unwrap(),
            rng,
        }
    }

    pub fn sample(&mut self) -> Vec<f32> {
        let c = self.rng.random_range(0..self.centres.len());
        let centre = &self.centres[c];
        centre
            .iter()
            .map(|x| x + self.noise.sample(&mut self.rng))
            .collect()
    }
}

/// The dot product (the cosine of normalised vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn normalized(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// The machine's load averages (1, 5, 15 minutes), printed beside bench figures.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
