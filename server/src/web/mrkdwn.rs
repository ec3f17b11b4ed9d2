//! Slack's message formatting ("mrkdwn") as HTML.
//!
//! The stored text is what the collector rendered from Slack's markup: mentions already carry
//! names (`@ann`, `#general`), links read `label (https://…)` or a bare URL, and entities are
//! decoded. What is left is formatting: `*bold*`, `_italic_`, `~strike~`, `` `code` ``,
//! fenced code blocks, `>` quotes, `:emoji:` shortcodes and URLs. Every piece of text goes
//! through maud's escaping; only `http(s)` and `mailto` URLs become links.

use std::collections::HashMap;

use maud::Render;

/// What the renderer links to: the channels the viewer may open (name → page URL).
#[derive(Debug, Default)]
pub(crate) struct Links {
    pub(crate) channels: HashMap<String, String>,
}

/// A message's text as HTML, written straight into the page being built (no intermediate
/// strings per piece: a day page renders hundreds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mrkdwn<'a> {
    text: &'a str,
    links: &'a Links,
}

/// A message's text, to interpolate into a page.
pub(crate) fn mrkdwn<'a>(text: &'a str, links: &'a Links) -> Mrkdwn<'a> {
    Mrkdwn { text, links }
}

impl Render for Mrkdwn<'_> {
    fn render_to(&self, out: &mut String) {
        out.reserve(self.text.len() + self.text.len() / 4);
        let mut rest = self.text;
        while let Some(open) = rest.find("```") {
            let after = &rest[open + 3..];
            let Some(close) = after.find("```") else {
                break;
            };
            lines(&rest[..open], self.links, out);
            out.push_str("<pre class=\"code\"><code>");
            escape(after[..close].trim_matches('\n'), out);
            out.push_str("</code></pre>");
            rest = &after[close + 3..];
        }
        lines(rest, self.links, out);
    }
}

/// Renders a message's text.
#[cfg(test)]
fn render(text: &str, links: &Links) -> maud::Markup {
    mrkdwn(text, links).render()
}

/// Escapes `s` as maud escapes what pages interpolate.
fn escape(s: &str, out: &mut String) {
    s.render_to(out);
}

/// Lines outside code blocks: runs of `>` lines become quotes, the others keep their breaks.
fn lines(text: &str, links: &Links, out: &mut String) {
    let text = text.trim_matches('\n');
    if text.is_empty() {
        return;
    }
    let mut quote: Vec<&str> = Vec::new();
    let mut first = true;
    let flush = |quote: &mut Vec<&str>, out: &mut String| {
        if quote.is_empty() {
            return;
        }
        out.push_str("<blockquote>");
        for (i, q) in quote.iter().enumerate() {
            if i > 0 {
                out.push_str("<br>");
            }
            inline(q, links, out);
        }
        out.push_str("</blockquote>");
        quote.clear();
    };
    for line in text.split('\n') {
        if let Some(q) = line.strip_prefix('>') {
            quote.push(q.strip_prefix(' ').unwrap_or(q));
            first = true;
            continue;
        }
        let had_quote = !quote.is_empty();
        flush(&mut quote, out);
        if !first && !had_quote {
            out.push_str("<br>");
        }
        inline(line, links, out);
        first = false;
    }
    flush(&mut quote, out);
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric()
}

/// Bytes at which something may start: everything else is plain text, skipped at once.
fn may_start(b: u8) -> bool {
    matches!(
        b,
        b'`' | b'*' | b'_' | b'~' | b'h' | b'H' | b'm' | b'M' | b':' | b'@' | b'#'
    )
}

