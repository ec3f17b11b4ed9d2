//! The outbox relay: claims outbox batches, embeds text, writes the content store, acks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Mutex};
use tracing::{debug, info_span, warn, Instrument};

use chatvault_core::{
    ChannelId, ClaimRequest, CollectionSpec, ContentDelete, ContentDocument, ContentStore,
    Embedder, Error, ErrorKind, FailOutcome, IndexContext, LeaseOwner, MessageContent, MessageKey,
    MetadataStore, OutboxEntry, OutboxFailure, OutboxId, OutboxOp, PageRequest, Result,
    RetryPolicy, UserId, WorkspaceId, INDEX_TEXT_VERSION,
};

use crate::progress::{NoProgress, Progress, ProgressUpdate, Stage};

/// How a relay works.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Only this workspace's entries (`None`: all workspaces).
    pub workspace: Option<WorkspaceId>,
    /// Entries claimed per batch (default 256).
    pub batch_size: usize,
    /// How long a claim holds (default 60 s): a relay that dies loses its batch to the next one
    /// after this long.
    pub lease: Duration,
    /// Retries and dead-lettering of failed deliveries.
    pub retry: RetryPolicy,
    /// Who claims: by default this process ([`LeaseOwner::current`]), so that another relay on
    /// this host can tell when it has died and take its entries over at once.
    pub owner: String,
    /// How long an idle relay waits before claiming again (default 200 ms).
    pub poll_interval: Duration,
    /// What context goes into each message's index text (default: the author's name).
    pub index_text: IndexTextOptions,
}

/// What context the relay puts in front of a message's text in what is indexed
/// ([`MessageContent::index_text`]). The default is the format of [`INDEX_TEXT_VERSION`]; other
/// settings are for measuring (the quality bench) — a collection records only the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTextOptions {
    /// The author's name ([`User::best_name`](chatvault_core::User::best_name)). Default on.
    pub author: bool,
    /// The channel's name. Default off: not measured to help yet (the quality bench's
    /// `--index-text author,channel` measures it).
    pub channel: bool,
}

impl Default for IndexTextOptions {
    fn default() -> Self {
        IndexTextOptions {
            author: true,
            channel: false,
        }
    }
}

impl IndexTextOptions {
    /// No context: the index text is the text (as before index texts carried context).
    pub fn none() -> Self {
        IndexTextOptions {
            author: false,
            channel: false,
        }
    }
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            workspace: None,
            batch_size: 256,
            lease: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            owner: LeaseOwner::current().to_string(),
            poll_interval: Duration::from_millis(200),
            index_text: IndexTextOptions::default(),
        }
    }
}

/// What a relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Claims that returned entries.
    pub batches: u64,
    /// Entries claimed.
    pub claimed: u64,
    /// Texts sent to the embedder.
    pub embedded: u64,
    /// Upserts whose stored embedding was reused (text unchanged).
    pub embeddings_reused: u64,
    /// Documents written (upserts and attribute updates).
    pub upserted: u64,
    /// Attribute-only updates among them.
    pub attributes_updated: u64,
    /// Index texts rebuilt (`Reindex` entries applied; re-embedded only when the text changed).
    pub reindexed: u64,
    /// Deletes applied.
    pub deleted: u64,
    /// Writes the content store ignored as older than what it holds (redelivery).
    pub stale: u64,
    /// Entries acknowledged (delivered).
    pub acked: u64,
    /// Failed deliveries scheduled for a retry.
    pub retried: u64,
    /// Entries dead-lettered.
    pub dead_lettered: u64,
}

impl RelayReport {
    fn merge(&mut self, o: &RelayReport) {
        self.batches += o.batches;
        self.claimed += o.claimed;
        self.embedded += o.embedded;
        self.embeddings_reused += o.embeddings_reused;
        self.upserted += o.upserted;
        self.attributes_updated += o.attributes_updated;
        self.reindexed += o.reindexed;
        self.deleted += o.deleted;
        self.stale += o.stale;
        self.acked += o.acked;
        self.retried += o.retried;
        self.dead_lettered += o.dead_lettered;
    }
}

