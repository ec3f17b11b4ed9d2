//! Slack markup → the words a person would search for, and the tokenizer that indexes them.
//!
//! Slack writes mentions, channel links and URLs as `<@U123|ann>`, `<#C1|general>`,
//! `<https://x.y|label>`, emoji as `:white_check_mark:`, and escapes `&`, `<`, `>`. Indexed raw,
//! `<@U123|ann>` would become the tokens `u123` and `ann` glued to punctuation noise; a person
//! searches for `ann`, `general`, `label`, `check`. The stored text stays exactly as written.

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};

/// The name the analyzer is registered under in every collection's index.
pub(crate) const ANALYZER: &str = "chatvault_slack";

/// Unicode word splitting (alphanumeric runs), lowercasing, accent folding; very long tokens
/// (base64 blobs, hashes) are dropped.
pub(crate) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// Rewrites Slack markup into plain searchable words.
pub(crate) fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(i) = rest.find(['<', ':', '&']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('<') {
            if let Some(end) = rest.find('>') {
                out.push(' ');
                angle(&rest[1..end], &mut out);
                out.push(' ');
                rest = &rest[end + 1..];
                continue;
            }
        } else if rest.starts_with(':') {
            if let Some(len) = emoji_len(&rest[1..]) {
                out.push(' ');
                // `white_check_mark` and `skin-tone-2`: the parts are the words
                out.extend(rest[1..1 + len].chars().map(|c| {
                    if c == '_' || c == '-' {
                        ' '
                    } else {
                        c
                    }
                }));
                out.push(' ');
                rest = &rest[len + 2..];
                continue;
            }
        } else {
            let entity = [("&amp;", '&'), ("&lt;", '<'), ("&gt;", '>')]
                .into_iter()
                .find(|(e, _)| rest.starts_with(e));
            if let Some((e, c)) = entity {
                out.push(c);
                rest = &rest[e.len()..];
                continue;
            }
        }
        let c = rest.chars().next().map_or(1, char::len_utf8);
        out.push_str(&rest[..c]);
        rest = &rest[c..];
    }
    out.push_str(rest);
    out
}

/// The length of an emoji name followed by `:` at the start of `s`, if it is one.
fn emoji_len(s: &str) -> Option<usize> {
    let end = s.find(':')?;
    let name = &s[..end];
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '\''));
    ok.then_some(end)
}

/// The inside of `<…>`.
fn angle(inner: &str, out: &mut String) {
    let (target, label) = match inner.split_once('|') {
        Some((t, l)) => (t, Some(l)),
        None => (inner, None),
    };
    if let Some(id) = target
        .strip_prefix('@')
        .or_else(|| target.strip_prefix('#'))
    {
        // a mention or channel link: its label is what people call it
        out.push_str(label.unwrap_or(id));
    } else if let Some(special) = target.strip_prefix('!') {
        // <!here>, <!subteam^S1|@devs>, <!date^…|fallback>
        match label {
            Some(l) => out.push_str(l),
            None => out.push_str(special.split('^').next().unwrap_or(special)),
        }
    } else {
        // a URL (or mailto:), optionally labelled: index the label and the address's words
        if let Some(l) = label {
            out.push_str(l);
            out.push(' ');
        }
        let url = target
            .split_once("://")
            .map_or(target, |(_, after)| after)
            .trim_start_matches("mailto:");
        out.push_str(url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut a = analyzer();
        let normalized = normalize(text);
        let mut stream = a.token_stream(&normalized);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    #[test]
    fn mentions_channels_links_and_emoji_become_words() {
        assert_eq!(words("hi <@U123|ann>!"), ["hi", "ann"]);
        assert_eq!(words("<@U123>"), ["u123"]);
        assert_eq!(words("see <#C1|general>"), ["see", "general"]);
        assert_eq!(
            words("<https://x.y/Deploy|Runbook> :white_check_mark:"),
            ["runbook", "x", "y", "deploy", "white", "check", "mark"]
        );
        assert_eq!(words("<!here> ship it :+1:"), ["here", "ship", "it", "1"]);
        assert_eq!(
            words("<!subteam^S1|@devs> R&amp;D &lt;3"),
            ["devs", "r", "d", "3"]
        );
        assert_eq!(words("Café DÉPLOY"), ["cafe", "deploy"]);
        // unbalanced markup and bare colons survive
        assert_eq!(
            words("a < b at 10:30 ok"),
            ["a", "b", "at", "10", "30", "ok"]
        );
    }
}