/// One line: code spans, URLs, emoji, mentions and the three emphases (nested as Slack nests).
fn inline(s: &str, links: &Links, out: &mut String) {
    let mut plain_from = 0;
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < s.len() {
        let c = bytes[i];
        if !may_start(c) {
            i += 1;
            continue;
        }
        let at_start = s[..i].chars().next_back().is_none_or(|p| !is_word(p));
        // Where the piece starting at `i` ends, once written out.
        let piece = |out: &mut String| -> Option<usize> {
            match c {
                b'`' => {
                    let len = s[i + 1..].find('`').filter(|l| *l > 0)?;
                    flush_plain(s, plain_from, i, out);
                    out.push_str("<code>");
                    escape(&s[i + 1..i + 1 + len], out);
                    out.push_str("</code>");
                    Some(i + len + 2)
                }
                b'*' | b'_' | b'~' if at_start => {
                    let end = closing(s, i, c)?;
                    let tag = match c {
                        b'*' => "strong",
                        b'_' => "em",
                        _ => "del",
                    };
                    flush_plain(s, plain_from, i, out);
                    out.push('<');
                    out.push_str(tag);
                    out.push('>');
                    inline(&s[i + 1..end], links, out);
                    out.push_str("</");
                    out.push_str(tag);
                    out.push('>');
                    Some(end + 1)
                }
                b'h' | b'H' | b'm' | b'M' if at_start => {
                    let end = url_end(s, i)?;
                    let url = &s[i..end];
                    flush_plain(s, plain_from, i, out);
                    out.push_str("<a href=\"");
                    escape(url, out);
                    out.push_str("\" rel=\"nofollow noopener noreferrer\">");
                    escape(url, out);
                    out.push_str("</a>");
                    Some(end)
                }
                b':' => {
                    let (emoji, end) = emoji_at(s, i)?;
                    flush_plain(s, plain_from, i, out);
                    out.push_str("<span class=\"emoji\" title=\"");
                    escape(&s[i..end], out);
                    out.push_str("\">");
                    out.push_str(&emoji);
                    out.push_str("</span>");
                    Some(end)
                }
                b'@' if at_start => {
                    let end = name_end(s, i + 1);
                    if end == i + 1 {
                        return None;
                    }
                    flush_plain(s, plain_from, i, out);
                    out.push_str("<span class=\"mention\">");
                    escape(&s[i..end], out);
                    out.push_str("</span>");
                    Some(end)
                }
                b'#' if at_start => {
                    let end = name_end(s, i + 1);
                    let url = links.channels.get(&s[i + 1..end].to_lowercase())?;
                    flush_plain(s, plain_from, i, out);
                    out.push_str("<a class=\"mention\" href=\"");
                    escape(url, out);
                    out.push_str("\">");
                    escape(&s[i..end], out);
                    out.push_str("</a>");
                    Some(end)
                }
                _ => None,
            }
        };
        match piece(out) {
            Some(next) => {
                i = next;
                plain_from = next;
            }
            None => i += 1,
        }
    }
    flush_plain(s, plain_from, s.len(), out);
}

/// Writes the plain text between the last piece and the next one.
fn flush_plain(s: &str, from: usize, to: usize, out: &mut String) {
    if from < to {
        escape(&s[from..to], out);
    }
}

/// Where the emphasis opened by `delim` at `open` closes on this line: the next `delim` that
/// follows a non-space and is not followed by a word character, with something between.
fn closing(s: &str, open: usize, delim: u8) -> Option<usize> {
    let body = &s[open + 1..];
    if body.starts_with(char::is_whitespace) || body.starts_with(delim as char) {
        return None;
    }
    let mut from = 0;
    while let Some(rel) = body[from..].find(delim as char) {
        let at = from + rel;
        let before_ok = body[..at]
            .chars()
            .next_back()
            .is_some_and(|p| !p.is_whitespace());
        let after_ok = body[at + 1..].chars().next().is_none_or(|n| !is_word(n));
        if at > 0 && before_ok && after_ok {
            return Some(open + 1 + at);
        }
        from = at + 1;
    }
    None
}

/// The end of a URL starting at `start` (`http://`, `https://` or `mailto:`): up to whitespace,
/// without trailing punctuation or an unbalanced closing parenthesis.
fn url_end(s: &str, start: usize) -> Option<usize> {
    let rest = &s[start..];
    let scheme = ["https://", "http://", "mailto:"].into_iter().find(|p| {
        rest.len() > p.len()
            && rest
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
    })?;
    let mut end = rest
        .find(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"')
        .unwrap_or(rest.len());
    loop {
        let t = &rest[..end];
        let Some(last) = t.chars().next_back() else {
            break;
        };
        let unbalanced = last == ')' && t.matches('(').count() < t.matches(')').count();
        if matches!(
            last,
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' | '_' | '~'
        ) || unbalanced
        {
            end -= last.len_utf8();
        } else {
            break;
        }
    }
    (end > scheme.len()).then_some(start + end)
}

/// A `:shortcode:` (with an optional `:skin-tone-n:`) at `start` that names an emoji.
fn emoji_at(s: &str, start: usize) -> Option<(String, usize)> {
    let rest = &s[start + 1..];
    let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || "_+-'".contains(c)))?;
    if len == 0 || !rest[len..].starts_with(':') {
        return None;
    }
    let name = &rest[..len];
    let emoji = emojis::get_by_shortcode(name).or_else(|| slack_alias(name))?;
    let mut end = start + 1 + len + 1;
    let mut text = emoji.as_str().to_string();
    if let Some(tone) = s[end..]
        .strip_prefix(":skin-tone-")
        .and_then(|t| t.get(..2))
        .and_then(|t| t.strip_suffix(':'))
        .and_then(|d| d.parse::<u8>().ok())
    {
        let tone = match tone {
            2 => Some(emojis::SkinTone::Light),
            3 => Some(emojis::SkinTone::MediumLight),
            4 => Some(emojis::SkinTone::Medium),
            5 => Some(emojis::SkinTone::MediumDark),
            6 => Some(emojis::SkinTone::Dark),
            _ => None,
        };
        if let Some(toned) = tone.and_then(|t| emoji.with_skin_tone(t)) {
            text = toned.as_str().to_string();
            end += ":skin-tone-n:".len();
        }
    }
    Some((text, end))
}

