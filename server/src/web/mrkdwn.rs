//! Slack's message formatting ("mrkdwn") as HTML.
//!
//! The stored text is what the collector rendered from Slack's markup: mentions already carry
//! names (`@ann`, `#general`), links read `label (https://…)` or a bare URL, and entities are
//! decoded. What is left is formatting: `*bold*`, `_italic_`, `~strike~`, `` `code` ``,
//! fenced code blocks, `>` quotes, `:emoji:` shortcodes and URLs. Every piece of text goes
//! through maud's escaping; only `http(s)` and `mailto` URLs become links.

use std::collections::HashMap;

use maud::{html, Markup, PreEscaped};

/// What the renderer links to: the channels the viewer may open (name → page URL).
#[derive(Debug, Default)]
pub(crate) struct Links {
    pub(crate) channels: HashMap<String, String>,
}

/// Renders a message's text.
pub(crate) fn render(text: &str, links: &Links) -> Markup {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let Some(close) = after.find("```") else {
            break;
        };
        lines(&rest[..open], links, &mut out);
        let code = after[..close].trim_matches('\n');
        out.push_str(&html! { pre.code { code { (code) } } }.into_string());
        rest = &after[close + 3..];
    }
    lines(rest, links, &mut out);
    PreEscaped(out)
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
            out.push_str(&inline(q, links).into_string());
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
        out.push_str(&inline(line, links).into_string());
        first = false;
    }
    flush(&mut quote, out);
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric()
}

/// One line: code spans, URLs, emoji, mentions and the three emphases (nested as Slack nests).
fn inline(s: &str, links: &Links) -> Markup {
    let mut out = String::with_capacity(s.len() + 16);
    let mut plain_from = 0;
    let mut i = 0;
    let bytes = s.as_bytes();
    let prev_char = |i: usize| s[..i].chars().next_back();
    while i < s.len() {
        let c = bytes[i];
        let at_start = prev_char(i).is_none_or(|p| !is_word(p));
        let mut emitted: Option<(Markup, usize)> = None;
        match c {
            b'`' => {
                if let Some(len) = s[i + 1..].find('`').filter(|l| *l > 0) {
                    let code = &s[i + 1..i + 1 + len];
                    emitted = Some((html! { code { (code) } }, i + len + 2));
                }
            }
            b'*' | b'_' | b'~' if at_start => {
                if let Some(end) = closing(s, i, c) {
                    let inner = inline(&s[i + 1..end], links);
                    let m = match c {
                        b'*' => html! { strong { (inner) } },
                        b'_' => html! { em { (inner) } },
                        _ => html! { del { (inner) } },
                    };
                    emitted = Some((m, end + 1));
                }
            }
            b'h' | b'm' if at_start => {
                if let Some(end) = url_end(s, i) {
                    let url = &s[i..end];
                    emitted = Some((
                        html! { a href=(url) rel="nofollow noopener noreferrer" { (url) } },
                        end,
                    ));
                }
            }
            b':' => {
                if let Some((emoji, end)) = emoji_at(s, i) {
                    let name = &s[i..end];
                    emitted = Some((html! { span.emoji title=(name) { (emoji) } }, end));
                }
            }
            b'@' if at_start => {
                let end = name_end(s, i + 1);
                if end > i + 1 {
                    emitted = Some((html! { span.mention { (&s[i..end]) } }, end));
                }
            }
            b'#' if at_start => {
                let end = name_end(s, i + 1);
                if let Some(url) = links.channels.get(&s[i + 1..end].to_lowercase()) {
                    emitted = Some((html! { a.mention href=(url) { (&s[i..end]) } }, end));
                }
            }
            _ => {}
        }
        match emitted {
            Some((m, next)) => {
                out.push_str(&html! { (&s[plain_from..i]) }.into_string());
                out.push_str(&m.into_string());
                i = next;
                plain_from = next;
            }
            None => {
                i += s[i..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    out.push_str(&html! { (&s[plain_from..]) }.into_string());
    PreEscaped(out)
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
