//! The PR-review finder: pull/merge requests shared in a range with the attention they got, and
//! questions nobody answered.

use std::collections::HashMap;

use chatvault_core::{
    Error, LinkQuery, MessageFilter, MessageKey, Result, ThreadFilter, TimeRange, Ts, WorkspaceId,
};
use serde::{Deserialize, Serialize};

use crate::engine::QueryEngine;
use crate::scope::{Allowed, Scope};
use crate::view::{load_views, MessageView};

/// Which forge a review request lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forge {
    /// A GitHub pull request.
    GitHub,
    /// A GitLab merge request.
    GitLab,
}

/// A pull or merge request, identified independently of how its URL was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReviewRef {
    /// The forge.
    pub forge: Forge,
    /// Its host (`github.com`, `gitlab.com`, or a self-hosted GitLab).
    pub host: String,
    /// `owner/repo` (GitLab: the full group path).
    pub project: String,
    /// The request's number.
    pub number: u64,
}

impl ReviewRef {
    /// The canonical URL.
    pub fn url(&self) -> String {
        match self.forge {
            Forge::GitHub => format!(
                "https://{}/{}/pull/{}",
                self.host, self.project, self.number
            ),
            Forge::GitLab => format!(
                "https://{}/{}/-/merge_requests/{}",
                self.host, self.project, self.number
            ),
        }
    }

    /// Parses a GitHub pull request (`/owner/repo/pull/N[/…]`) or a GitLab merge request
    /// (`/group/…/project/-/merge_requests/N[/…]`, or the older form without `-`). `gitlab_hosts`
    /// names self-hosted GitLab hosts besides `gitlab.com`.
    pub fn parse(url: &str, gitlab_hosts: &[String]) -> Option<Self> {
        let parsed = url::Url::parse(url).ok()?;
        let host = parsed.host_str()?.to_ascii_lowercase();
        let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
        let segs: Vec<&str> = parsed.path_segments()?.filter(|s| !s.is_empty()).collect();
        if host == "github.com" {
            if segs.len() >= 4 && (segs[2] == "pull" || segs[2] == "pulls") {
                let number = segs[3].parse().ok()?;
                return Some(ReviewRef {
                    forge: Forge::GitHub,
                    host,
                    project: format!("{}/{}", segs[0], segs[1]).to_ascii_lowercase(),
                    number,
                });
            }
            return None;
        }
        if host == "gitlab.com" || gitlab_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
            let i = segs.iter().position(|s| *s == "merge_requests")?;
            let number = segs.get(i + 1)?.parse().ok()?;
            let project_end = if i > 0 && segs[i - 1] == "-" {
                i - 1
            } else {
                i
            };
            if project_end < 2 {
                return None;
            }
            return Some(ReviewRef {
                forge: Forge::GitLab,
                host,
                project: segs[..project_end].join("/").to_ascii_lowercase(),
                number,
            });
        }
        None
    }
}

/// What to look for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrReviewRequest {
    /// Shared (or asked) in this range.
    pub range: TimeRange,
    /// For whom.
    #[serde(default)]
    pub scope: Scope,
    /// Self-hosted GitLab hosts to recognise besides gitlab.com.
    #[serde(default)]
    pub gitlab_hosts: Vec<String>,
    /// At most this many review requests and this many questions (1..=500).
    pub limit: usize,
    /// A question also counts as answered when someone else posts in its channel within this
    /// many seconds (for exports from before Slack had threads). `None`: only thread replies count.
    pub channel_reply_window_secs: Option<i64>,
}

impl PrReviewRequest {
    /// Review requests and unanswered questions in `range`, public scope, 20 of each, thread
    /// replies only.
    pub fn new(range: TimeRange) -> Self {
        PrReviewRequest {
            range,
            scope: Scope::Public,
            gitlab_hosts: Vec::new(),
            limit: 20,
            channel_reply_window_secs: None,
        }
    }
}

/// One share of a review request, with its discussion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewShare {
    /// The message that shared it.
    pub message: MessageView,
    /// Replies in the thread it started or belongs to.
    pub replies: Vec<MessageView>,
}

/// A review request and the attention it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRequest {
    /// Which request.
    pub review: ReviewRef,
    /// The canonical URL.
    pub url: String,
    /// Each message sharing it, with its thread replies.
    pub shares: Vec<ReviewShare>,
    /// Thread replies across shares.
    pub reply_count: u32,
    /// Reactions on the sharing messages and their replies.
    pub reaction_count: u32,
    /// The ordering key: replies + reactions + extra shares.
    pub attention: u32,
}

/// A question nobody answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenQuestion {
    /// The message.
    pub message: MessageView,
}

