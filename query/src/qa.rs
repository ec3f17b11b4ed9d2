//! Q&A retrieval: the passages that best answer a question, with their context and citations,
//! ready to hand to a language model — and the [`Answerer`] trait that would generate from them.

use std::fmt::Write as _;

use async_trait::async_trait;
use chatvault_core::{Error, MessageKey, Result, WorkspaceId};
use serde::{Deserialize, Serialize};

use crate::engine::QueryEngine;
use crate::scope::Scope;
use crate::search::{SearchFilter, SearchHit, SearchMode, SearchRequest};
use crate::view::MessageView;

/// A question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskRequest {
    /// The question.
    pub question: String,
    /// For whom.
    #[serde(default)]
    pub scope: Scope,
    /// Conditions on the passages.
    #[serde(default)]
    pub filter: SearchFilter,
    /// How many passages (1..=50).
    pub passages: usize,
    /// Messages of context on each side of a passage (0..=20): thread replies, or channel neighbours.
    pub context: usize,
}

impl AskRequest {
    /// Five passages with two messages of context each, public scope.
    pub fn new(question: impl Into<String>) -> Self {
        AskRequest {
            question: question.into(),
            scope: Scope::Public,
            filter: SearchFilter::default(),
            passages: 5,
            context: 2,
        }
    }
}

/// One passage: a hit and the messages around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// Its citation number, from 1 (`[1]` in the prompt).
    pub citation: usize,
    /// The hit.
    pub hit: SearchHit,
    /// The messages around it, oldest first, the hit included.
    pub context: Vec<MessageView>,
}

impl Passage {
    /// The link to cite.
    pub fn link(&self) -> &str {
        self.hit.message.link()
    }
}

/// Retrieved passages for a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    /// The question.
    pub question: String,
    /// The passages, best first.
    pub passages: Vec<Passage>,
    /// A prompt for a language model: instructions, the numbered passages, the question.
    pub prompt: String,
    /// Set when the search ran with less than asked (see [`SearchResponse::degraded`](crate::SearchResponse::degraded)).
    pub degraded: Option<String>,
}

/// A generated answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The answer text, citing passages as `[n]`.
    pub text: String,
    /// The passages cited: `(citation number, message key, link)`.
    pub citations: Vec<(usize, MessageKey, String)>,
    /// Which answerer produced it.
    pub answerer: String,
}

/// Generates an answer from retrieved passages (a language model, typically). chatvault ships no
/// implementation that calls the network; [`ExtractiveAnswerer`] answers locally.
#[async_trait]
pub trait Answerer: Send + Sync + std::fmt::Debug {
    /// Answers `retrieval.question` from `retrieval.passages`.
    ///
    /// # Errors
    /// Whatever the generator reports (`Unavailable` for a service that is down).
    async fn answer(&self, retrieval: &Retrieval) -> Result<Answer>;
}

/// A local answerer with no model: quotes the best passage and lists the others as sources.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractiveAnswerer;

#[async_trait]
impl Answerer for ExtractiveAnswerer {
    async fn answer(&self, retrieval: &Retrieval) -> Result<Answer> {
        let Some(best) = retrieval.passages.first() else {
            return Ok(Answer {
                text: "No message in the archive answers this.".to_string(),
                citations: Vec::new(),
                answerer: "extractive".to_string(),
            });
        };
        let m = &best.hit.message;
        let mut text = format!(
            "{} wrote in {}: “{}” [1]",
            m.author_label(),
            m.channel_label(),
            m.text.as_deref().unwrap_or_default().trim()
        );
        if retrieval.passages.len() > 1 {
            let others: Vec<String> = retrieval.passages[1..]
                .iter()
                .map(|p| format!("[{}]", p.citation))
                .collect();
            let _ = write!(text, "\n\nSee also {}.", others.join(", "));
        }
        Ok(Answer {
            text,
            citations: retrieval
                .passages
                .iter()
                .map(|p| (p.citation, p.hit.message.key.clone(), p.link().to_string()))
                .collect(),
            answerer: "extractive".to_string(),
        })
    }
}

