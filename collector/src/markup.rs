//! Slack's message markup: `<@U…>` user mentions, `<#C…|name>` channel mentions, `<!here>`
//! special mentions, `<!subteam^S…>` group mentions and `<https://…|label>` links.
//!
//! [`scan`] finds mentions and links; [`render`] turns markup into the plain text that is
//! indexed (names instead of ids, labels next to URLs, HTML entities decoded).

use std::collections::HashMap;

/// What one `<…>` token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// `<@U123>` or `<@U123|name>`.
    User { id: &'a str, label: Option<&'a str> },
    /// `<#C123|general>`.
    Channel { id: &'a str, label: Option<&'a str> },
    /// `<!here>`, `<!channel>`, `<!everyone>`, `<!subteam^S1|@team>`, `<!date^…|fallback>`.
    Special {
        name: &'a str,
        label: Option<&'a str>,
    },
    /// `<https://…>` or `<https://…|label>` (and `mailto:` and other schemes).
    Link {
        url: &'a str,
        label: Option<&'a str>,
    },
}

impl Token<'_> {
    /// A mention target identifying what is mentioned, for counting distinct mentions.
    pub(crate) fn mention_target(&self) -> Option<String> {
        match self {
            Token::User { id, .. } => Some(format!("@{id}")),
            Token::Channel { id, .. } => Some(format!("#{id}")),
            Token::Special { name, .. } => {
                let name: &str = name.split('|').next().unwrap_or(name);
                if matches!(name, "here" | "channel" | "everyone" | "group")
                    || name.starts_with("subteam^")
                {
                    Some(format!("!{name}"))
                } else {
                    None
                }
            }
            Token::Link { .. } => None,
        }
    }
}

fn split_label(inner: &str) -> (&str, Option<&str>) {
    match inner.split_once('|') {
        Some((a, b)) => (a, Some(b)),
        None => (inner, None),
    }
}

fn classify(inner: &str) -> Token<'_> {
    let (target, label) = split_label(inner);
    if let Some(id) = target.strip_prefix('@') {
        Token::User { id, label }
    } else if let Some(id) = target.strip_prefix('#') {
        Token::Channel { id, label }
    } else if let Some(name) = target.strip_prefix('!') {
        Token::Special { name, label }
    } else {
        Token::Link { url: target, label }
    }
}

enum Piece<'a> {
    Text(&'a str),
    Token(Token<'a>),
}

/// Calls `f` for every text piece and `<…>` token in `text`, in order.
fn walk<'a>(text: &'a str, mut f: impl FnMut(Piece<'a>)) {
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let (before, after) = rest.split_at(open);
        f(Piece::Text(before));
        match after[1..].find('>') {
            Some(close) if !after[1..1 + close].contains('<') && close > 0 => {
                f(Piece::Token(classify(&after[1..1 + close])));
                rest = &after[close + 2..];
            }
            _ => {
                f(Piece::Text("<"));
                rest = &after[1..];
            }
        }
    }
    f(Piece::Text(rest));
}

/// Every `<…>` token in `text`, in order.
pub(crate) fn scan(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    walk(text, |p| {
        if let Piece::Token(t) = p {
            out.push(t)
        }
    });
    out
}

/// Decodes the three entities Slack escapes (`&amp;`, `&lt;`, `&gt;`).
pub(crate) fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The names mentions are rendered with: user id → name, channel id → name.
#[derive(Debug, Default, Clone)]
pub struct NameBook {
    /// User id → the name to show.
    pub users: HashMap<String, String>,
    /// Channel id → its name.
    pub channels: HashMap<String, String>,
    /// The channels that are not public (private channels, IMs, MPIMs): a mention of one is
    /// stored without its name, since the mentioning message may be read by non-members.
    pub private: std::collections::HashSet<String>,
}

/// What a mention of a private channel is stored as.
pub(crate) const PRIVATE_CHANNEL: &str = "private-channel";

impl NameBook {
    /// Learns a channel's name, and whether mentions of it must hide the name.
    pub(crate) fn add_channel(&mut self, c: &chatvault_core::Channel) {
        self.channels.insert(c.id.to_string(), c.name.clone());
        if c.kind.is_public() {
            self.private.remove(c.id.as_str());
        } else {
            self.private.insert(c.id.to_string());
        }
    }

