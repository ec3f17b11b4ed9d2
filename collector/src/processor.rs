//! The message processor: one Slack message (export, API or event JSON — the same shape) →
//! metadata (no text) + content (text + filter attributes), with reactions, links, files and
//! thread participants.

use std::collections::HashSet;

use serde_json::Value;

use chatvault_core::{
    ChannelId, ChannelKind, ContentAttributes, Error, FileRef, Link, LinkSource, MessageContent,
    MessageKey, MessageMeta, MessageRecord, Reaction, Result, ThreadParticipant, Ts, UserId,
    WorkspaceId, MAX_TEXT_BYTES,
};

use crate::markup::{self, NameBook, Token};
use crate::subtype::{self, SubtypeHandling};

/// Where a message was posted: what the processor needs besides the message itself.
#[derive(Debug, Clone)]
pub struct ChannelContext {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// The conversation.
    pub channel: ChannelId,
    /// Its kind (the content's visibility attribute).
    pub kind: ChannelKind,
}

/// What to do with subtypes the [subtype table](crate::subtype) does not know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownSubtype {
    /// Skip the message and report it (default: nothing unknown is indexed silently).
    #[default]
    Skip,
    /// Store it like a plain message (metadata and content).
    Keep,
}

/// One processed message.
#[derive(Debug, Clone)]
pub struct ProcessedMessage {
    /// Metadata, reactions, links, files and content (`None` for metadata-only subtypes).
    pub record: MessageRecord,
    /// Thread participants it reveals (its author if it is a reply, a parent's `reply_users`).
    pub participants: Vec<ThreadParticipant>,
    /// How its subtype was handled.
    pub handling: SubtypeHandling,
}

/// The result of processing: a message, or a subtype that is skipped by design.
#[derive(Debug, Clone)]
pub enum Processed {
    /// A message to store.
    Message(Box<ProcessedMessage>),
    /// A subtype that is never stored (event wrappers), or an unknown one with
    /// [`UnknownSubtype::Skip`].
    Skipped {
        /// The subtype.
        subtype: String,
        /// Why.
        reason: String,
    },
}

fn field_err(field: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("field `{field}`: {why}")).with_context("field", field)
}

fn opt_str<'a>(v: &'a Value, field: &str) -> Result<Option<&'a str>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(field_err(field, format!("expected a string, got {other}"))),
    }
}

fn opt_nonempty_str<'a>(v: &'a Value, field: &str) -> Result<Option<&'a str>> {
    Ok(opt_str(v, field)?.filter(|s| !s.is_empty()))
}

fn opt_ts(v: &Value, field: &str) -> Result<Option<Ts>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ts::new(s.as_str())
            .map(Some)
            .map_err(|e| field_err(field, e.message())),
        Some(Value::Number(n)) => Ts::new(n.to_string())
            .map(Some)
            .map_err(|e| field_err(field, e.message())),
        Some(other) => Err(field_err(
            field,
            format!("expected a ts string, got {other}"),
        )),
    }
}

fn opt_u32(v: &Value, field: &str) -> Result<Option<u32>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| field_err(field, format!("expected a count, got {n}"))),
        Some(other) => Err(field_err(field, format!("expected a number, got {other}"))),
    }
}

fn opt_user(v: &Value, field: &str) -> Result<Option<UserId>> {
    match opt_nonempty_str(v, field)? {
        None => Ok(None),
        Some(s) => UserId::new(s)
            .map(Some)
            .map_err(|e| field_err(field, e.message())),
    }
}

fn array<'a>(v: &'a Value, field: &str) -> Result<&'a [Value]> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a.as_slice()),
        Some(other) => Err(field_err(
            field,
            format!("expected an array, got {}", kind_of(other)),
        )),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Collects links, deduplicated by URL (the first place a URL is seen wins).
#[derive(Default)]
struct LinkSet {
    seen: HashSet<String>,
    links: Vec<Link>,
}

impl LinkSet {
    fn add(&mut self, raw_url: &str, source: LinkSource, title: Option<&str>) {
        let url = markup::unescape(raw_url.trim());
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return;
        }
        if self.seen.contains(&url) {
            return;
        }
        if let Some(mut link) = Link::parse(&url, source) {
            link.title = title
                .filter(|t| !t.is_empty() && *t != raw_url)
                .map(markup::unescape);
            self.seen.insert(url);
            self.links.push(link);
        }
    }

    fn add_markup(&mut self, text: &str, source: LinkSource) {
        for tok in markup::scan(text) {
            if let Token::Link { url, label } = tok {
                self.add(url, source, label);
            }
        }
    }
}