/// What the finder found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrReviewReport {
    /// Review requests, most attention first (ties: shared earlier first).
    pub reviews: Vec<ReviewRequest>,
    /// Questions without a reply, oldest first.
    pub open_questions: Vec<OpenQuestion>,
}

/// Whether a message asks something: a `?` ending a sentence, or an opening interrogative.
pub fn is_question(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() {
        return false;
    }
    // Links and code often contain `?` (query strings): look at the prose only.
    let prose: String = t
        .split_whitespace()
        .filter(|w| !w.contains("://") && !w.starts_with('<') && !w.starts_with('`'))
        .collect::<Vec<_>>()
        .join(" ");
    if prose
        .split_inclusive(['.', '!', '\n'])
        .any(|s| s.trim_end_matches(['.', '!', '\n', ' ']).ends_with('?'))
        || prose.contains("? ")
    {
        return true;
    }
    let first = prose
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_lowercase();
    matches!(
        first.as_str(),
        "how"
            | "why"
            | "what"
            | "where"
            | "when"
            | "which"
            | "who"
            | "anyone"
            | "anybody"
            | "does"
            | "do"
            | "is"
            | "are"
            | "can"
            | "could"
            | "should"
            | "would"
            | "has"
            | "have"
            | "did"
    ) && prose.split_whitespace().count() >= 3
}

impl QueryEngine {
    /// Finds GitHub/GitLab review requests shared in a range and questions without replies.
    ///
    /// # Errors
    /// `NotFound` (no such workspace), `InvalidInput` (limit or window out of range, a
    /// range that ends before it starts), store errors.
    pub async fn pr_reviews(
        &self,
        workspace: &WorkspaceId,
        request: PrReviewRequest,
    ) -> Result<PrReviewReport> {
        crate::engine::check_time_range(&request.range, "range")?;
        if request.limit == 0 || request.limit > 500 {
            return Err(Error::invalid_input(format!(
                "PR review limit {} is out of range 1..=500",
                request.limit
            ))
            .with_context("field", "limit"));
        }
        if request
            .channel_reply_window_secs
            .is_some_and(|w| !(0..=30 * 86_400).contains(&w))
        {
            return Err(Error::invalid_input(
                "channel_reply_window_secs must be between 0 and 30 days",
            )
            .with_context("field", "channel_reply_window_secs"));
        }
        let ws = self.workspace(workspace).await?;
        let allowed = Allowed::compute(self.meta.as_ref(), workspace, &request.scope).await?;
        let channels = allowed.list(None);
        if channels.is_empty() {
            return Ok(PrReviewReport {
                reviews: Vec::new(),
                open_questions: Vec::new(),
            });
        }
        let meta = self.meta.as_ref();
        let content = self.content.as_ref();

        // ---- review requests ----
        let mut domains = vec!["github.com".to_string(), "gitlab.com".to_string()];
        domains.extend(request.gitlab_hosts.iter().map(|h| h.to_ascii_lowercase()));
        let links = meta
            .list_links(
                workspace,
                &LinkQuery {
                    range: request.range.clone(),
                    channels: Some(channels.clone()),
                    domains: Some(domains),
                    limit: 0,
                },
            )
            .await?;
        let mut by_ref: HashMap<ReviewRef, Vec<MessageKey>> = HashMap::new();
        for l in links {
            if !allowed.allows(&l.key.channel) {
                continue;
            }
            if let Some(r) = ReviewRef::parse(&l.link.url, &request.gitlab_hosts) {
                let keys = by_ref.entry(r).or_default();
                if !keys.contains(&l.key) {
                    keys.push(l.key);
                }
            }
        }
        let mut reviews = Vec::new();
        for (review, keys) in by_ref {
            let shares_views = load_views(meta, content, &ws, &allowed, &keys).await?;
            let mut shares = Vec::new();
            let (mut reply_count, mut reaction_count) = (0u32, 0u32);
            for v in shares_views {
                let thread_ts = v
                    .thread_parent
                    .as_ref()
                    .map(|p| p.ts.clone())
                    .or_else(|| (v.reply_count > 0).then(|| v.key.ts.clone()));
                let mut replies = Vec::new();
                if let Some(t) = thread_ts {
                    let filter = MessageFilter {
                        channels: Some(vec![v.key.channel.clone()]),
                        thread: Some(ThreadFilter::Thread(t.clone())),
                        ..MessageFilter::default()
                    };
                    let keys: Vec<MessageKey> = self
                        .all_keys(workspace, &filter)
                        .await?
                        .into_iter()
                        .filter(|k| k.ts != t && k != &v.key)
                        .collect();
                    replies = load_views(meta, content, &ws, &allowed, &keys).await?;
                }
                reply_count += replies.len() as u32;
                reaction_count +=
                    v.reaction_count + replies.iter().map(|r| r.reaction_count).sum::<u32>();
                shares.push(ReviewShare {
                    message: v,
                    replies,
                });
            }
            if shares.is_empty() {
                continue;
            }
            shares.sort_by(|a, b| a.message.key.ts.cmp(&b.message.key.ts));
            let attention = reply_count + reaction_count + (shares.len() as u32 - 1);
            reviews.push(ReviewRequest {
                url: review.url(),
                review,
                shares,
                reply_count,
                reaction_count,
                attention,
            });
        }
        reviews.sort_by(|a, b| {
            b.attention
                .cmp(&a.attention)
                .then_with(|| a.shares[0].message.key.ts.cmp(&b.shares[0].message.key.ts))
                .then_with(|| a.url.cmp(&b.url))
        });
        reviews.truncate(request.limit);

        // ---- unanswered questions ----
        let filter = MessageFilter {
            channels: Some(channels),
            time: request.range.clone(),
            thread: Some(ThreadFilter::TopLevel),
            ..MessageFilter::default()
        };
        let keys = self.all_keys(workspace, &filter).await?;
        let mut open_questions = Vec::new();
        for chunk in keys.chunks(500) {
            let views = load_views(meta, content, &ws, &allowed, chunk).await?;
            for v in views {
                if v.reply_count > 0 || !v.text.as_deref().is_some_and(is_question) {
                    continue;
                }
                if let Some(window) = request.channel_reply_window_secs {
                    if self.answered_in_channel(workspace, &v, window).await? {
                        continue;
                    }
                }
                open_questions.push(OpenQuestion { message: v });
                if open_questions.len() >= request.limit {
                    break;
                }
            }
            if open_questions.len() >= request.limit {
                break;
            }
        }
        Ok(PrReviewReport {
            reviews,
            open_questions,
        })
    }

