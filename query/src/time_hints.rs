//! Relative dates written plainly in a question (`what did we decide yesterday`, `the outage last
//! week`, `meetups in May`): soft time hints. Unlike `during:` they filter nothing — a question's
//! "last week" is often loose — the engine boosts messages inside the range in the fused ranking.

use chrono::{Datelike, Duration, NaiveDate};

use chatvault_core::TimeRange;

use crate::modifiers::{midnight, period};

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn range(start: NaiveDate, end: NaiveDate) -> TimeRange {
    TimeRange {
        start: Some(midnight(start)),
        end: Some(midnight(end)),
    }
}

fn month_start(d: NaiveDate) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1)
}

/// The first relative date `query` names, as a `[start, end)` range of UTC days relative to
/// `today`: `today`, `yesterday`, `this`/`last` `week` (weeks start on Monday), `month` or
/// `year`, and `in`/`during` a month name (`in May`: this year's, or last year's if it has not
/// begun), a month and year (`in May 2016`) or a year (`in 2016`). `None` when it names none.
pub(crate) fn find_time_hint(query: &str, today: NaiveDate) -> Option<TimeRange> {
    let w = words(query);
    let tomorrow = today.succ_opt()?;
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    for i in 0..w.len() {
        let next = w.get(i + 1).map(String::as_str);
        match (w[i].as_str(), next) {
            ("today", _) => return Some(range(today, tomorrow)),
            ("yesterday", _) => return Some(range(today.pred_opt()?, today)),
            ("this", Some("week")) => return Some(range(monday, tomorrow)),
            ("last" | "past", Some("week")) => {
                return Some(range(monday - Duration::days(7), monday))
            }
            ("this", Some("month")) => return Some(range(month_start(today)?, tomorrow)),
            ("last" | "past", Some("month")) => {
                let this = month_start(today)?;
                return Some(range(month_start(this.pred_opt()?)?, this));
            }
            ("this", Some("year")) => {
                return Some(range(
                    NaiveDate::from_ymd_opt(today.year(), 1, 1)?,
                    tomorrow,
                ))
            }
            ("last" | "past", Some("year")) => {
                let y = today.year();
                return Some(range(
                    NaiveDate::from_ymd_opt(y - 1, 1, 1)?,
                    NaiveDate::from_ymd_opt(y, 1, 1)?,
                ));
            }
            ("in" | "during", Some(value)) => {
                let year = w
                    .get(i + 2)
                    .filter(|y| y.len() == 4 && y.parse::<i32>().is_ok());
                let is_year = value.len() == 4 && value.parse::<i32>().is_ok();
                let hit = if is_year {
                    period(value, today)
                } else if crate::modifiers::month_number(value).is_some() && value.len() >= 3 {
                    // `in may 2016`: that month of that year; `in may`: the latest May.
                    match year {
                        Some(y) => {
                            let m = crate::modifiers::month_number(value)?;
                            period(&format!("{y}-{m:02}"), today)
                        }
                        None if is_month_name(value) => period(value, today),
                        None => None,
                    }
                } else {
                    None
                };
                if let Some((start, end)) = hit {
                    return Some(range(start, end));
                }
            }
            _ => {}
        }
    }
    None
}

/// A month's full name or its usual three-letter abbreviation (`in mar` yes, `in marketing` no).
fn is_month_name(w: &str) -> bool {
    crate::modifiers::MONTHS
        .iter()
        .any(|m| *m == w || (w.len() == 3 && m.starts_with(w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    fn hint(q: &str) -> Option<(NaiveDate, NaiveDate)> {
        // A Wednesday.
        let r = find_time_hint(q, day(2026, 12, 9))?;
        Some((
            r.start.expect("start").date_naive(),
            r.end.expect("end").date_naive(),
        ))
    }

    #[test]
    fn days_weeks_months_and_years() {
        assert_eq!(
            hint("what broke yesterday?"),
            Some((day(2026, 12, 8), day(2026, 12, 9)))
        );
        assert_eq!(
            hint("deploys today"),
            Some((day(2026, 12, 9), day(2026, 12, 10)))
        );
        assert_eq!(
            hint("the outage last week"),
            Some((day(2026, 11, 30), day(2026, 12, 7)))
        );
        assert_eq!(
            hint("this week's plans"),
            Some((day(2026, 12, 7), day(2026, 12, 10)))
        );
        assert_eq!(
            hint("budget last month"),
            Some((day(2026, 11, 1), day(2026, 12, 1)))
        );
        assert_eq!(
            hint("hires last year"),
            Some((day(2025, 1, 1), day(2026, 1, 1)))
        );
    }

    #[test]
    fn in_a_month_or_a_year() {
        assert_eq!(
            hint("meetups in May"),
            Some((day(2026, 5, 1), day(2026, 6, 1)))
        );
        assert_eq!(
            hint("meetups in May 2016"),
            Some((day(2016, 5, 1), day(2016, 6, 1)))
        );
        assert_eq!(
            hint("talks in 2015"),
            Some((day(2015, 1, 1), day(2016, 1, 1)))
        );
        assert_eq!(
            hint("during dec"),
            Some((day(2026, 12, 1), day(2027, 1, 1)))
        );
    }

    #[test]
    fn words_that_only_look_like_dates_are_not_hints() {
        assert_eq!(hint("jobs in marketing"), None);
        assert_eq!(hint("last weekend"), None);
        assert_eq!(hint("may I ask about maps"), None);
        assert_eq!(hint("in the week"), None);
        assert_eq!(hint("python library for maps"), None);
    }
}