/// Delivers outbox entries from a [`MetadataStore`] to a [`ContentStore`], embedding text with
/// an [`Embedder`].
///
/// Delivery is at-least-once; every content write carries the entry's version, so redelivery
/// and concurrent relays are harmless. Unchanged text is never embedded twice: the stored
/// document's embedding is reused when [`text_hash`](chatvault_core::MessageContent::text_hash)
/// matches.
#[derive(Debug)]
pub struct Relay {
    meta: Arc<dyn MetadataStore>,
    content: Arc<dyn ContentStore>,
    embedder: Arc<dyn Embedder>,
    options: RelayOptions,
    progress: Arc<dyn Progress>,
    ready: Mutex<HashSet<WorkspaceId>>,
}

/// A running relay task (from [`Relay::spawn`]).
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<RelayReport>>,
}

impl RelayHandle {
    /// Asks the task to stop after its current batch.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the task to end and returns what it did.
    ///
    /// # Errors
    /// `Backend` if the task panicked.
    pub async fn join(self) -> Result<RelayReport> {
        self.task
            .await
            .map_err(|e| Error::backend_error(format!("relay task failed: {e}")))?
    }

    /// [`stop`](Self::stop) then [`join`](Self::join).
    ///
    /// # Errors
    /// As [`join`](Self::join).
    pub async fn shutdown(self) -> Result<RelayReport> {
        self.stop();
        self.join().await
    }
}