    /// Whether someone other than the author posted in the channel within `window` seconds after.
    async fn answered_in_channel(
        &self,
        workspace: &WorkspaceId,
        v: &MessageView,
        window: i64,
    ) -> Result<bool> {
        let start = v.key.ts.as_micros();
        let end = start.saturating_add(window.saturating_mul(1_000_000));
        let filter = MessageFilter {
            channels: Some(vec![v.key.channel.clone()]),
            time: TimeRange::between(
                Ts::from_micros(start).to_datetime(),
                Ts::from_micros(end).to_datetime(),
            ),
            ..MessageFilter::default()
        };
        let keys = self
            .meta
            .filter_messages(workspace, &filter, &chatvault_core::PageRequest::first(200))
            .await?;
        let keys: Vec<MessageKey> = keys.into_iter().filter(|k| k != &v.key).collect();
        if keys.is_empty() {
            return Ok(false);
        }
        let details = self.meta.get_messages(workspace, &keys).await?;
        Ok(details
            .iter()
            .any(|d| d.meta.user.is_some() && d.meta.user != v.user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_github_and_gitlab_review_urls() {
        let r = ReviewRef::parse("https://github.com/Rust-Lang/rust/pull/123/files", &[])
            .expect("github PR");
        assert_eq!(r.forge, Forge::GitHub);
        assert_eq!(r.project, "rust-lang/rust");
        assert_eq!(r.number, 123);
        assert_eq!(r.url(), "https://github.com/rust-lang/rust/pull/123");
        let g = ReviewRef::parse(
            "https://gitlab.com/group/sub/proj/-/merge_requests/7#note_1",
            &[],
        )
        .expect("gitlab MR");
        assert_eq!(g.forge, Forge::GitLab);
        assert_eq!(g.project, "group/sub/proj");
        assert_eq!(g.number, 7);
        let old = ReviewRef::parse("https://gitlab.com/g/p/merge_requests/8", &[]).expect("old");
        assert_eq!(old.project, "g/p");
        let own = ReviewRef::parse(
            "https://git.acme.dev/team/app/-/merge_requests/9",
            &["git.acme.dev".to_string()],
        )
        .expect("self-hosted");
        assert_eq!(own.host, "git.acme.dev");
        assert!(
            ReviewRef::parse("https://git.acme.dev/team/app/-/merge_requests/9", &[]).is_none()
        );
        assert!(ReviewRef::parse("https://github.com/rust-lang/rust/issues/1", &[]).is_none());
        assert!(ReviewRef::parse("https://github.com/rust-lang/rust/pull/x", &[]).is_none());
        assert!(ReviewRef::parse("not a url", &[]).is_none());
    }

    #[test]
    fn recognises_questions() {
        assert!(is_question("Does anyone know a good d3 tutorial?"));
        assert!(is_question("how do I join the meetup group"));
        assert!(is_question("Great talk! Where are the slides? Thanks"));
        assert!(!is_question("Slides are here: https://example.com/a?b=c"));
        assert!(!is_question("Thanks everyone."));
        assert!(!is_question(""));
    }
}
