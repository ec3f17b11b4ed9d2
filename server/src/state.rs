//! What the server runs on: the stores, the embedder, the query engine, its configuration.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatvault_answer::RelevanceGate;
use chatvault_collector::{EventHandler, Relay, RelayHandle, RelayOptions};
use chatvault_core::{
    ContentStore, Embedder, MetadataStore, Result, SecretString, UserId, WorkspaceId,
};
use chatvault_query::{Answerer, QueryEngine};
use tokio::sync::Mutex;

use crate::auth::AuthConfig;
use crate::catchup::BackfillSchedule;
use crate::metrics::Metrics;

/// How the server is set up. Secrets come from the environment or files (never arguments) and
/// never appear in `Debug`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The Slack app's signing secret: `POST /slack/events` verifies every request with it.
    /// Without one the endpoint answers 503 (events can still arrive over Socket Mode).
    pub signing_secret: Option<SecretString>,
    /// The background relay's options; `None` runs no relay (another process delivers).
    pub relay: Option<RelayOptions>,
    /// The workspaces this server writes (the caller holds their writer locks); events for any
    /// other workspace are refused. `None`: every stored workspace.
    pub workspaces: Option<Vec<WorkspaceId>>,
    /// How the JSON API learns who is asking (default: nobody; every request reads public
    /// channels only).
    pub auth: AuthConfig,
    /// A Web API backfill run at start and then periodically ([`serve`](crate::serve) runs
    /// it; a nested [`router`](crate::router) does not).
    pub backfill: Option<BackfillSchedule>,
    /// The language model that answers `POST /api/v1/workspaces/{ws}/ask` (grounded, streamed
    /// when the client accepts `text/event-stream`). `None`: the endpoint returns passages and
    /// a prompt.
    pub answerer: Option<Arc<dyn Answerer>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            signing_secret: None,
            relay: Some(RelayOptions::default()),
            workspaces: None,
            auth: AuthConfig::default(),
            backfill: None,
            answerer: None,
        }
    }
}

/// The server's shared state (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) meta: Arc<dyn MetadataStore>,
    pub(crate) content: Arc<dyn ContentStore>,
    pub(crate) embedder: Arc<dyn Embedder>,
    pub(crate) engine: QueryEngine,
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Metrics,
    /// When a question is answered without the model (measured per embedder).
    pub(crate) relevance: RelevanceGate,
    /// One events handler per workspace (it caches the workspace's names).
    pub(crate) handlers: Mutex<HashMap<WorkspaceId, Arc<EventHandler>>>,
    /// Slack team ids already mapped to a workspace.
    pub(crate) teams: Mutex<HashMap<String, WorkspaceId>>,
    /// Members by email address, for the trusted proxy header (read from the store at most
    /// every [`EMAIL_CACHE_TTL`], and again on a miss at most every [`EMAIL_MISS_RETRY`]).
    pub(crate) emails: Mutex<EmailCache>,
}

/// How long the members-by-email map is trusted.
const EMAIL_CACHE_TTL: Duration = Duration::from_secs(60);
/// How soon an unknown address reloads the map (a member who just joined).
const EMAIL_MISS_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub(crate) struct EmailCache {
    loaded: Option<Instant>,
    /// Lower-cased address → the distinct user ids having it (one per workspace at most).
    users: HashMap<String, Vec<UserId>>,
}

/// Who an email address belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EmailMatch {
    /// One member (in one workspace, or the same Enterprise Grid user id in several).
    One(UserId),
    /// Nobody.
    None,
    /// Different users in different workspaces: no single scope fits.
    Ambiguous,
}