impl Relay {
    /// A relay from `meta`'s outbox to `content`, embedding with `embedder`.
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        content: Arc<dyn ContentStore>,
        embedder: Arc<dyn Embedder>,
        options: RelayOptions,
    ) -> Self {
        Relay {
            meta,
            content,
            embedder,
            options,
            progress: Arc::new(NoProgress),
            ready: Mutex::new(HashSet::new()),
        }
    }

    /// Reports progress (stages `Relay` and `Embedded`) to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Delivers until nothing is left to deliver: waits out retry delays and other relays'
    /// leases (entries leased by a relay process that has died on this host are taken over at
    /// once; for live ones it says, through the progress reporter, how long it waits), and
    /// returns once the outbox holds only dead letters (for this relay's workspace, or all).
    /// For batch jobs and tests.
    ///
    /// # Errors
    /// The metadata store's error when claiming or acknowledging fails (the claimed entries are
    /// redelivered after their lease); `Conflict` when the content store cannot be written
    /// (another process holds its writer lock, or the collection was built by another model):
    /// the batch is released untouched, nothing is counted as a failed delivery.
    pub async fn drain(&self) -> Result<RelayReport> {
        self.upgrade_index_text().await?;
        let start = Instant::now();
        let mut total = RelayReport::default();
        let mut said_wait = false;
        loop {
            let r = self.run_once().await?;
            total.merge(&r);
            self.report(&total, start);
            if r.claimed == 0 {
                let stats = self
                    .meta
                    .outbox_stats(self.options.workspace.clone())
                    .await?;
                if stats.pending == 0 && stats.leased == 0 {
                    return Ok(total);
                }
                if stats.pending == 0 && !said_wait {
                    said_wait = true;
                    let until = stats.next_lease_expiry.map_or_else(
                        || "their leases expire".to_string(),
                        |t| {
                            let secs = (t - chrono::Utc::now()).num_seconds().max(0);
                            format!("their leases expire in {secs} s ({t})")
                        },
                    );
                    let detail = format!(
                        "{} entries are held by another running relay: waiting until {until}",
                        stats.leased
                    );
                    warn!("{detail}");
                    self.progress.update(&ProgressUpdate {
                        stage: Stage::Relay,
                        done: total.acked,
                        total: None,
                        elapsed: start.elapsed(),
                        detail: Some(detail),
                    });
                }
                tokio::time::sleep(self.options.poll_interval).await;
            }
        }
    }

    /// Runs the relay as a tokio task until [`RelayHandle::stop`]. Store failures are logged and
    /// retried after a pause.
    pub fn spawn(self) -> RelayHandle {
        let (stop, mut stopped) = watch::channel(false);
        let relay = self;
        let task = tokio::spawn(
            async move {
                if let Err(e) = relay.upgrade_index_text().await {
                    warn!(error = %e, "re-indexing collections of an older index-text version failed; retried at the next start");
                }
                let start = Instant::now();
                let mut total = RelayReport::default();
                let mut pause = relay.options.poll_interval;
                loop {
                    if *stopped.borrow() {
                        return Ok(total);
                    }
                    match relay.run_once().await {
                        Ok(r) => {
                            total.merge(&r);
                            if r.claimed > 0 {
                                relay.report(&total, start);
                                pause = relay.options.poll_interval;
                                continue;
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "relay batch failed; pausing");
                            pause = (pause * 2).min(Duration::from_secs(30));
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stopped.changed() => {}
                    }
                }
            }
            .instrument(info_span!("relay")),
        );
        RelayHandle { stop, task }
    }

    /// Dead-lettered entries of this relay's workspace (or all), oldest first.
    ///
    /// # Errors
    /// The metadata store's error.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.meta
            .dead_letters(self.options.workspace.clone(), limit)
            .await
    }

    /// Puts dead letters back in the queue (these ids, or all of the workspace's).
    ///
    /// # Errors
    /// The metadata store's error.
    pub async fn requeue_dead_letters(&self, ids: Option<Vec<OutboxId>>) -> Result<u64> {
        self.meta
            .requeue_dead_letters(self.options.workspace.clone(), ids)
            .await
    }

    fn report(&self, total: &RelayReport, start: Instant) {
        for (stage, done) in [
            (Stage::Relay, total.acked),
            (Stage::Embedded, total.embedded),
        ] {
            self.progress.update(&ProgressUpdate {
                stage,
                done,
                total: None,
                elapsed: start.elapsed(),
                detail: None,
            });
        }
    }

    /// Claims one batch and delivers it. `claimed == 0` in the report means there was nothing due.
    ///
    /// # Errors
    /// The metadata store's error (claim, ack or fail).
    pub async fn run_once(&self) -> Result<RelayReport> {
        let mut report = RelayReport::default();
        let entries = self
            .meta
            .claim_outbox(&ClaimRequest {
                workspace: self.options.workspace.clone(),
                limit: self.options.batch_size.max(1),
                lease: self.options.lease,
                owner: self.options.owner.clone(),
            })
            .await?;
        if entries.is_empty() {
            return Ok(report);
        }
        report.batches = 1;
        report.claimed = entries.len() as u64;
        let mut by_ws: BTreeMap<WorkspaceId, Vec<OutboxEntry>> = BTreeMap::new();
        for e in entries {
            by_ws.entry(e.key.workspace.clone()).or_default().push(e);
        }
        let mut acks = Vec::new();
        let mut failures = Vec::new();
        let mut released = Vec::new();
        let mut blocked = None;
        for (ws, entries) in by_ws {
            if blocked.is_some() {
                released.extend(entries.iter().map(|e| e.id));
                continue;
            }
            let ids: Vec<OutboxId> = entries.iter().map(|e| e.id).collect();
            let mut out = Vec::new();
            if let Err(e) = self
                .deliver(&ws, entries, &mut acks, &mut out, &mut report)
                .instrument(info_span!("deliver", workspace = %ws))
                .await
            {
                // Nothing of this workspace's batch was written: hand it back untouched.
                acks.retain(|id| !ids.contains(id));
                released.extend(ids);
                blocked = Some(e);
                continue;
            }
            failures.extend(out);
        }
        if failures.iter().any(|f| f.error.starts_with("not found")) {
            self.ready.lock().await.clear();
        }
        if !released.is_empty() {
            self.meta.release_outbox(&released).await?;
        }
        if !acks.is_empty() {
            self.meta.ack_outbox(&acks).await?;
            report.acked = acks.len() as u64;
        }
        if !failures.is_empty() {
            for o in self
                .meta
                .fail_outbox(&failures, &self.options.retry)
                .await?
            {
                match o {
                    FailOutcome::Retry { .. } => report.retried += 1,
                    FailOutcome::DeadLettered { .. } => report.dead_lettered += 1,
                    FailOutcome::Missing { .. } => {}
                }
            }
        }
        debug!(?report, "batch delivered");
        match blocked {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Migrates collections indexed with an older index-text format ([`INDEX_TEXT_VERSION`]):
    /// for each collection of this relay's workspace (or every collection) whose recorded
    /// version is older, enqueues a `Reindex` outbox entry for every message that has content
    /// (pages of 1,000, progress as [`Stage::Reindex`]: `done` of `total` messages), then
    /// records the new version. The outbox then re-indexes them like any change (durable,
    /// resumable; [`drain`](Self::drain) and [`spawn`](Self::spawn) deliver them), re-embedding
    /// only texts whose index text changed. Interrupted before the version is recorded, it
    /// starts over next time (the repeated entries cost no embedding). Called by `drain` and
    /// `spawn` before they deliver. Returns how many entries it enqueued.
    ///
    /// # Errors
    /// The stores' errors (listing collections, paging the metadata store, enqueueing,
    /// recording the version).
    pub async fn upgrade_index_text(&self) -> Result<u64> {
        let mut enqueued = 0;
        for info in self.content.list_collections().await? {
            if info.index_version >= INDEX_TEXT_VERSION
                || self
                    .options
                    .workspace
                    .as_ref()
                    .is_some_and(|w| w != &info.workspace)
            {
                continue;
            }
            let ws = &info.workspace;
            let start = Instant::now();
            let mut done = 0u64;
            let mut page = PageRequest {
                after: None,
                limit: 1000,
            };
            loop {
                let entries = self.meta.content_index(ws, &page).await?;
                let Some(last) = entries.last() else {
                    break;
                };
                page.after = Some(last.key.clone());
                let keys: Vec<MessageKey> = entries.into_iter().map(|e| e.key).collect();
                enqueued += self.meta.reindex_content(ws, &keys).await?;
                done += keys.len() as u64;
                self.progress.update(&ProgressUpdate {
                    stage: Stage::Reindex,
                    done,
                    total: Some(info.documents.max(done)),
                    elapsed: start.elapsed(),
                    detail: Some(format!(
                        "workspace {ws}: index text version {} -> {INDEX_TEXT_VERSION}",
                        info.index_version
                    )),
                });
            }
            self.content
                .set_index_version(ws, INDEX_TEXT_VERSION)
                .await?;
            tracing::info!(workspace = %ws, messages = done, from = info.index_version, to = INDEX_TEXT_VERSION, "re-indexing the collection through the outbox");
        }
        Ok(enqueued)
    }

    /// The names the index texts of these documents need: authors' and channels' current
    /// names from the metadata store.
    async fn names(&self, ws: &WorkspaceId, contents: &[&MessageContent]) -> Result<Names> {
        let mut names = Names {
            options: self.options.index_text,
            ..Names::default()
        };
        if self.options.index_text.author {
            let mut ids: Vec<UserId> = contents
                .iter()
                .filter_map(|c| c.attributes.user.clone())
                .collect();
            ids.sort();
            ids.dedup();
            if !ids.is_empty() {
                for u in self.meta.get_users(ws, &ids).await? {
                    names.users.insert(u.id.clone(), u.best_name().to_string());
                }
            }
        }
        if self.options.index_text.channel {
            let mut ids: Vec<&ChannelId> = contents.iter().map(|c| c.channel()).collect();
            ids.sort();
            ids.dedup();
            for id in ids {
                if let Some(c) = self.meta.get_channel(ws, id).await? {
                    names.channels.insert(c.id, c.name);
                }
            }
        }
        Ok(names)
    }

    async fn ensure_collection(&self, ws: &WorkspaceId) -> Result<()> {
        let mut ready = self.ready.lock().await;
        if ready.contains(ws) {
            return Ok(());
        }
        let spec = CollectionSpec {
            dimension: self.embedder.dimension(),
            model_id: self.embedder.model_id().to_string(),
        };
        match self.content.collection_info(ws).await? {
            Some(info) if info.spec != spec => {
                return Err(Error::conflict(format!(
                    "the collection of workspace {ws} holds {}-d vectors of model {:?}, the embedder makes {}-d vectors of {:?}",
                    info.spec.dimension, info.spec.model_id, spec.dimension, spec.model_id
                )));
            }
            Some(_) => {}
            None => {
                self.content.create_collection(ws, &spec).await?;
                self.content
                    .set_index_version(ws, INDEX_TEXT_VERSION)
                    .await?;
            }
        }
        ready.insert(ws.clone());
        Ok(())
    }

    /// Delivers one workspace's entries: acked ones go to `acks`, failed ones to `failures`.
    ///
    /// # Errors
    /// `Conflict` when the content store cannot be written at all (another writer holds it, or
    /// its collection belongs to another model): then nothing was written, and the caller hands
    /// the entries back without counting an attempt.
    async fn deliver(
        &self,
        ws: &WorkspaceId,
        entries: Vec<OutboxEntry>,
        acks: &mut Vec<OutboxId>,
        failures: &mut Vec<OutboxFailure>,
        report: &mut RelayReport,
    ) -> Result<()> {
        let fail_all = |entries: &[OutboxEntry], e: &Error, failures: &mut Vec<OutboxFailure>| {
            for en in entries {
                failures.push(failure(en.id, e));
            }
        };
        if let Err(e) = self.ensure_collection(ws).await {
            if e.kind() == ErrorKind::Conflict {
                return Err(e);
            }
            warn!(error = %e, "collection unavailable");
            fail_all(&entries, &e, failures);
            return Ok(());
        }
        // Stored documents, to reuse embeddings and to update attributes.
        let keys: Vec<MessageKey> = entries
            .iter()
            .filter(|e| !matches!(e.op, OutboxOp::Delete))
            .map(|e| e.key.clone())
            .collect();
        let stored: HashMap<MessageKey, ContentDocument> = if keys.is_empty() {
            HashMap::new()
        } else {
            match self.content.get(ws, &keys).await {
                Ok(docs) => docs.into_iter().map(|d| (d.key().clone(), d)).collect(),
                Err(e) if e.kind() == ErrorKind::Conflict => return Err(e),
                Err(e) => {
                    warn!(error = %e, "reading stored documents failed");
                    fail_all(&entries, &e, failures);
                    return Ok(());
                }
            }
        };
        let names = {
            let contents: Vec<&MessageContent> = entries
                .iter()
                .filter_map(|en| match &en.op {
                    OutboxOp::Upsert { content } => Some(content),
                    OutboxOp::Reindex => stored.get(&en.key).map(|d| &d.content),
                    _ => None,
                })
                .collect();
            match self.names(ws, &contents).await {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "reading names for index texts failed");
                    fail_all(&entries, &e, failures);
                    return Ok(());
                }
            }
        };
        let dim = self.embedder.dimension();
        let mut docs: Vec<(OutboxId, ContentDocument, bool)> = Vec::new();
        let mut deletes: Vec<(OutboxId, ContentDelete)> = Vec::new();
        for en in entries {
            let version = en.version();
            match en.op {
                OutboxOp::Upsert { mut content } => {
                    content.context = names.context(&content);
                    let reuse = stored.get(&en.key).filter(|s| {
                        s.embedding.len() == dim && s.content.text_hash() == content.text_hash()
                    });
                    match reuse {
                        Some(s) => {
                            report.embeddings_reused += 1;
                            docs.push((
                                en.id,
                                ContentDocument {
                                    content,
                                    embedding: s.embedding.clone(),
                                    version,
                                },
                                false,
                            ));
                        }
                        None => docs.push((
                            en.id,
                            ContentDocument {
                                content,
                                embedding: Vec::new(),
                                version,
                            },
                            true,
                        )),
                    }
                }
                OutboxOp::Attributes { attributes } => match stored.get(&en.key) {
                    Some(s) if s.version < version => {
                        let mut d = s.clone();
                        d.content.attributes = attributes;
                        d.version = version;
                        report.attributes_updated += 1;
                        docs.push((en.id, d, false));
                    }
                    // Absent (deleted or never delivered) or newer: nothing to update.
                    _ => acks.push(en.id),
                },
                OutboxOp::Reindex => match stored.get(&en.key) {
                    Some(s) if s.version < version => {
                        let context = names.context(&s.content);
                        report.reindexed += 1;
                        if context == s.content.context && s.embedding.len() == dim {
                            // The same index text: nothing to write. The stored version stays
                            // lower, which is harmless: every later change has a higher one.
                            report.embeddings_reused += 1;
                            acks.push(en.id);
                            continue;
                        }
                        let mut d = s.clone();
                        d.content.context = context;
                        d.version = version;
                        let embed = s.embedding.len() != dim
                            || s.content.text_hash() != d.content.text_hash();
                        if !embed {
                            report.embeddings_reused += 1;
                        }
                        docs.push((en.id, d, embed));
                    }
                    // Absent (deleted or never delivered) or newer: nothing to rebuild.
                    _ => acks.push(en.id),
                },
                OutboxOp::Delete => deletes.push((
                    en.id,
                    ContentDelete {
                        key: en.key,
                        version,
                    },
                )),
            }
        }

        // Embed what needs it, in the embedder's batch size.
        let need: Vec<usize> = (0..docs.len()).filter(|i| docs[*i].2).collect();
        let mut failed: HashSet<usize> = HashSet::new();
        for chunk in need.chunks(self.embedder.max_batch().max(1)) {
            let texts: Vec<String> = chunk
                .iter()
                .map(|i| docs[*i].1.content.index_text().into_owned())
                .collect();
            match self.embedder.embed(&texts).await {
                Ok(vectors) if vectors.len() == texts.len() => {
                    report.embedded += texts.len() as u64;
                    for (i, v) in chunk.iter().zip(vectors) {
                        docs[*i].1.embedding = v;
                    }
                }
                Ok(vectors) => {
                    let e = Error::backend_error(format!(
                        "embedder returned {} vectors for {} texts",
                        vectors.len(),
                        texts.len()
                    ));
                    for i in chunk {
                        failures.push(failure(docs[*i].0, &e));
                        failed.insert(*i);
                    }
                }
                Err(e) => {
                    warn!(error = %e, texts = texts.len(), "embedding failed");
                    for i in chunk {
                        failures.push(failure(docs[*i].0, &e));
                        failed.insert(*i);
                    }
                }
            }
        }
        let docs: Vec<(OutboxId, ContentDocument)> = docs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !failed.contains(i))
            .map(|(_, (id, d, _))| (id, d))
            .collect();

        if !docs.is_empty() {
            let batch: Vec<ContentDocument> = docs.iter().map(|(_, d)| d.clone()).collect();
            match self.content.upsert(ws, &batch).await {
                Ok(o) => {
                    report.upserted += o.applied;
                    report.stale += o.stale;
                    acks.extend(docs.iter().map(|(id, _)| *id));
                }
                Err(e) if e.kind() == ErrorKind::InvalidInput && docs.len() > 1 => {
                    // One bad document must not hold back the others.
                    for (id, d) in docs {
                        match self.content.upsert(ws, std::slice::from_ref(&d)).await {
                            Ok(o) => {
                                report.upserted += o.applied;
                                report.stale += o.stale;
                                acks.push(id);
                            }
                            Err(e) => failures.push(failure(id, &e)),
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::Conflict => return Err(e),
                Err(e) => {
                    warn!(error = %e, docs = docs.len(), "content upsert failed");
                    for (id, _) in docs {
                        failures.push(failure(id, &e));
                    }
                }
            }
        }
        if !deletes.is_empty() {
            let batch: Vec<ContentDelete> = deletes.iter().map(|(_, d)| d.clone()).collect();
            match self.content.delete(ws, &batch).await {
                Ok(o) => {
                    report.deleted += o.applied;
                    report.stale += o.stale;
                    acks.extend(deletes.iter().map(|(id, _)| *id));
                }
                Err(e) if e.kind() == ErrorKind::Conflict => return Err(e),
                Err(e) => {
                    warn!(error = %e, deletes = deletes.len(), "content delete failed");
                    for (id, _) in deletes {
                        failures.push(failure(id, &e));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Current names for building index texts.
#[derive(Debug, Default)]
struct Names {
    options: IndexTextOptions,
    users: HashMap<UserId, String>,
    channels: HashMap<ChannelId, String>,
}

impl Names {
    fn context(&self, content: &MessageContent) -> IndexContext {
        IndexContext {
            author: content
                .attributes
                .user
                .as_ref()
                .filter(|_| self.options.author)
                .and_then(|u| self.users.get(u))
                .cloned(),
            channel: self
                .options
                .channel
                .then(|| self.channels.get(content.channel()).cloned())
                .flatten(),
        }
    }
}

fn failure(id: OutboxId, e: &Error) -> OutboxFailure {
    OutboxFailure {
        id,
        error: e.to_string(),
        // A collection dropped under a running relay is recreated on the next attempt.
        retryable: e.is_retryable() || e.kind() == ErrorKind::NotFound,
    }
}
