//! Which days a channel has messages on: its last day, and the days before and after one. Each
//! is one indexed probe of the metadata store (the newest message before a time, the oldest
//! from a time), whatever the channel's size.
//!
//! Callers check that the viewer may read the channel first.

use chatvault_core::{
    ChannelId, LatestOptions, MessageFilter, MetadataStore, PageRequest, Result, TimeRange,
    WorkspaceId,
};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

pub(crate) fn day_start(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
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
) -> Result<Option<NaiveDate>> {
    let options = LatestOptions {
        range: TimeRange { start: None, end },
        channels: Some(vec![ch.clone()]),
        with_counts: false,
    };
    Ok(meta
        .channel_latest(ws, &options)
        .await?
        .first()
        .map(|l| l.latest.to_datetime().date_naive()))
}
