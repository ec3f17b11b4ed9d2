//! Slack Events API: raw event JSON → metadata writes (and outbox rows) through the one write
//! path.
//!
//! Handling is idempotent (every write is an upsert keyed by Slack ids, reaction changes are
//! set operations) and ordered per message by the store: a write carrying an older `edited`
//! revision is ignored, and a deleted message stays deleted.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::RwLock;
use tracing::{debug, info_span, Instrument};

use chatvault_core::{
    ApplyReport, Channel, ChannelId, ChannelKind, Error, MembershipChange, MessageKey,
    MetadataStore, ReactionChange, Result, Ts, UserId, WorkspaceId, WriteBatch,
};

use crate::import::{parse_channel, parse_user};
use crate::markup::NameBook;
use crate::processor::{process_message, ChannelContext, Processed, UnknownSubtype};
use crate::write::apply_with_retry;

/// What handling one event did.
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    /// Written to the metadata store.
    Applied {
        /// The event type (`message`, `message_changed`, `reaction_added`…).
        kind: String,
        /// What the store did (zero enqueued for a replay).
        report: ApplyReport,
    },
    /// A `url_verification` request: answer with this challenge.
    UrlVerification {
        /// The challenge to echo.
        challenge: String,
    },
    /// Understood but nothing to store (an unsupported event type, a reaction to a file…).
    Ignored {
        /// The event type.
        kind: String,
        /// Why.
        reason: String,
    },
}

/// Handles Events API payloads for one workspace.
#[derive(Debug)]
pub struct EventHandler {
    meta: Arc<dyn MetadataStore>,
    workspace: WorkspaceId,
    unknown_subtypes: UnknownSubtype,
    store_retries: u32,
    names: RwLock<Option<NameBook>>,
}

fn need_str<'a>(v: &'a Value, field: &str) -> Result<&'a str> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Error::invalid_input(format!("event field `{field}` is missing or not a string"))
                .with_context("field", field)
        })
}

fn kind_from_channel_type(t: Option<&str>) -> Option<ChannelKind> {
    Some(match t? {
        "channel" => ChannelKind::Public,
        "group" => ChannelKind::Private,
        "im" => ChannelKind::Im,
        "mpim" => ChannelKind::Mpim,
        _ => return None,
    })
}

impl EventHandler {
    /// A handler writing `workspace`'s events into `meta`.
    pub fn new(meta: Arc<dyn MetadataStore>, workspace: WorkspaceId) -> Self {
        EventHandler {
            meta,
            workspace,
            unknown_subtypes: UnknownSubtype::Skip,
            store_retries: 5,
            names: RwLock::new(None),
        }
    }

    /// What to do with message subtypes the table does not know (default: ignore them).
    pub fn with_unknown_subtypes(mut self, u: UnknownSubtype) -> Self {
        self.unknown_subtypes = u;
        self
    }

    /// Handles a raw request body (an `event_callback` envelope, a `url_verification`, or a bare
    /// event object).
    ///
    /// # Errors
    /// `InvalidInput` naming the event id and field for malformed input; the store's error.
    pub async fn handle_json(&self, body: &[u8]) -> Result<EventOutcome> {
        let v: Value = serde_json::from_slice(body)?;
        self.handle(&v).await
    }

    /// Handles a parsed payload, as [`handle_json`](Self::handle_json).
    ///
    /// # Errors
    /// As [`handle_json`](Self::handle_json).
    pub async fn handle(&self, payload: &Value) -> Result<EventOutcome> {
        match payload.get("type").and_then(Value::as_str) {
            Some("url_verification") => {
                return Ok(EventOutcome::UrlVerification {
                    challenge: need_str(payload, "challenge")?.to_string(),
                })
            }
            Some("event_callback") => {}
            _ if payload.get("event").is_none() => {
                // a bare event
                return self.handle_event(payload, "-").await;
            }
            _ => {}
        }
        let id = payload
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string();
        let event = payload.get("event").ok_or_else(|| {
            Error::invalid_input("event_callback without an `event`").with_context("event_id", &id)
        })?;
        self.handle_event(event, &id).await
    }

    async fn handle_event(&self, event: &Value, id: &str) -> Result<EventOutcome> {
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let span = info_span!("event", event_id = id, kind = %kind);
        self.dispatch(event, &kind)
            .instrument(span)
            .await
            .map_err(|e| e.with_context("event_id", id))
    }

