#![doc = include_str!("../README.md")]

mod browse;
mod digest;
mod engine;
mod fusion;
mod mentions;
mod modifiers;
mod names;
mod pr_review;
mod qa;
mod scope;
mod search;
mod snippet;
mod time_hints;
mod view;

pub use browse::{MAX_BROWSE, MAX_THREADS};
pub use digest::{
    Digest, DigestChannel, DigestMessage, DigestPerson, DigestRequest, DigestThread, NewChannel,
};
pub use engine::{Context, PlannerConfig, QueryEngine, Thread, MAX_LIMIT};
pub use fusion::{FusionConfig, FusionMethod, MatchExplanation, RankScore};
pub use modifiers::{parse_query, ParsedQuery};
pub use names::resolve_user;
pub use pr_review::{
    is_question, Forge, OpenQuestion, PrReviewReport, PrReviewRequest, ReviewRef, ReviewRequest,
    ReviewShare,
};
pub use qa::{
    Answer, Answerer, AskRequest, ExtractiveAnswerer, Passage, Retrieval, ANSWER_INSTRUCTIONS,
    MAX_QUESTION_CHARS,
};
pub use scope::{Scope, Viewer};
pub use search::{
    FilterPlan, ParentSummary, SearchFilter, SearchHit, SearchMode, SearchRequest, SearchResponse,
    SearchTimings, ThreadPart,
};
pub use snippet::Snippet;
pub use view::{app_link, permalink, MessageView};