/// Walks Block Kit JSON: text of non-`rich_text` blocks, links and mentions of all.
fn walk_blocks(
    v: &Value,
    in_rich_text: bool,
    texts: &mut Vec<String>,
    links: &mut LinkSet,
    mentions: &mut HashSet<String>,
    names: &NameBook,
) {
    match v {
        Value::Array(items) => {
            for i in items {
                walk_blocks(i, in_rich_text, texts, links, mentions, names);
            }
        }
        Value::Object(map) => {
            let ty = map.get("type").and_then(Value::as_str).unwrap_or("");
            let rich = in_rich_text || ty == "rich_text";
            match ty {
                "link" => {
                    if let Some(url) = map.get("url").and_then(Value::as_str) {
                        links.add(
                            url,
                            LinkSource::Block,
                            map.get("text").and_then(Value::as_str),
                        );
                    }
                }
                "user" if rich => {
                    if let Some(id) = map.get("user_id").and_then(Value::as_str) {
                        mentions.insert(format!("@{id}"));
                    }
                }
                "channel" if rich => {
                    if let Some(id) = map.get("channel_id").and_then(Value::as_str) {
                        mentions.insert(format!("#{id}"));
                    }
                }
                "usergroup" if rich => {
                    if let Some(id) = map.get("usergroup_id").and_then(Value::as_str) {
                        mentions.insert(format!("!subteam^{id}"));
                    }
                }
                "broadcast" if rich => {
                    if let Some(r) = map.get("range").and_then(Value::as_str) {
                        mentions.insert(format!("!{r}"));
                    }
                }
                "mrkdwn" | "plain_text" if !rich => {
                    if let Some(t) = map.get("text").and_then(Value::as_str) {
                        links.add_markup(t, LinkSource::Block);
                        let r = markup::render(t, names);
                        if !r.trim().is_empty() {
                            texts.push(r);
                        }
                    }
                    return;
                }
                _ => {}
            }
            if ty != "link" {
                if let Some(url) = map.get("url").and_then(Value::as_str) {
                    links.add(url, LinkSource::Block, None);
                }
            }
            for (k, child) in map {
                if matches!(child, Value::Array(_) | Value::Object(_)) && k != "accessory_image" {
                    walk_blocks(child, rich, texts, links, mentions, names);
                }
            }
        }
        _ => {}
    }
}

fn parse_file(v: &Value) -> Result<Option<FileRef>> {
    let Some(id) = opt_nonempty_str(v, "id")? else {
        return Ok(None);
    };
    Ok(Some(FileRef {
        id: id.to_string(),
        name: opt_nonempty_str(v, "name")?.map(str::to_string),
        title: opt_nonempty_str(v, "title")?.map(str::to_string),
        mimetype: opt_nonempty_str(v, "mimetype")?.map(str::to_string),
        filetype: opt_nonempty_str(v, "filetype")?.map(str::to_string),
        size: v.get("size").and_then(Value::as_u64),
        url_private: opt_nonempty_str(v, "url_private")?.map(str::to_string),
        permalink: opt_nonempty_str(v, "permalink")?.map(str::to_string),
    }))
}

