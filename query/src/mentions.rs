//! People named plainly in a question (`what did Neeraj say about the venue`): their messages are
//! searched too and boosted in the fused ranking, because in chat who said something is often
//! what the question is about, and a message's text rarely names its own author.

use chatvault_core::{Channel, ChannelId, User, UserId};

/// Words too common to be taken as a name, even when someone is called that.
const NOT_NAMES: &[&str] = &[
    "all", "and", "any", "are", "can", "data", "did", "for", "from", "has", "her", "him", "his",
    "how", "its", "may", "new", "not", "now", "one", "our", "out", "say", "see", "she", "the",
    "they", "this", "was", "what", "when", "who", "why", "will", "with", "you",
];

/// The people a query names, and the query without their names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Mentions {
    /// Who is named, in workspace order, each once.
    pub(crate) users: Vec<UserId>,
    /// The query with the name words taken out (the words to match their messages by).
    pub(crate) rest: String,
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '.' && c != '_' && c != '-')
        .map(|w| w.trim_matches(['.', '-', '_']).to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The ways a person may be named: their handle, display name, real name, and the first word of
/// the real or display name (at least 3 letters, not a common word).
fn names_of(u: &User) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut add = |n: Vec<String>| {
        let single_common = n.len() == 1 && (n[0].len() < 3 || NOT_NAMES.contains(&n[0].as_str()));
        if !n.is_empty() && !single_common && !out.contains(&n) {
            out.push(n);
        }
    };
    add(words(&u.name));
    for full in [u.real_name.as_deref(), u.display_name.as_deref()]
        .into_iter()
        .flatten()
    {
        let w = words(full);
        if let Some(first) = w.first() {
            add(vec![first.clone()]);
        }
        add(w);
    }
    out
}

/// Finds the people `query` names among `users` (bots and deleted users left out).
pub(crate) fn find_mentions(query: &str, users: &[User]) -> Mentions {
    let q = words(query);
    let mut used = vec![false; q.len()];
    let mut found = Vec::new();
    for u in users.iter().filter(|u| !u.is_bot && !u.is_deleted) {
        let mut hit = false;
        for name in names_of(u) {
            for start in 0..q.len().saturating_sub(name.len() - 1) {
                if q[start..start + name.len()] == name[..] {
                    used[start..start + name.len()]
                        .iter_mut()
                        .for_each(|x| *x = true);
                    hit = true;
                }
            }
        }
        if hit && !found.contains(&u.id) {
            found.push(u.id.clone());
        }
    }
    let rest = unused_words(&q, &used);
    Mentions { users: found, rest }
}

/// The channels a query names, and the query without their names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChannelMentions {
    /// The channels named, in the order given, each once.
    pub(crate) channels: Vec<ChannelId>,
    /// The query with the naming words taken out.
    pub(crate) rest: String,
}

/// Finds the channels `query` names among `channels` (the ones the caller may read): `#name`,
/// or the name's words followed by `channel` (`the design thinking channel`, `in the tools
/// channel`). A bare word that happens to be a channel's name (`tools`, `general`) is a topic,
/// not a channel.
pub(crate) fn find_channel_mentions(query: &str, channels: &[&Channel]) -> ChannelMentions {
    let hashed: Vec<String> = query
        .split_whitespace()
        .filter_map(|w| w.strip_prefix('#'))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let q = words(query);
    let mut used = vec![false; q.len()];
    let mut found = Vec::new();
    for c in channels {
        let name = c.name.to_lowercase();
        let mut hit = hashed.contains(&name);
        let parts = words(&name.replace(['-', '_'], " "));
        if !parts.is_empty() {
            for start in 0..q.len().saturating_sub(parts.len() - 1) {
                let end = start + parts.len();
                let whole = q[start..end] == parts[..];
                let joined = q[start] == name;
                if joined && hashed.contains(&name) {
                    used[start] = true;
                } else if whole && q.get(end).is_some_and(|w| w == "channel") {
                    used[start..=end].iter_mut().for_each(|x| *x = true);
                    hit = true;
                }
            }
        }
        if hit && !found.contains(&c.id) {
            found.push(c.id.clone());
        }
    }
    let rest = unused_words(&q, &used);
    ChannelMentions {
        channels: found,
        rest,
    }
}

/// The query's words not taken by a name, in order, joined by spaces.
fn unused_words(words: &[String], used: &[bool]) -> String {
    words
        .iter()
        .zip(used)
        .filter(|(_, u)| !**u)
        .map(|(w, _)| w.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, name: &str, real: Option<&str>) -> User {
        let mut u = User::new(UserId::new(id).expect("id"), name);
        u.real_name = real.map(str::to_string);
        u
    }

    fn people() -> Vec<User> {
        let mut bot = user("UBOT", "neerajbot", Some("Neeraj Bot"));
        bot.is_bot = true;
        vec![
            user("U1", "neerajt", Some("Neeraj Tandon")),
            user("U2", "micahstubbs", Some("Micah Stubbs")),
            user("U3", "may", Some("May Lee")),
            user("U4", "jkim", Some("J. Kim")),
            bot,
        ]
    }

    #[test]
    fn a_first_name_a_full_name_or_a_handle() {
        let m = find_mentions("what did Neeraj say about the venue?", &people());
        assert_eq!(m.users, vec![UserId::new("U1").expect("id")]);
        assert_eq!(m.rest, "what did say about the venue");
        let m = find_mentions("micah stubbs and @neerajt on maps", &people());
        assert_eq!(m.users.len(), 2);
        assert_eq!(m.rest, "and on maps");
    }

    #[test]
    fn common_words_and_bots_are_not_people() {
        // "may" is someone's handle and first name, but also a month
        let m = find_mentions("meetups in may", &people());
        assert!(m.users.is_empty(), "{m:?}");
        // her full name is still hers
        let m = find_mentions("what did may lee say", &people());
        assert_eq!(m.users, vec![UserId::new("U3").expect("id")]);
        assert!(find_mentions("neerajbot alerts", &people())
            .users
            .is_empty());
    }

    fn channels() -> Vec<Channel> {
        use chatvault_core::ChannelKind;
        let c = |id: &str, name: &str| {
            Channel::new(ChannelId::new(id).expect("id"), name, ChannelKind::Public)
        };
        vec![
            c("C1", "tools"),
            c("C2", "design-thinking"),
            c("C3", "general"),
        ]
    }

    #[test]
    fn a_channel_is_named_with_a_hash_or_the_word_channel() {
        let all = channels();
        let refs: Vec<&Channel> = all.iter().collect();
        let m = find_channel_mentions("what is new in #tools?", &refs);
        assert_eq!(m.channels, vec![ChannelId::new("C1").expect("id")]);
        assert_eq!(m.rest, "what is new in");
        let m = find_channel_mentions("slides in the design thinking channel", &refs);
        assert_eq!(m.channels, vec![ChannelId::new("C2").expect("id")]);
        assert_eq!(m.rest, "slides in the");
        // A channel's name as a plain word is a topic.
        let m = find_channel_mentions("open source tools for maps", &refs);
        assert!(m.channels.is_empty(), "{m:?}");
        assert_eq!(m.rest, "open source tools for maps");
        // Only the channels given (the ones the caller may read) can be named.
        let m = find_channel_mentions("#general and #secret-plans", &refs[..2]);
        assert!(m.channels.is_empty(), "{m:?}");
    }

    #[test]
    fn a_name_with_initials() {
        let m = find_mentions("why couldn't J. Kim come", &people());
        assert_eq!(m.users, vec![UserId::new("U4").expect("id")]);
    }
}
