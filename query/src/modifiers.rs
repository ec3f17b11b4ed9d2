//! Slack's search modifiers, read from the query text: `from:@name`, `in:#channel`,
//! `before:`/`after:`/`on:`/`during:` dates, `has:link`, `has:reaction`, `has:file`, `is:thread`,
//! `"quoted phrases"` and `-word`.
//!
//! Parsing is pure ([`parse_query`]); the engine resolves names against the metadata store and
//! turns the rest into conditions of the search filter. Anything that only looks like a modifier
//! (`http://x`, `is:nothing`) stays a search word.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

use chatvault_core::{Error, Result, TimeRange};

/// A query with its modifiers taken out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedQuery {
    /// The words to rank by (phrases included, modifiers and excluded words left out).
    pub text: String,
    /// `from:` names, as written (without `@`).
    pub from: Vec<String>,
    /// `in:` channel names, as written (without `#`).
    pub channels: Vec<String>,
    /// The time range `before:`/`after:`/`on:`/`during:` leave (UTC days).
    pub time: TimeRange,
    /// `has:link`.
    pub has_link: bool,
    /// `has:reaction`.
    pub has_reaction: bool,
    /// `has:file`.
    pub has_file: bool,
    /// `is:thread`: only messages inside threads.
    pub is_thread: bool,
    /// `"quoted phrases"`: the text must contain each (case-insensitively).
    pub phrases: Vec<String>,
    /// `-word`: the text must not contain these words.
    pub excluded: Vec<String>,
}

impl ParsedQuery {
    /// Whether any modifier was found.
    pub fn has_modifiers(&self) -> bool {
        !self.from.is_empty()
            || !self.channels.is_empty()
            || self.time.start.is_some()
            || self.time.end.is_some()
            || self.has_link
            || self.has_reaction
            || self.has_file
            || self.is_thread
            || !self.phrases.is_empty()
            || !self.excluded.is_empty()
    }

    /// Whether a message text passes the phrase and exclusion conditions.
    pub fn text_matches(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        self.phrases
            .iter()
            .all(|p| lower.contains(&p.to_lowercase()))
            && !self.excluded.iter().any(|w| contains_word(&lower, w))
    }
}

/// Whether `word` (lowercased here) occurs in `lower` as a whole word.
fn contains_word(lower: &str, word: &str) -> bool {
    let w = word.to_lowercase();
    lower
        .split(|c: char| !c.is_alphanumeric() && c != '_' && c != '\'')
        .any(|t| t == w)
}

pub(crate) fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

pub(crate) const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

pub(crate) fn month_number(s: &str) -> Option<u32> {
    let s = s.to_lowercase();
    if s.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|m| m.starts_with(&s))
        .map(|i| i as u32 + 1)
}

/// `[start, end)` of a `during:` value: `2016`, `2016-05`, `may` (this year's, or last year's if
/// it has not begun yet), `2016-05-03`.
pub(crate) fn period(value: &str, today: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    let month = |y: i32, m: u32| {
        let start = NaiveDate::from_ymd_opt(y, m, 1)?;
        let end = if m == 12 {
            NaiveDate::from_ymd_opt(y + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(y, m + 1, 1)?
        };
        Some((start, end))
    };
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Some((d, d.succ_opt()?));
    }
    let parts: Vec<&str> = value.split('-').collect();
    match parts.as_slice() {
        [y] if y.len() == 4 => {
            let y: i32 = y.parse().ok()?;
            Some((
                NaiveDate::from_ymd_opt(y, 1, 1)?,
                NaiveDate::from_ymd_opt(y + 1, 1, 1)?,
            ))
        }
        [y, m] if y.len() == 4 => month(y.parse().ok()?, m.parse().ok()?),
        [name] => {
            let m = month_number(name)?;
            let y = if m <= today.month() {
                today.year()
            } else {
                today.year() - 1
            };
            month(y, m)
        }
        _ => None,
    }
}

/// A single day (`2016-05-03`, `today`, `yesterday`).
fn day(value: &str, today: NaiveDate) -> Option<NaiveDate> {
    match value {
        "today" => Some(today),
        "yesterday" => today.pred_opt(),
        v => NaiveDate::parse_from_str(v, "%Y-%m-%d").ok(),
    }
}

/// Narrows `range` to `[start, end)`.
fn narrow(range: &mut TimeRange, start: Option<NaiveDate>, end: Option<NaiveDate>) {
    if let Some(s) = start.map(midnight) {
        range.start = Some(range.start.map_or(s, |r| r.max(s)));
    }
    if let Some(e) = end.map(midnight) {
        range.end = Some(range.end.map_or(e, |r| r.min(e)));
    }
}

