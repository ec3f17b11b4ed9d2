//! What each Slack message subtype becomes: searchable content, metadata only, or nothing.
//!
//! The table is documented in the crate README; [`handling`] is its single source.

/// How a message of some subtype is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubtypeHandling {
    /// Metadata row **and** content (text + attributes) for the content store.
    Content,
    /// Metadata row only: no text is indexed (joins, topic changes, tombstones…).
    MetadataOnly,
    /// Not stored at all: the subtype is an event wrapper that never stands for a message of its
    /// own in an archive (`message_changed`, `message_deleted`, `message_replied`).
    Skipped,
}

/// Subtypes whose text people wrote (or a bot posted for people to read): the ones the metadata
/// store's activity aggregates count, so what is searchable and what counts as activity agree.
const CONTENT: &[&str] = chatvault_core::ACTIVITY_SUBTYPES;

/// Subtypes that record something happening to a conversation, not something said in it.
const METADATA_ONLY: &[&str] = &[
    "channel_join",
    "channel_leave",
    "channel_topic",
    "channel_purpose",
    "channel_name",
    "channel_archive",
    "channel_unarchive",
    "channel_convert_to_private",
    "channel_convert_to_public",
    "group_join",
    "group_leave",
    "group_topic",
    "group_purpose",
    "group_name",
    "group_archive",
    "group_unarchive",
    "bot_add",
    "bot_remove",
    "bot_enable",
    "bot_disable",
    "pinned_item",
    "unpinned_item",
    "reminder_add",
    "joiner_notification",
    "ekm_access_denied",
    "huddle_thread",
    "sh_room_created",
    "app_conversation_join",
    "app_conversation_leave",
    "tombstone",
];

/// Event wrappers: their payload is handled by the events source, never stored as a message.
const SKIPPED: &[&str] = &["message_changed", "message_deleted", "message_replied"];

/// How a message with this subtype (`None`: a plain message) is stored; `None` for a subtype
/// chatvault does not know.
pub fn handling(subtype: Option<&str>) -> Option<SubtypeHandling> {
    let Some(s) = subtype else {
        return Some(SubtypeHandling::Content);
    };
    if CONTENT.contains(&s) {
        Some(SubtypeHandling::Content)
    } else if METADATA_ONLY.contains(&s) {
        Some(SubtypeHandling::MetadataOnly)
    } else if SKIPPED.contains(&s) {
        Some(SubtypeHandling::Skipped)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        assert_eq!(handling(None), Some(SubtypeHandling::Content));
        assert_eq!(
            handling(Some("bot_message")),
            Some(SubtypeHandling::Content)
        );
        assert_eq!(
            handling(Some("channel_join")),
            Some(SubtypeHandling::MetadataOnly)
        );
        assert_eq!(
            handling(Some("tombstone")),
            Some(SubtypeHandling::MetadataOnly)
        );
        assert_eq!(
            handling(Some("message_changed")),
            Some(SubtypeHandling::Skipped)
        );
        assert_eq!(handling(Some("brand_new_subtype")), None);
        for s in CONTENT {
            assert!(!METADATA_ONLY.contains(s) && !SKIPPED.contains(s), "{s}");
        }
        for s in METADATA_ONLY {
            assert!(!SKIPPED.contains(s), "{s}");
        }
    }
}