/// Processes one message object.
///
/// # Errors
/// `InvalidInput` naming the field: not an object, missing or invalid `ts`, a field of the wrong
/// type, an invalid id, text longer than [`MAX_TEXT_BYTES`].
pub fn process_message(
    ctx: &ChannelContext,
    v: &Value,
    names: &NameBook,
    unknown: UnknownSubtype,
) -> Result<Processed> {
    if !v.is_object() {
        return Err(Error::invalid_input(format!(
            "a message must be a JSON object, got {}",
            kind_of(v)
        )));
    }
    let ts = opt_ts(v, "ts")?.ok_or_else(|| field_err("ts", "missing"))?;
    let subtype = opt_nonempty_str(v, "subtype")?;
    let handling = match subtype::handling(subtype) {
        Some(SubtypeHandling::Skipped) => {
            return Ok(Processed::Skipped {
                subtype: subtype.unwrap_or_default().to_string(),
                reason: "event wrapper, never stored as a message".to_string(),
            })
        }
        Some(h) => h,
        None => match unknown {
            UnknownSubtype::Skip => {
                return Ok(Processed::Skipped {
                    subtype: subtype.unwrap_or_default().to_string(),
                    reason: format!(
                        "unknown subtype {:?} (see the subtype table; ImportOptions::unknown_subtypes = Keep stores it)",
                        subtype.unwrap_or_default()
                    ),
                })
            }
            UnknownSubtype::Keep => SubtypeHandling::Content,
        },
    };
    let key = MessageKey::new(ctx.workspace.clone(), ctx.channel.clone(), ts);
    let mut meta = MessageMeta::new(key.clone());
    meta.user = opt_user(v, "user")?;
    meta.bot_id = opt_nonempty_str(v, "bot_id")?.map(str::to_string);
    meta.subtype = subtype.map(str::to_string);
    meta.thread_ts = opt_ts(v, "thread_ts")?;
    let replies = array(v, "replies")?;
    meta.reply_count = opt_u32(v, "reply_count")?.unwrap_or(replies.len() as u32);
    let reply_users = array(v, "reply_users")?;
    meta.reply_users_count = opt_u32(v, "reply_users_count")?.unwrap_or(reply_users.len() as u32);
    meta.latest_reply = opt_ts(v, "latest_reply")?;
    if meta.thread_ts.is_none() && meta.reply_count > 0 {
        meta.thread_ts = Some(key.ts.clone());
    }
    if let Some(edited) = v.get("edited").filter(|e| !e.is_null()) {
        meta.edited = opt_ts(edited, "ts").map_err(|e| field_err("edited.ts", e.message()))?;
    }

    let text = opt_str(v, "text")?.unwrap_or("");
    let mut links = LinkSet::default();
    let mut mentions = HashSet::new();
    let mut texts: Vec<String> = Vec::new();
    let main = markup::render(text, names);
    if !main.trim().is_empty() {
        texts.push(main);
    }
    for tok in markup::scan(text) {
        match tok {
            Token::Link { url, label } => links.add(url, LinkSource::Text, label),
            other => {
                if let Some(t) = other.mention_target() {
                    mentions.insert(t);
                }
            }
        }
    }

    // reactions
    let mut reactions = Vec::new();
    for (i, r) in array(v, "reactions")?.iter().enumerate() {
        let name = opt_nonempty_str(r, "name")
            .map_err(|e| field_err(&format!("reactions[{i}].name"), e.message()))?
            .ok_or_else(|| field_err(&format!("reactions[{i}].name"), "missing"))?;
        let mut users = Vec::new();
        for u in array(r, "users")? {
            let s = u
                .as_str()
                .ok_or_else(|| field_err(&format!("reactions[{i}].users"), "expected strings"))?;
            users.push(
                UserId::new(s)
                    .map_err(|e| field_err(&format!("reactions[{i}].users"), e.message()))?,
            );
        }
        let count = opt_u32(r, "count")?.unwrap_or(users.len() as u32);
        reactions.push(Reaction {
            name: name.to_string(),
            users,
            count,
        });
    }
    meta.reaction_count = reactions.iter().map(|r| r.count).sum();
    meta.has_reactions = meta.reaction_count > 0;

    // files: `files` (current) or `file` (older exports)
    let mut files = Vec::new();
    for f in array(v, "files")? {
        if let Some(f) = parse_file(f)? {
            files.push(f);
        }
    }
    if let Some(f) = v.get("file").filter(|f| f.is_object()) {
        if let Some(f) = parse_file(f)? {
            if !files.iter().any(|x| x.id == f.id) {
                files.push(f);
            }
        }
    }
    meta.has_files = !files.is_empty();
    for f in &files {
        if let Some(t) = f.title.as_deref().or(f.name.as_deref()) {
            if !texts.iter().any(|x| x.contains(t)) {
                texts.push(t.to_string());
            }
        }
    }
    if let Some(c) = v.get("comment").filter(|c| c.is_object()) {
        if let Some(t) = opt_nonempty_str(c, "comment")? {
            links.add_markup(t, LinkSource::Text);
            let r = markup::render(t, names);
            if !texts.iter().any(|x| x.contains(r.as_str())) {
                texts.push(r);
            }
        }
    }

    // attachments (legacy attachments and unfurls)
    let attachments = array(v, "attachments")?;
    meta.has_attachments = !attachments.is_empty();
    for a in attachments {
        let title = opt_nonempty_str(a, "title")?;
        for f in ["from_url", "title_link", "original_url"] {
            if let Some(u) = opt_nonempty_str(a, f)? {
                links.add(u, LinkSource::Attachment, title);
            }
        }
        let mut parts = Vec::new();
        for f in ["pretext", "title", "text"] {
            if let Some(t) = opt_nonempty_str(a, f)? {
                links.add_markup(t, LinkSource::Attachment);
                parts.push(markup::render(t, names));
            }
        }
        for field in array(a, "fields")? {
            for f in ["title", "value"] {
                if let Some(t) = opt_nonempty_str(field, f)? {
                    links.add_markup(t, LinkSource::Attachment);
                    parts.push(markup::render(t, names));
                }
            }
        }
        if parts.is_empty() {
            if let Some(t) = opt_nonempty_str(a, "fallback")? {
                parts.push(markup::render(t, names));
            }
        }
        if let Some(blocks) = a.get("blocks") {
            walk_blocks(blocks, false, &mut parts, &mut links, &mut mentions, names);
        }
        texts.extend(parts.into_iter().filter(|p| !p.trim().is_empty()));
    }

    // Block Kit: rich_text mirrors `text`, other blocks add text of their own
    if let Some(blocks) = v.get("blocks") {
        walk_blocks(blocks, false, &mut texts, &mut links, &mut mentions, names);
    }

    meta.mention_count = mentions.len() as u32;
    meta.link_count = links.links.len() as u32;

    let mut participants = Vec::new();
    if let (Some(thread), Some(user)) = (&meta.thread_ts, &meta.user) {
        if meta.is_reply() {
            participants.push(ThreadParticipant {
                channel: ctx.channel.clone(),
                thread_ts: thread.clone(),
                user: user.clone(),
            });
        }
    }
    if meta.thread_ts.as_ref() == Some(&key.ts) {
        for u in reply_users {
            if let Some(Ok(user)) = u.as_str().map(UserId::new) {
                participants.push(ThreadParticipant {
                    channel: ctx.channel.clone(),
                    thread_ts: key.ts.clone(),
                    user,
                });
            }
        }
    }

    let content = if handling == SubtypeHandling::Content {
        let full = texts.join("\n");
        let full = full.trim();
        if full.len() > MAX_TEXT_BYTES {
            return Err(Error::invalid_input(format!(
                "message text is {} bytes, more than the {MAX_TEXT_BYTES} chatvault stores",
                full.len()
            ))
            .with_context("field", "text"));
        }
        if full.is_empty() {
            None
        } else {
            Some(MessageContent {
                context: Default::default(),
                key: key.clone(),
                text: full.to_string(),
                attributes: ContentAttributes::from_meta(&meta, ctx.kind),
            })
        }
    } else {
        None
    };

    Ok(Processed::Message(Box::new(ProcessedMessage {
        record: MessageRecord {
            meta,
            reactions,
            links: links.links,
            files,
            content,
        },
        participants,
        handling,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> ChannelContext {
        ChannelContext {
            workspace: WorkspaceId::new("T1").unwrap(),
            channel: ChannelId::new("C1").unwrap(),
            kind: ChannelKind::Public,
        }
    }

    fn msg(v: Value) -> ProcessedMessage {
        match process_message(&ctx(), &v, &NameBook::default(), UnknownSubtype::Skip).unwrap() {
            Processed::Message(m) => *m,
            Processed::Skipped { reason, .. } => panic!("skipped: {reason}"),
        }
    }

    #[test]
    fn splits_metadata_and_content() {
        let m = msg(json!({
            "type": "message", "user": "U1", "ts": "100.000001",
            "text": "see <https://github.com/a/b/pull/1|PR> and <https://www.example.com> cc <@U2> <#C3|dev> <!here> <@U2>",
            "edited": {"user": "U1", "ts": "101.000000"},
            "reactions": [{"name": "+1", "users": ["U2", "U3"], "count": 2}, {"name": "tada", "users": ["U2"], "count": 1}],
            "attachments": [{"from_url": "https://github.com/a/b/pull/1", "title": "Fix it", "text": "body <https://docs.rs|docs>"}],
            "blocks": [{"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
                {"type": "text", "text": "see "}, {"type": "link", "url": "https://github.com/a/b/pull/1"},
                {"type": "user", "user_id": "U2"}]}]},
                {"type": "section", "text": {"type": "mrkdwn", "text": "extra <https://blocks.dev/x>"}}]
        }));
        let r = &m.record;
        assert_eq!(r.meta.edited.as_ref().unwrap().as_str(), "101.000000");
        assert_eq!(r.meta.reaction_count, 3);
        assert!(r.meta.has_reactions && r.meta.has_attachments && !r.meta.has_files);
        assert_eq!(r.meta.mention_count, 3);
        let urls: Vec<_> = r.links.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://github.com/a/b/pull/1",
                "https://www.example.com",
                "https://docs.rs",
                "https://blocks.dev/x"
            ]
        );
        assert_eq!(r.links[1].domain, "example.com");
        assert_eq!(r.links[3].source, LinkSource::Block);
        assert_eq!(r.meta.link_count, 4);
        let c = r.content.as_ref().unwrap();
        assert!(c.text.starts_with("see PR (https://github.com/a/b/pull/1)"));
        assert!(c.text.contains("Fix it") && c.text.contains("extra https://blocks.dev/x"));
        assert!(c.attributes.has_links);
        assert_eq!(c.attributes.reaction_count, 3);
    }

    #[test]
    fn subtypes_and_threads() {
        let join = msg(
            json!({"type":"message","subtype":"channel_join","user":"U1","ts":"1.0","text":"<@U1> has joined the channel"}),
        );
        assert!(join.record.content.is_none());
        assert_eq!(join.handling, SubtypeHandling::MetadataOnly);

        let bot = msg(
            json!({"type":"message","subtype":"bot_message","bot_id":"B1","ts":"2.0","text":"",
            "attachments":[{"fallback":"Build #3 failed"}]}),
        );
        assert_eq!(bot.record.content.unwrap().text, "Build #3 failed");
        assert_eq!(bot.record.meta.bot_id.as_deref(), Some("B1"));

        let reply =
            msg(json!({"type":"message","user":"U2","ts":"3.5","thread_ts":"3.0","text":"me too"}));
        assert!(reply.record.meta.is_reply());
        assert_eq!(reply.participants.len(), 1);
        assert!(reply.record.content.unwrap().attributes.is_reply);

        let parent = msg(
            json!({"type":"message","user":"U1","ts":"3.0","thread_ts":"3.0","reply_count":2,
            "reply_users":["U2","U3"],"latest_reply":"3.6","text":"q?"}),
        );
        assert!(parent.record.meta.is_thread_parent());
        assert_eq!(parent.participants.len(), 2);

        let old_file = msg(
            json!({"type":"message","subtype":"file_share","user":"U1","ts":"4.0",
            "text":"<@U1|ann> uploaded a file: <https://x.slack.com/files/ann/F1/plot.png|plot>",
            "file":{"id":"F1","name":"plot.png","title":"plot","filetype":"png","size":10}}),
        );
        assert!(old_file.record.meta.has_files);
        assert_eq!(old_file.record.files[0].id, "F1");

        let skipped = process_message(
            &ctx(),
            &json!({"ts":"5.0","subtype":"weird_new","text":"x"}),
            &NameBook::default(),
            UnknownSubtype::Skip,
        )
        .unwrap();
        assert!(matches!(skipped, Processed::Skipped { .. }));
    }

    #[test]
    fn bad_input_names_the_field() {
        let n = NameBook::default();
        let e =
            process_message(&ctx(), &json!({"text":"x"}), &n, UnknownSubtype::Skip).unwrap_err();
        assert!(e.to_string().contains("`ts`"), "{e}");
        let e = process_message(&ctx(), &json!({"ts":"x1"}), &n, UnknownSubtype::Skip).unwrap_err();
        assert!(e.to_string().contains("ts"), "{e}");
        let e = process_message(
            &ctx(),
            &json!({"ts":"1.0","reactions":"no"}),
            &n,
            UnknownSubtype::Skip,
        )
        .unwrap_err();
        assert!(e.to_string().contains("reactions"), "{e}");
        let big = "a".repeat(MAX_TEXT_BYTES + 1);
        let e = process_message(
            &ctx(),
            &json!({"ts":"1.0","text":big}),
            &n,
            UnknownSubtype::Skip,
        )
        .unwrap_err();
        assert!(e.to_string().contains("bytes"), "{e}");
        assert!(process_message(&ctx(), &json!([1]), &n, UnknownSubtype::Skip).is_err());
    }
}