/// Splits the query into tokens, keeping `"quoted phrases"` (and `key:"quoted value"`) whole.
fn tokens(query: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    // a quote opened right after `key:` quotes the modifier's value, not a phrase
    let mut value_quote = false;
    for c in query.chars() {
        match c {
            '"' | '“' | '”' => {
                if quoted {
                    quoted = false;
                    if !cur.is_empty() {
                        out.push((std::mem::take(&mut cur), !value_quote));
                    }
                } else {
                    value_quote = cur.ends_with(':') && !cur.starts_with(':');
                    if !cur.is_empty() && !value_quote {
                        out.push((std::mem::take(&mut cur), false));
                    }
                    quoted = true;
                }
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push((std::mem::take(&mut cur), false));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push((cur, quoted && !value_quote));
    }
    out
}

/// Reads the modifiers out of a query; `today` resolves `during:may`, `on:today` and the like.
///
/// # Errors
/// `InvalidInput` naming the modifier whose value is not a date (`before:someday`), or an empty
/// `from:`/`in:`.
pub fn parse_query(query: &str, today: NaiveDate) -> Result<ParsedQuery> {
    let mut p = ParsedQuery::default();
    let mut words: Vec<String> = Vec::new();
    let bad = |m: &str, v: &str, what: &str| {
        Error::invalid_input(format!("search modifier {m}:{v}: {what}"))
            .with_context("field", "query")
    };
    for (tok, quoted) in tokens(query) {
        if quoted {
            p.phrases.push(tok.clone());
            words.push(tok);
            continue;
        }
        if let Some(w) = tok.strip_prefix('-') {
            if w.chars().next().is_some_and(char::is_alphabetic) {
                p.excluded.push(w.to_string());
                continue;
            }
        }
        let Some((key, value)) = tok.split_once(':') else {
            words.push(tok);
            continue;
        };
        let key_l = key.to_lowercase();
        let value = value.trim_matches('"');
        match key_l.as_str() {
            "from" | "in" if value.trim_start_matches(['@', '#']).is_empty() => {
                return Err(bad(key, value, "a name is missing"));
            }
            "from" => p.from.push(value.trim_start_matches('@').to_string()),
            "in" => p.channels.push(value.trim_start_matches('#').to_string()),
            "before" => {
                let d =
                    day(value, today).ok_or_else(|| bad(key, value, "not a date (YYYY-MM-DD)"))?;
                narrow(&mut p.time, None, Some(d));
            }
            "after" => {
                let d =
                    day(value, today).ok_or_else(|| bad(key, value, "not a date (YYYY-MM-DD)"))?;
                narrow(&mut p.time, d.succ_opt(), None);
            }
            "on" => {
                let d =
                    day(value, today).ok_or_else(|| bad(key, value, "not a date (YYYY-MM-DD)"))?;
                narrow(&mut p.time, Some(d), d.succ_opt());
            }
            "during" => {
                let (s, e) = period(value, today).ok_or_else(|| {
                    bad(
                        key,
                        value,
                        "not a period (YYYY, YYYY-MM, a month name or a date)",
                    )
                })?;
                narrow(&mut p.time, Some(s), Some(e));
            }
            "has" => match value.to_lowercase().as_str() {
                "link" | "links" => p.has_link = true,
                "reaction" | "reactions" => p.has_reaction = true,
                "file" | "files" => p.has_file = true,
                _ => words.push(tok.clone()),
            },
            "is" => match value.to_lowercase().as_str() {
                "thread" => p.is_thread = true,
                _ => words.push(tok.clone()),
            },
            _ => words.push(tok.clone()),
        }
    }
    if let (Some(s), Some(e)) = (p.time.start, p.time.end) {
        if s >= e {
            return Err(Error::invalid_input(format!(
                "search modifiers leave no time: from {} to {}",
                s.date_naive(),
                e.date_naive()
            ))
            .with_context("field", "query"));
        }
    }
    p.text = words.join(" ");
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2016, 7, 31).expect("date")
    }

    fn parse(q: &str) -> ParsedQuery {
        parse_query(q, today()).expect("parses")
    }

    fn at(y: i32, m: u32, d: u32) -> Option<DateTime<Utc>> {
        Some(midnight(NaiveDate::from_ymd_opt(y, m, d).expect("date")))
    }

    #[test]
    fn plain_words_stay_words() {
        let p = parse("data jam venue http://example.com/a:b");
        assert_eq!(p.text, "data jam venue http://example.com/a:b");
        assert!(!p.has_modifiers());
    }

    #[test]
    fn from_takes_a_person() {
        let p = parse("from:@neerajt venue");
        assert_eq!(p.from, vec!["neerajt"]);
        assert_eq!(p.text, "venue");
        assert_eq!(parse("FROM:micah").from, vec!["micah"]);
    }

    #[test]
    fn in_takes_a_channel() {
        let p = parse("in:#datajam in:general venue");
        assert_eq!(p.channels, vec!["datajam", "general"]);
        assert_eq!(p.text, "venue");
    }

    #[test]
    fn empty_names_are_refused() {
        let e = parse_query("from:@ x", today()).expect_err("empty from");
        assert!(e.to_string().contains("from:@"), "{e}");
        assert!(parse_query("in: x", today()).is_err());
    }

    #[test]
    fn before_and_after_exclude_their_day() {
        let p = parse("before:2016-05-10 x");
        assert_eq!((p.time.start, p.time.end), (None, at(2016, 5, 10)));
        let p = parse("after:2016-05-10 x");
        assert_eq!((p.time.start, p.time.end), (at(2016, 5, 11), None));
        let p = parse("after:2016-05-01 before:2016-06-01 x");
        assert_eq!((p.time.start, p.time.end), (at(2016, 5, 2), at(2016, 6, 1)));
    }

    #[test]
    fn on_is_one_day() {
        let p = parse("on:2016-05-10 x");
        assert_eq!(
            (p.time.start, p.time.end),
            (at(2016, 5, 10), at(2016, 5, 11))
        );
        let p = parse("on:yesterday x");
        assert_eq!(
            (p.time.start, p.time.end),
            (at(2016, 7, 30), at(2016, 7, 31))
        );
    }

    #[test]
    fn during_is_a_year_a_month_or_a_month_name() {
        let p = parse("during:2015 x");
        assert_eq!((p.time.start, p.time.end), (at(2015, 1, 1), at(2016, 1, 1)));
        let p = parse("during:2015-12 x");
        assert_eq!(
            (p.time.start, p.time.end),
            (at(2015, 12, 1), at(2016, 1, 1))
        );
        // May has begun by July 2016; August has not, so it is last year's
        let p = parse("during:may x");
        assert_eq!((p.time.start, p.time.end), (at(2016, 5, 1), at(2016, 6, 1)));
        let p = parse("during:aug x");
        assert_eq!((p.time.start, p.time.end), (at(2015, 8, 1), at(2015, 9, 1)));
    }

    #[test]
    fn bad_dates_are_named() {
        let e = parse_query("before:someday x", today()).expect_err("bad date");
        assert!(e.to_string().contains("before:someday"), "{e}");
        assert!(parse_query("during:2016-13 x", today()).is_err());
        let e = parse_query("after:2016-06-01 before:2016-06-01 x", today()).expect_err("empty");
        assert!(e.to_string().contains("leave no time"), "{e}");
    }

    #[test]
    fn has_and_is() {
        let p = parse("has:link has:reaction has:file is:thread x");
        assert!(p.has_link && p.has_reaction && p.has_file && p.is_thread);
        assert_eq!(p.text, "x");
        // unknown values stay words
        let p = parse("has:pin is:nothing");
        assert!(!p.has_modifiers());
        assert_eq!(p.text, "has:pin is:nothing");
    }

    #[test]
    fn quoted_phrases_must_appear() {
        let p = parse("\"data jam\" venue");
        assert_eq!(p.phrases, vec!["data jam"]);
        assert_eq!(p.text, "data jam venue");
        assert!(p.text_matches("The Data Jam is at TXRX"));
        assert!(!p.text_matches("data for the jam"));
    }

    #[test]
    fn a_quoted_value_belongs_to_its_modifier() {
        let p = parse("in:\"general\" from:\"@neerajt\" venue");
        assert_eq!(p.channels, vec!["general"]);
        assert_eq!(p.from, vec!["neerajt"]);
        assert!(p.phrases.is_empty());
        assert_eq!(p.text, "venue");
    }

    #[test]
    fn minus_excludes_a_word() {
        let p = parse("meetup -pizza");
        assert_eq!(p.excluded, vec!["pizza"]);
        assert_eq!(p.text, "meetup");
        assert!(p.text_matches("meetup with tacos"));
        assert!(!p.text_matches("meetup with Pizza!"));
        // a word containing it is not the word
        assert!(p.text_matches("meetup at pizzeria"));
        // a lone dash or a negative number stays a word
        assert_eq!(parse("a - b -5").text, "a - b -5");
    }

    #[test]
    fn a_query_of_modifiers_only_has_no_words() {
        let p = parse("from:@ann in:#general");
        assert_eq!(p.text, "");
        assert!(p.has_modifiers());
    }
}
