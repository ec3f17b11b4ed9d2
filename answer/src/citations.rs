//! Checking an answer's citations against the passages it was given: pure, no I/O.

use std::sync::OnceLock;

use regex::Regex;

/// An answer's citations after checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitationCheck {
    /// The text with every citation of a passage that does not exist removed.
    pub text: String,
    /// The passages cited, distinct, in order of first citation.
    pub valid: Vec<usize>,
    /// The citations removed (numbers with no passage), distinct, in order of appearance.
    pub removed: Vec<usize>,
}

fn citation_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    // `[3]`, `[1, 2]`, `[1,2,5]`; not `[x]` or `[1](link)` (a Markdown link is not a citation).
    PATTERN.get_or_init(|| {
        Regex::new(r"\[\s*(\d{1,6}(?:\s*,\s*\d{1,6})*)\s*\](\()?")
            .expect("the citation regex is valid")
    })
}

/// Checks the `[n]` citations of `text` against passages numbered `1..=passages`: a number
/// outside that range is removed (from a list like `[2, 9]` only the 9 goes; a citation left
/// empty goes with the space before it).
pub fn check_citations(text: &str, passages: usize) -> CitationCheck {
    let mut valid = Vec::new();
    let mut removed = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in citation_pattern().captures_iter(text) {
        let whole = caps.get(0).expect("group 0 always matches");
        if caps.get(2).is_some() {
            continue;
        }
        let mut kept = Vec::new();
        for n in caps[1].split(',') {
            let n: usize = n.trim().parse().unwrap_or(0);
            if (1..=passages).contains(&n) {
                if !valid.contains(&n) {
                    valid.push(n);
                }
                kept.push(n);
            } else if !removed.contains(&n) {
                removed.push(n);
            }
        }
        let before = &text[last..whole.start()];
        if kept.is_empty() {
            out.push_str(before.strip_suffix(' ').unwrap_or(before));
        } else {
            out.push_str(before);
            let list: Vec<String> = kept.iter().map(usize::to_string).collect();
            out.push('[');
            out.push_str(&list.join(", "));
            out.push(']');
        }
        last = whole.end();
    }
    out.push_str(&text[last..]);
    CitationCheck {
        text: out,
        valid,
        removed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_citations_of_missing_passages() {
        let c = check_citations("Use the CSV [2]. Also Python [7]. Both [1, 9][2].", 5);
        assert_eq!(c.text, "Use the CSV [2]. Also Python. Both [1][2].");
        assert_eq!(c.valid, vec![2, 1]);
        assert_eq!(c.removed, vec![7, 9]);
    }

    #[test]
    fn ignores_links_and_non_numbers() {
        let c = check_citations("See [docs](http://x) and [x] and [0].", 3);
        assert_eq!(c.text, "See [docs](http://x) and [x] and.");
        assert!(c.valid.is_empty());
        assert_eq!(c.removed, vec![0]);
        let c = check_citations("[1](http://x)", 3);
        assert!(c.valid.is_empty());
        assert_eq!(c.text, "[1](http://x)");
    }
}