    /// Whether a mention of channel `id` must not show its name: a channel known to be
    /// private, or an unknown one whose id says it is (`G…` private groups, `D…` IMs).
    fn hides(&self, id: &str) -> bool {
        self.private.contains(id)
            || (!self.channels.contains_key(id) && (id.starts_with('G') || id.starts_with('D')))
    }
}

/// Renders Slack markup as plain, searchable text: `<@U1>` → `@ann`, `<#C1|general>` →
/// `#general`, `<!here>` → `@here`, `<https://x|docs>` → `docs (https://x)`, entities decoded.
pub(crate) fn render(text: &str, names: &NameBook) -> String {
    let mut out = String::with_capacity(text.len());
    walk(text, |piece| match piece {
        Piece::Text(t) => out.push_str(&unescape(t)),
        Piece::Token(tok) => match tok {
            Token::User { id, label } => {
                out.push('@');
                match (names.users.get(id), label) {
                    (Some(n), _) => out.push_str(n),
                    (None, Some(l)) => out.push_str(&unescape(l)),
                    (None, None) => out.push_str(id),
                }
            }
            Token::Channel { id, .. } if names.hides(id) => {
                out.push('#');
                out.push_str(PRIVATE_CHANNEL);
            }
            Token::Channel { id, label } => {
                out.push('#');
                match (label, names.channels.get(id)) {
                    (Some(l), _) if !l.is_empty() => out.push_str(&unescape(l)),
                    (_, Some(n)) => out.push_str(n),
                    _ => out.push_str(id),
                }
            }
            Token::Special { name, label } => match label {
                Some(l) => out.push_str(&unescape(l)),
                None => {
                    out.push('@');
                    out.push_str(name.split('^').next().unwrap_or(name));
                }
            },
            Token::Link { url, label } => match label {
                Some(l) if !l.is_empty() && l != url => {
                    out.push_str(&unescape(l));
                    out.push_str(" (");
                    out.push_str(&unescape(url));
                    out.push(')');
                }
                _ => out.push_str(&unescape(url)),
            },
        },
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_mentions_and_links() {
        let toks = scan("hi <@U1> see <#C2|general> <!here> <https://a.com/x?y=1&amp;z|docs> <mailto:a@b.c|mail> a < b");
        assert_eq!(toks.len(), 5);
        assert_eq!(
            toks[0],
            Token::User {
                id: "U1",
                label: None
            }
        );
        assert_eq!(
            toks[3],
            Token::Link {
                url: "https://a.com/x?y=1&amp;z",
                label: Some("docs")
            }
        );
        let targets: Vec<_> = toks.iter().filter_map(|t| t.mention_target()).collect();
        assert_eq!(targets, ["@U1", "#C2", "!here"]);
    }

    #[test]
    fn renders_plain_text() {
        let mut names = NameBook::default();
        names.users.insert("U1".into(), "ann".into());
        let s = render(
            "hi <@U1>, <@U9> in <#C2|general>: <!channel> &lt;3 <https://a.com|docs> <https://b.com>",
            &names,
        );
        assert_eq!(
            s,
            "hi @ann, @U9 in #general: @channel <3 docs (https://a.com) https://b.com"
        );
        assert_eq!(render("a <b", &names), "a <b");
        // A private channel's name never reaches the stored text (non-members may read it).
        let mut secret = chatvault_core::Channel::new(
            chatvault_core::ChannelId::new("C7").unwrap(),
            "secret-plans",
            chatvault_core::ChannelKind::Private,
        );
        names.add_channel(&secret);
        assert_eq!(
            render(
                "see <#C7|secret-plans> and <#G8|other-secret> and <#C2>",
                &names
            ),
            "see #private-channel and #private-channel and #C2"
        );
        secret.kind = chatvault_core::ChannelKind::Public;
        names.add_channel(&secret);
        assert_eq!(render("<#C7>", &names), "#secret-plans", "made public");
        assert_eq!(render("<>", &names), "<>");
    }
}