/// Slack names that GitHub's gemoji set spells differently.
fn slack_alias(name: &str) -> Option<&'static emojis::Emoji> {
    let gemoji = match name {
        "simple_smile" => "slightly_smiling_face",
        "thumbsup_all" => "+1",
        "white_check_mark" => "heavy_check_mark",
        "slightly_smiling_face" => "slightly_smiling_face",
        _ => return None,
    };
    emojis::get_by_shortcode(gemoji)
}

/// The emoji of a reaction name (`+1`, `heart`, `thumbsup::skin-tone-2`), or `None`.
pub(crate) fn reaction_emoji(name: &str) -> Option<String> {
    let text = format!(":{name}:");
    let (emoji, end) = emoji_at(&text, 0)?;
    (end == text.len() || text[end..] == *":").then_some(emoji)
}

/// The end of a `@name` or `#channel` word.
fn name_end(s: &str, from: usize) -> usize {
    s[from..]
        .find(|c: char| !(c.is_alphanumeric() || "._-".contains(c)))
        .map_or(s.len(), |n| from + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        let mut links = Links::default();
        links
            .channels
            .insert("general".into(), "/w/T1/c/general".into());
        render(s, &links).into_string()
    }

    #[test]
    fn formats_and_escapes() {
        assert_eq!(
            r("*bold* _it_ ~gone~ `a<b`"),
            "<strong>bold</strong> <em>it</em> <del>gone</del> <code>a&lt;b</code>"
        );
        assert_eq!(
            r("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(r("2*3*4 snake_case_name"), "2*3*4 snake_case_name");
        assert_eq!(r("*not closed"), "*not closed");
        assert_eq!(r("*_both_*"), "<strong><em>both</em></strong>");
    }

    #[test]
    fn blocks_quotes_and_breaks() {
        assert_eq!(
            r("see:\n```let x = 1 < 2;\n*no*```\nafter"),
            "see:<pre class=\"code\"><code>let x = 1 &lt; 2;\n*no*</code></pre>after"
        );
        assert_eq!(
            r("> quoted\n> more\nreply\nline"),
            "<blockquote>quoted<br>more</blockquote>reply<br>line"
        );
    }

    #[test]
    fn links_mentions_and_emoji() {
        assert_eq!(
            r("docs (https://a.com/x?y=1&z=2)."),
            "docs (<a href=\"https://a.com/x?y=1&amp;z=2\" rel=\"nofollow noopener noreferrer\">https://a.com/x?y=1&amp;z=2</a>)."
        );
        assert_eq!(r("javascript:alert(1)"), "javascript:alert(1)");
        assert_eq!(r("héllo mé ça"), "héllo mé ça");
        assert_eq!(
            r("hi @ann in #general and #secret"),
            "hi <span class=\"mention\">@ann</span> in <a class=\"mention\" href=\"/w/T1/c/general\">#general</a> and #secret"
        );
        assert_eq!(
            r(":smile: :+1::skin-tone-3: :nope: 10:30:00"),
            "<span class=\"emoji\" title=\":smile:\">😄</span> <span class=\"emoji\" title=\":+1::skin-tone-3:\">👍🏼</span> :nope: 10:30:00"
        );
        assert_eq!(reaction_emoji("heart").as_deref(), Some("❤️"));
        assert_eq!(reaction_emoji("custom-party"), None);
    }
}