    async fn dispatch(&self, event: &Value, kind: &str) -> Result<EventOutcome> {
        let mut batch = WriteBatch::new(self.workspace.clone());
        let ignored = |reason: &str| {
            Ok(EventOutcome::Ignored {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
        };
        let mut label = kind.to_string();
        match kind {
            "message" => {
                let channel = ChannelId::new(need_str(event, "channel")?)?;
                let subtype = event.get("subtype").and_then(Value::as_str);
                match subtype {
                    Some("message_deleted") => {
                        let ts = Ts::new(need_str(event, "deleted_ts")?)?;
                        batch.message_deletes.push(MessageKey::new(
                            self.workspace.clone(),
                            channel,
                            ts,
                        ));
                        label = "message_deleted".into();
                    }
                    Some(s @ ("message_changed" | "message_replied")) => {
                        let inner = event.get("message").ok_or_else(|| {
                            Error::invalid_input(format!("{s} without a `message`"))
                                .with_context("field", "message")
                        })?;
                        label = s.to_string();
                        if !self
                            .add_message(&mut batch, event, inner, channel, true)
                            .await?
                        {
                            return ignored("subtype not stored");
                        }
                    }
                    _ => {
                        if !self
                            .add_message(&mut batch, event, event, channel, false)
                            .await?
                        {
                            return ignored("subtype not stored");
                        }
                    }
                }
            }
            "reaction_added" | "reaction_removed" => {
                let item = event.get("item").ok_or_else(|| {
                    Error::invalid_input("reaction event without an `item`")
                        .with_context("field", "item")
                })?;
                if item.get("type").and_then(Value::as_str) != Some("message") {
                    return ignored("reaction to something other than a message");
                }
                batch.reaction_changes.push(ReactionChange {
                    key: MessageKey::new(
                        self.workspace.clone(),
                        ChannelId::new(need_str(item, "channel")?)?,
                        Ts::new(need_str(item, "ts")?)?,
                    ),
                    name: need_str(event, "reaction")?.to_string(),
                    user: UserId::new(need_str(event, "user")?)?,
                    added: kind == "reaction_added",
                });
            }
            "channel_created" | "group_created" => {
                let c = event.get("channel").ok_or_else(|| {
                    Error::invalid_input("channel_created without a `channel`")
                        .with_context("field", "channel")
                })?;
                let default = if kind == "group_created" {
                    ChannelKind::Private
                } else {
                    ChannelKind::Public
                };
                let (channel, members) = parse_channel(c, default)?;
                if let Some(users) = members {
                    batch.memberships.push(MembershipChange::Replace {
                        channel: channel.id.clone(),
                        users,
                    });
                }
                self.remember_channel(&channel).await;
                batch.channels.push(channel);
            }
            "channel_rename" | "group_rename" => {
                let c = event.get("channel").ok_or_else(|| {
                    Error::invalid_input("channel_rename without a `channel`")
                        .with_context("field", "channel")
                })?;
                let id = ChannelId::new(need_str(c, "id")?)?;
                let name = need_str(c, "name")?;
                let mut channel = self.channel_or_new(&id, kind).await?;
                channel.name = name.to_string();
                self.remember_channel(&channel).await;
                batch.channels.push(channel);
            }
            "channel_archive" | "channel_unarchive" | "group_archive" | "group_unarchive" => {
                let id = ChannelId::new(need_str(event, "channel")?)?;
                let mut channel = self.channel_or_new(&id, kind).await?;
                channel.is_archived = kind.ends_with("_archive");
                batch.channels.push(channel);
            }
            "member_joined_channel" | "member_left_channel" => {
                let channel = ChannelId::new(need_str(event, "channel")?)?;
                let user = UserId::new(need_str(event, "user")?)?;
                if self
                    .meta
                    .get_channel(&self.workspace, &channel)
                    .await?
                    .is_none()
                {
                    let kind = kind_from_channel_type(
                        event
                            .get("channel_type")
                            .and_then(Value::as_str)
                            .map(|t| match t {
                                "C" => "channel",
                                "G" => "group",
                                other => other,
                            }),
                    )
                    .unwrap_or(ChannelKind::Public);
                    batch
                        .channels
                        .push(Channel::new(channel.clone(), channel.as_str(), kind));
                }
                batch.memberships.push(if kind == "member_joined_channel" {
                    MembershipChange::Join { channel, user }
                } else {
                    MembershipChange::Leave { channel, user }
                });
            }
            "user_change" | "team_join" => {
                let u = event.get("user").ok_or_else(|| {
                    Error::invalid_input("user_change without a `user`")
                        .with_context("field", "user")
                })?;
                let user = parse_user(u)?;
                if let Some(names) = self.names.write().await.as_mut() {
                    names
                        .users
                        .insert(user.id.to_string(), user.best_name().to_string());
                }
                batch.users.push(user);
            }
            "" => {
                return Err(
                    Error::invalid_input("event without a `type`").with_context("field", "type")
                )
            }
            _ => return ignored("event type not handled"),
        }
        let report = apply_with_retry(self.meta.as_ref(), batch, self.store_retries).await?;
        debug!(?report, "event applied");
        Ok(EventOutcome::Applied {
            kind: label,
            report,
        })
    }

    /// Adds a processed message to the batch; `false` if its subtype is not stored.
    async fn add_message(
        &self,
        batch: &mut WriteBatch,
        event: &Value,
        message: &Value,
        channel: ChannelId,
        is_change: bool,
    ) -> Result<bool> {
        self.load_names().await?;
        let from_event = kind_from_channel_type(event.get("channel_type").and_then(Value::as_str));
        let known = self
            .names
            .read()
            .await
            .as_ref()
            .is_some_and(|n| n.channels.contains_key(channel.as_str()));
        let kind = match (from_event, known) {
            (Some(k), true) => k,
            _ => match self.meta.get_channel(&self.workspace, &channel).await? {
                Some(c) => {
                    let kind = from_event.unwrap_or(c.kind);
                    self.remember_channel(&c).await;
                    kind
                }
                None => {
                    // A channel first seen through a message (the app was added to it after the
                    // import, or it was created while the server was down): store it, named by
                    // its id until a rename, a `channel_created` or a backfill names it, so that
                    // its messages are searchable by whoever may see it. Of unknown type, it is
                    // private (visible to no one but admins) rather than public.
                    let kind = from_event.unwrap_or(ChannelKind::Private);
                    // (Not remembered yet: if this batch fails, the next message stores it.)
                    batch
                        .channels
                        .push(Channel::new(channel.clone(), channel.as_str(), kind));
                    kind
                }
            },
        };
        let ctx = ChannelContext {
            workspace: self.workspace.clone(),
            channel,
            kind,
        };
        let processed = {
            let guard = self.names.read().await;
            let empty = NameBook::default();
            process_message(
                &ctx,
                message,
                guard.as_ref().unwrap_or(&empty),
                self.unknown_subtypes,
            )?
        };
        let Processed::Message(mut p) = processed else {
            return Ok(false);
        };
        if is_change {
            // A changed message may leave out what did not change; keep the stored sets.
            let has = |f: &str| message.get(f).is_some();
            if !has("reactions") || !(has("files") || has("file")) {
                let key = p.record.meta.key.clone();
                if let Some(stored) = self
                    .meta
                    .get_messages(&self.workspace, std::slice::from_ref(&key))
                    .await?
                    .into_iter()
                    .next()
                {
                    if !has("reactions") {
                        p.record.meta.reaction_count = stored.meta.reaction_count;
                        p.record.meta.has_reactions = stored.meta.has_reactions;
                        p.record.reactions = stored.reactions;
                    }
                    if !(has("files") || has("file")) {
                        p.record.meta.has_files = stored.meta.has_files;
                        p.record.files = stored.files;
                    }
                    if let Some(c) = p.record.content.as_mut() {
                        c.attributes =
                            chatvault_core::ContentAttributes::from_meta(&p.record.meta, ctx.kind);
                    }
                }
            }
        }
        batch.messages.push(p.record);
        batch.thread_participants.extend(p.participants);
        Ok(true)
    }

    async fn load_names(&self) -> Result<()> {
        if self.names.read().await.is_some() {
            return Ok(());
        }
        let mut book = NameBook::default();
        for u in self.meta.list_users(&self.workspace).await? {
            book.users
                .insert(u.id.to_string(), u.best_name().to_string());
        }
        for c in self.meta.list_channels(&self.workspace).await? {
            book.add_channel(&c);
        }
        *self.names.write().await = Some(book);
        Ok(())
    }

    async fn remember_channel(&self, c: &Channel) {
        if let Some(names) = self.names.write().await.as_mut() {
            names.add_channel(c);
        }
    }

    async fn channel_or_new(&self, id: &ChannelId, event_kind: &str) -> Result<Channel> {
        Ok(match self.meta.get_channel(&self.workspace, id).await? {
            Some(c) => c,
            None => Channel::new(
                id.clone(),
                id.as_str(),
                if event_kind.starts_with("group") {
                    ChannelKind::Private
                } else {
                    ChannelKind::Public
                },
            ),
        })
    }
}