impl AppState {
    /// A server over these stores. The caller opens them (the server writes: the metadata
    /// store read-write, the content store as the workspaces' writer).
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        content: Arc<dyn ContentStore>,
        embedder: Arc<dyn Embedder>,
        config: ServerConfig,
    ) -> Self {
        let engine = QueryEngine::new(meta.clone(), content.clone(), embedder.clone());
        let relevance = RelevanceGate::for_embedder(embedder.model_id());
        AppState {
            inner: Arc::new(Inner {
                meta,
                content,
                embedder,
                engine,
                config,
                metrics: Metrics::new(),
                relevance,
                handlers: Mutex::new(HashMap::new()),
                teams: Mutex::new(HashMap::new()),
                emails: Mutex::new(EmailCache::default()),
            }),
        }
    }

    /// The metadata store.
    pub fn meta(&self) -> &Arc<dyn MetadataStore> {
        &self.inner.meta
    }

    /// The query engine.
    pub fn engine(&self) -> &QueryEngine {
        &self.inner.engine
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The events handler of `workspace` (made on first use).
    pub(crate) async fn handler(&self, workspace: &WorkspaceId) -> Arc<EventHandler> {
        let mut handlers = self.inner.handlers.lock().await;
        Arc::clone(handlers.entry(workspace.clone()).or_insert_with(|| {
            Arc::new(EventHandler::new(
                self.inner.meta.clone(),
                workspace.clone(),
            ))
        }))
    }

    /// The server's configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Whether this server writes `workspace` (see [`ServerConfig::workspaces`]).
    pub fn serves(&self, workspace: &WorkspaceId) -> bool {
        self.inner
            .config
            .workspaces
            .as_ref()
            .is_none_or(|w| w.contains(workspace))
    }

    /// The workspace that Slack team `team` belongs to, among those this server writes:
    /// the stored workspace whose id is the team id (what `chatvault backfill` and the examples
    /// store), else the stored workspace that lists the team among its teams (an Enterprise
    /// Grid organization whose workspaces are teams of one chatvault workspace). `None`: the
    /// server holds no such workspace, and refuses the event.
    ///
    /// # Errors
    /// The metadata store's.
    pub async fn workspace_for_team(&self, team: &str) -> Result<Option<WorkspaceId>> {
        if let Some(ws) = self.inner.teams.lock().await.get(team) {
            return Ok(Some(ws.clone()));
        }
        let Ok(id) = WorkspaceId::new(team) else {
            return Ok(None);
        };
        let meta = &self.inner.meta;
        let mut found = None;
        if meta.get_workspace(&id).await?.is_some() {
            found = Some(id);
        } else {
            for w in meta.list_workspaces().await? {
                if meta
                    .list_teams(&w.id)
                    .await?
                    .iter()
                    .any(|t| t.id.as_str() == team)
                {
                    found = Some(w.id);
                    break;
                }
            }
        }
        let found = found.filter(|ws| self.serves(ws));
        if let Some(ws) = &found {
            self.inner
                .teams
                .lock()
                .await
                .insert(team.to_string(), ws.clone());
        }
        Ok(found)
    }

    /// The member an authenticating proxy's email address belongs to, among the users of the
    /// workspaces this server serves (compared case-insensitively).
    ///
    /// # Errors
    /// The metadata store's.
    pub(crate) async fn user_for_email(&self, email: &str) -> Result<EmailMatch> {
        let email = email.trim().to_lowercase();
        let mut cache = self.inner.emails.lock().await;
        let age = cache.loaded.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a > EMAIL_CACHE_TTL);
        let miss = !cache.users.contains_key(&email);
        if stale || (miss && age.is_none_or(|a| a > EMAIL_MISS_RETRY)) {
            let mut users: HashMap<String, Vec<UserId>> = HashMap::new();
            for w in self.inner.meta.list_workspaces().await? {
                if !self.serves(&w.id) {
                    continue;
                }
                for u in self.inner.meta.list_users(&w.id).await? {
                    if let Some(e) = u.email.filter(|_| !u.is_deleted) {
                        let ids = users.entry(e.trim().to_lowercase()).or_default();
                        if !ids.contains(&u.id) {
                            ids.push(u.id);
                        }
                    }
                }
            }
            *cache = EmailCache {
                loaded: Some(Instant::now()),
                users,
            };
        }
        Ok(match cache.users.get(&email).map(Vec::as_slice) {
            Some([one]) => EmailMatch::One(one.clone()),
            Some([]) | None => EmailMatch::None,
            Some(_) => EmailMatch::Ambiguous,
        })
    }

    /// Starts the background relay, if configured. A server that writes one workspace relays
    /// only its entries (another process may write the others).
    pub(crate) fn spawn_relay(&self) -> Option<RelayHandle> {
        let mut options = self.inner.config.relay.clone()?;
        if let Some([only]) = self.inner.config.workspaces.as_deref() {
            options.workspace.get_or_insert_with(|| only.clone());
        }
        Some(
            Relay::new(
                self.inner.meta.clone(),
                self.inner.content.clone(),
                self.inner.embedder.clone(),
                options,
            )
            .spawn(),
        )
    }
}