impl QueryEngine {
    /// Retrieves the passages that best answer a question (hybrid search), each with its thread
    /// (for a reply or a thread parent) or its channel neighbours, and a prompt citing them.
    ///
    /// # Errors
    /// As [`search`](Self::search); `InvalidInput` for counts out of range.
    pub async fn ask(&self, workspace: &WorkspaceId, request: AskRequest) -> Result<Retrieval> {
        if request.passages == 0 || request.passages > 50 {
            return Err(Error::invalid_input(format!(
                "passages {} is out of range 1..=50",
                request.passages
            ))
            .with_context("field", "passages"));
        }
        if request.context > 20 {
            return Err(
                Error::invalid_input(format!("context {} is over 20", request.context))
                    .with_context("field", "context"),
            );
        }
        let response = self
            .search(
                workspace,
                SearchRequest {
                    query: request.question.clone(),
                    mode: SearchMode::Hybrid,
                    filter: request.filter.clone(),
                    limit: request.passages,
                    cursor: None,
                    scope: request.scope.clone(),
                },
            )
            .await?;
        let mut passages = Vec::with_capacity(response.hits.len());
        for (i, hit) in response.hits.into_iter().enumerate() {
            let m = &hit.message;
            let context = if m.thread_parent.is_some() || m.reply_count > 0 {
                let thread = self.thread(&m.key, &request.scope).await?;
                window_around(thread.messages, &m.key, request.context)
            } else if request.context > 0 {
                self.context(&m.key, request.context, &request.scope)
                    .await?
                    .messages
            } else {
                vec![m.clone()]
            };
            passages.push(Passage {
                citation: i + 1,
                hit,
                context,
            });
        }
        let prompt = prompt(&request.question, &passages);
        Ok(Retrieval {
            question: request.question,
            passages,
            prompt,
            degraded: response.degraded,
        })
    }

    /// Retrieves, then lets `answerer` generate.
    ///
    /// # Errors
    /// As [`ask`](Self::ask), and the answerer's errors.
    pub async fn answer(
        &self,
        workspace: &WorkspaceId,
        request: AskRequest,
        answerer: &dyn Answerer,
    ) -> Result<(Retrieval, Answer)> {
        let retrieval = self.ask(workspace, request).await?;
        let answer = answerer.answer(&retrieval).await?;
        Ok((retrieval, answer))
    }
}

/// The messages of a thread within `n` of `key` (the parent always kept first for context).
fn window_around(messages: Vec<MessageView>, key: &MessageKey, n: usize) -> Vec<MessageView> {
    let Some(pos) = messages.iter().position(|m| &m.key == key) else {
        return messages;
    };
    let from = pos.saturating_sub(n);
    let to = (pos + n + 1).min(messages.len());
    let mut out = Vec::new();
    if from > 0 {
        out.push(messages[0].clone());
    }
    out.extend(messages[from..to].iter().cloned());
    out
}

fn prompt(question: &str, passages: &[Passage]) -> String {
    let mut s = String::from(
        "Answer the question using only the chat messages below. Cite the passages you use as [n]. \
         If they do not contain the answer, say so.\n\n",
    );
    for p in passages {
        let m = &p.hit.message;
        let _ = writeln!(s, "[{}] {} — {}", p.citation, m.channel_label(), p.link());
        for c in &p.context {
            let marker = if c.key == m.key { ">" } else { " " };
            let _ = writeln!(
                s,
                "{marker} {} {}: {}",
                c.time.format("%Y-%m-%d %H:%M"),
                c.author_label(),
                c.text.as_deref().unwrap_or("(no text)").replace('\n', " ")
            );
        }
        s.push('\n');
    }
    let _ = write!(s, "Question: {question}\nAnswer:");
    s
}
