//! Which days a channel has messages on: its last day, and the days before and after one.
//! Asked of the metadata store with counts over time ranges (a binary search over days), so a
//! channel of any size costs a dozen indexed counts, never a scan of its messages.
//!
//! Callers check that the viewer may read the channel first.

use chatvault_core::{
    ChannelId, MessageFilter, MetadataStore, PageRequest, Result, TimeRange, WorkspaceId,
};
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};

pub(crate) fn day_start(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
}

async fn count(
    meta: &dyn MetadataStore,
    ws: &WorkspaceId,
    ch: &ChannelId,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> Result<u64> {
    let filter = MessageFilter {
        channels: Some(vec![ch.clone()]),
        time: TimeRange { start, end },
        ..MessageFilter::default()
    };
    meta.count_messages(ws, &filter).await
}

/// The first day at or after `from` with a message.
pub(crate) async fn first_day_from(
    meta: &dyn MetadataStore,
    ws: &WorkspaceId,
    ch: &ChannelId,
    from: Option<DateTime<Utc>>,
) -> Result<Option<NaiveDate>> {
    let filter = MessageFilter {
        channels: Some(vec![ch.clone()]),
        time: TimeRange {
            start: from,
            end: None,
        },
        ..MessageFilter::default()
    };
    let page = PageRequest {
        after: None,
        limit: 1,
    };
    Ok(meta
        .filter_messages(ws, &filter, &page)
        .await?
        .first()
        .map(|k| k.ts.to_datetime().date_naive()))
}

/// The last day before `end` (any time when `None`) with a message.
pub(crate) async fn last_day_before(
    meta: &dyn MetadataStore,
    ws: &WorkspaceId,
    ch: &ChannelId,
    end: Option<DateTime<Utc>>,
    hint: Option<NaiveDate>,
) -> Result<Option<NaiveDate>> {
    // The sync cursor usually names the last day: two counts confirm it.
    if let Some(h) = hint.filter(|h| end.is_none_or(|e| day_start(*h) < e)) {
        let after = h.checked_add_days(Days::new(1)).map(day_start);
        let later = match (after, end) {
            (Some(a), Some(e)) if a >= e => 0,
            (a, e) => count(meta, ws, ch, a, e).await?,
        };
        if later == 0 && count(meta, ws, ch, Some(day_start(h)), end).await? > 0 {
            return Ok(Some(h));
        }
    }
    let Some(mut lo) = first_day_from(meta, ws, ch, None).await? else {
        return Ok(None);
    };
    if end.is_some_and(|e| day_start(lo) >= e) {
        return Ok(None);
    }
    // Largest day d in [lo, hi] with a message in [d, end).
    let mut hi = match end {
        Some(e) => (e - chrono::Duration::microseconds(1)).date_naive(),
        None => Utc::now().date_naive().max(lo) + Days::new(3650),
    };
    while lo < hi {
        let span = (hi - lo).num_days();
        let mid = lo + Days::new(((span + 1) / 2) as u64);
        if count(meta, ws, ch, Some(day_start(mid)), end).await? > 0 {
            lo = mid;
        } else {
            hi = mid - Days::new(1);
        }
    }
    Ok(Some(lo))
}
