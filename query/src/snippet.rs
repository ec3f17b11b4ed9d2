//! Snippets: a short window of a message's text around the query's words, with them marked.

use serde::{Deserialize, Serialize};

/// A short excerpt of a message with the matched words marked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snippet {
    /// The excerpt, plain (`…` where text was cut).
    pub text: String,
    /// The excerpt with each matched word wrapped in `**…**` (Markdown bold).
    pub marked: String,
    /// Byte ranges `[start, end)` of the matched words in `text`.
    pub matches: Vec<[usize; 2]>,
}

/// English function words that snippets neither mark nor steer by (Lucene's default English stop
/// set): "python library for interactive maps" should show where "maps" is, not where "for" is.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// The lowercased words of a query that snippets mark: its words less the stopwords, or all of
/// them when the query is nothing but stopwords ("to be or not to be").
pub(crate) fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    terms.sort();
    terms.dedup();
    if terms.iter().any(|t| !STOPWORDS.contains(&t.as_str())) {
        terms.retain(|t| !STOPWORDS.contains(&t.as_str()));
    }
    terms
}

/// Builds a snippet of at most about `max_chars` characters around the densest cluster of terms.
pub(crate) fn snippet(text: &str, terms: &[String], max_chars: usize) -> Snippet {
    // Words of the text with their byte ranges.
    let mut words: Vec<(usize, usize, bool)> = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            if start.is_none() {
                start = Some(i);
            }
        } else if let Some(s) = start.take() {
            words.push((s, i, false));
        }
    }
    if let Some(s) = start {
        words.push((s, text.len(), false));
    }
    for w in &mut words {
        let lower = text[w.0..w.1].to_lowercase();
        w.2 = terms.contains(&lower);
    }

    // The window: start at the first matched word of the best window of `max_chars` bytes.
    let window = max_chars.max(16);
    let mut best_start = 0usize;
    let mut best_count = 0usize;
    let matched: Vec<&(usize, usize, bool)> = words.iter().filter(|w| w.2).collect();
    for (i, m) in matched.iter().enumerate() {
        let count = matched[i..]
            .iter()
            .take_while(|n| n.1 <= m.0 + window)
            .count();
        if count > best_count {
            best_count = count;
            best_start = m.0;
        }
    }
    // Back off a little so the first match has some context before it.
    let mut from = best_start.saturating_sub(window / 5);
    while from > 0 && !text.is_char_boundary(from) {
        from -= 1;
    }
    // Start on a word boundary.
    if from > 0 {
        if let Some(w) = words.iter().find(|w| w.0 >= from) {
            from = w.0;
        }
    }
    let mut to = (from + window).min(text.len());
    while to < text.len() && !text.is_char_boundary(to) {
        to += 1;
    }
    if to < text.len() {
        // End on a word boundary when one is near.
        if let Some(w) = words.iter().rev().find(|w| w.1 <= to && w.0 > from) {
            to = w.1;
        }
    }

    let prefix = if from > 0 { "…" } else { "" };
    let suffix = if to < text.len() { "…" } else { "" };
    let body = text[from..to].replace('\n', " ");
    let plain = format!("{prefix}{body}{suffix}");
    let offset = prefix.len();
    let mut matches = Vec::new();
    let mut marked = String::with_capacity(plain.len() + 16);
    marked.push_str(prefix);
    let mut last = from;
    for w in words.iter().filter(|w| w.2 && w.0 >= from && w.1 <= to) {
        marked.push_str(&text[last..w.0].replace('\n', " "));
        marked.push_str("**");
        marked.push_str(&text[w.0..w.1]);
        marked.push_str("**");
        matches.push([w.0 - from + offset, w.1 - from + offset]);
        last = w.1;
    }
    marked.push_str(&text[last..to].replace('\n', " "));
    marked.push_str(suffix);
    Snippet {
        text: plain,
        marked,
        matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_matched_words_case_insensitively() {
        let s = snippet(
            "We use D3 for charts; d3 is great",
            &query_terms("d3 charts"),
            200,
        );
        assert_eq!(s.text, "We use D3 for charts; d3 is great");
        assert_eq!(s.marked, "We use **D3** for **charts**; **d3** is great");
        assert_eq!(s.matches.len(), 3);
        assert_eq!(&s.text[s.matches[0][0]..s.matches[0][1]], "D3");
    }

    #[test]
    fn long_text_is_cut_around_the_match() {
        let text = format!("{} needle here {}", "x ".repeat(200), "y ".repeat(200));
        let s = snippet(&text, &query_terms("needle"), 60);
        assert!(
            s.text.starts_with('…') && s.text.ends_with('…'),
            "{}",
            s.text
        );
        assert!(s.marked.contains("**needle**"));
        assert!(s.text.len() < 80);
        let m = s.matches[0];
        assert_eq!(&s.text[m[0]..m[1]], "needle");
    }

    #[test]
    fn stopwords_are_neither_marked_nor_steer_the_window() {
        // "for" and "the" cluster at the start; the content word is further on.
        let text = format!(
            "for the team, for the record, for the win. {} a survey of maps",
            "x ".repeat(60)
        );
        let s = snippet(&text, &query_terms("python library for the maps"), 50);
        assert!(s.marked.contains("**maps**"), "{}", s.marked);
        assert!(!s.marked.contains("**for**"), "{}", s.marked);
        assert_eq!(s.matches.len(), 1, "{}", s.marked);
    }

    #[test]
    fn a_query_of_stopwords_only_still_marks_them() {
        assert_eq!(
            query_terms("To be, or not to be"),
            ["be", "not", "or", "to"]
        );
        let s = snippet("not now", &query_terms("or not"), 100);
        assert_eq!(s.marked, "**not** now");
    }

    #[test]
    fn multibyte_text_never_splits_a_character() {
        let text = "é".repeat(100) + " café olé " + &"ü".repeat(100);
        let s = snippet(&text, &query_terms("café"), 40);
        assert!(s.marked.contains("**café**"));
    }
}
