//! A [`ContentFilter`] as a tantivy query, and the collectors that turn a query into graph ids.

use std::ops::Bound;

use chatvault_core::{ContentFilter, Result, WorkspaceId};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocId, Score, Searcher, SegmentOrdinal, SegmentReader, Term};

use crate::error::tantivy_err;
use crate::schema::Fields;

/// The query matching the live documents that pass `filter` (allow-listed keys of another
/// workspace match nothing).
pub(crate) fn filter_query(
    fields: &Fields,
    workspace: &WorkspaceId,
    filter: &ContentFilter,
) -> Result<Box<dyn Query>> {
    let term_q =
        |t: Term| -> Box<dyn Query> { Box::new(TermQuery::new(t, IndexRecordOption::Basic)) };
    let set_q = |field: Field, values: Vec<String>| -> Box<dyn Query> {
        Box::new(TermSetQuery::new(
            values.into_iter().map(|v| Term::from_field_text(field, &v)),
        ))
    };
    let mut must: Vec<Box<dyn Query>> = vec![term_q(Term::from_field_bool(fields.deleted, false))];
    if let Some(keys) = &filter.keys {
        // a key of another workspace can never match here
        must.push(set_q(
            fields.key,
            keys.iter()
                .filter(|k| &k.workspace == workspace)
                .map(|k| k.content_id())
                .collect(),
        ));
    }
    if let Some(channels) = &filter.channels {
        must.push(set_q(
            fields.channel,
            channels.iter().map(|c| c.to_string()).collect(),
        ));
    }
    if let Some(users) = &filter.users {
        must.push(set_q(
            fields.user,
            users.iter().map(|u| u.to_string()).collect(),
        ));
    }
    let (start, end) = (filter.time.start_micros(), filter.time.end_micros());
    if start.is_some() || end.is_some() {
        let lower = start.map_or(Bound::Unbounded, |s| {
            Bound::Included(Term::from_field_i64(fields.ts, s))
        });
        let upper = end.map_or(Bound::Unbounded, |e| {
            Bound::Excluded(Term::from_field_i64(fields.ts, e))
        });
        must.push(Box::new(RangeQuery::new(lower, upper)));
    }
    if let Some(t) = &filter.thread_ts {
        must.push(Box::new(BooleanQuery::new(vec![
            (
                Occur::Should,
                term_q(Term::from_field_text(fields.ts_raw, t.as_str())),
            ),
            (
                Occur::Should,
                term_q(Term::from_field_text(fields.thread_ts, t.as_str())),
            ),
        ])));
    }
    for (cond, field) in [
        (filter.is_reply, fields.is_reply),
        (filter.has_files, fields.has_files),
        (filter.has_links, fields.has_links),
    ] {
        if let Some(b) = cond {
            must.push(term_q(Term::from_field_bool(field, b)));
        }
    }
    if let Some(n) = filter.min_reactions {
        must.push(Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(fields.reactions, u64::from(n))),
            Bound::Unbounded,
        )));
    }
    if let Some(kinds) = &filter.visibility {
        must.push(set_q(
            fields.visibility,
            kinds.iter().map(|k| k.as_str().to_string()).collect(),
        ));
    }
    Ok(Box::new(BooleanQuery::new(
        must.into_iter().map(|q| (Occur::Must, q)).collect(),
    )))
}

/// A set of graph ids (`vid`s).
#[derive(Debug, Clone, Default)]
pub(crate) struct VidSet {
    words: Vec<u64>,
    len: usize,
}

impl VidSet {
    pub(crate) fn from_vids(vids: &[u64]) -> Self {
        let max = vids.iter().copied().max().map_or(0, |m| m as usize + 1);
        let mut set = VidSet::with_capacity(max);
        for &v in vids {
            set.insert(v);
        }
        set
    }

    /// An empty set for vids below `size`.
    fn with_capacity(size: usize) -> Self {
        VidSet {
            words: vec![0u64; size.div_ceil(64)],
            len: 0,
        }
    }

    /// Adds `vid` (below the capacity it was made with).
    fn insert(&mut self, vid: u64) {
        let (w, b) = ((vid / 64) as usize, vid % 64);
        if self.words[w] & (1 << b) == 0 {
            self.words[w] |= 1 << b;
            self.len += 1;
        }
    }

    #[inline]
    pub(crate) fn contains(&self, vid: u64) -> bool {
        self.words
            .get((vid / 64) as usize)
            .is_some_and(|w| w & (1 << (vid % 64)) != 0)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The ids in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some(i as u64 * 64 + u64::from(b))
            })
        })
    }
}

/// Collects the `vid` of every matching document.
pub(crate) struct VidCollector;

pub(crate) struct VidSegmentCollector {
    column: Column<u64>,
    vids: Vec<u64>,
}

impl Collector for VidCollector {
    type Fruit = Vec<u64>;
    type Child = VidSegmentCollector;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<VidSegmentCollector> {
        Ok(VidSegmentCollector {
            column: segment.fast_fields().u64("vid")?,
            vids: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        Ok(fruits.concat())
    }
}

impl SegmentCollector for VidSegmentCollector {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if let Some(v) = self.column.first(doc) {
            self.vids.push(v);
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.vids
    }
}

/// Collects `(vid, address)` of every matching document.
pub(crate) struct VidAddrCollector;

pub(crate) struct VidAddrSegmentCollector {
    segment: SegmentOrdinal,
    column: Column<u64>,
    out: Vec<(u64, DocAddress)>,
}

impl Collector for VidAddrCollector {
    type Fruit = Vec<(u64, DocAddress)>;
    type Child = VidAddrSegmentCollector;

    fn for_segment(
        &self,
        segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<VidAddrSegmentCollector> {
        Ok(VidAddrSegmentCollector {
            segment: segment_local_id,
            column: segment.fast_fields().u64("vid")?,
            out: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        fruits: Vec<Vec<(u64, DocAddress)>>,
    ) -> tantivy::Result<Vec<(u64, DocAddress)>> {
        Ok(fruits.concat())
    }
}

impl SegmentCollector for VidAddrSegmentCollector {
    type Fruit = Vec<(u64, DocAddress)>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if let Some(v) = self.column.first(doc) {
            self.out.push((v, DocAddress::new(self.segment, doc)));
        }
    }

    fn harvest(self) -> Vec<(u64, DocAddress)> {
        self.out
    }
}

/// The first alive document holding `term`.
pub(crate) fn find_doc(searcher: &Searcher, term: &Term) -> Result<Option<DocAddress>> {
    for (ord, seg) in searcher.segment_readers().iter().enumerate() {
        let inverted = seg.inverted_index(term.field()).map_err(tantivy_err)?;
        let Some(mut postings) = inverted
            .read_postings(term, IndexRecordOption::Basic)
            .map_err(|e| tantivy_err(e.into()))?
        else {
            continue;
        };
        use tantivy::DocSet;
        let mut doc = postings.doc();
        while doc != tantivy::TERMINATED {
            if seg.alive_bitset().is_none_or(|a| a.is_alive(doc)) {
                return Ok(Some(DocAddress::new(ord as u32, doc)));
            }
            doc = postings.advance();
        }
    }
    Ok(None)
}

/// Reads a u64 fast field of one document.
pub(crate) fn fast_u64(searcher: &Searcher, addr: DocAddress, field: &str) -> Result<Option<u64>> {
    let seg = searcher.segment_reader(addr.segment_ord);
    let col = seg.fast_fields().u64(field).map_err(tantivy_err)?;
    Ok(col.first(addr.doc_id))
}

/// `(vid, doc)` of every document of one segment that is not a tombstone, alive or not. A
/// segment's documents never change (only its alive bitset does, as newer versions replace
/// them), so this is read once per segment and a snapshot's live set is rebuilt from these
/// tables and the current bitsets: a commit costs work in proportion to its new segments, not a
/// query over the whole collection.
pub(crate) struct SegmentLive {
    segment: tantivy::index::SegmentId,
    entries: Vec<(u64, DocId)>,
}

impl SegmentLive {
    /// Reads the non-tombstone documents of `seg` (`deleted` is the tombstone flag field).
    pub(crate) fn read(seg: &SegmentReader, deleted: Field) -> Result<Self> {
        use tantivy::DocSet;
        let column = seg.fast_fields().u64("vid").map_err(tantivy_err)?;
        let inverted = seg.inverted_index(deleted).map_err(tantivy_err)?;
        let mut entries = Vec::new();
        if let Some(mut postings) = inverted
            .read_postings(
                &Term::from_field_bool(deleted, false),
                IndexRecordOption::Basic,
            )
            .map_err(|e| tantivy_err(e.into()))?
        {
            entries.reserve(postings.size_hint() as usize);
            let mut doc = postings.doc();
            while doc != tantivy::TERMINATED {
                if let Some(vid) = column.first(doc) {
                    entries.push((vid, doc));
                }
                doc = postings.advance();
            }
        }
        Ok(SegmentLive {
            segment: seg.segment_id(),
            entries,
        })
    }
}

/// The live tables of every segment of `searcher`, reusing those of `previous` for segments it
/// already had.
pub(crate) fn segment_lives(
    searcher: &Searcher,
    previous: &[std::sync::Arc<SegmentLive>],
    deleted: Field,
) -> Result<Vec<std::sync::Arc<SegmentLive>>> {
    searcher
        .segment_readers()
        .iter()
        .map(|seg| {
            let id = seg.segment_id();
            match previous.iter().find(|l| l.segment == id) {
                Some(l) => Ok(std::sync::Arc::clone(l)),
                None => SegmentLive::read(seg, deleted).map(std::sync::Arc::new),
            }
        })
        .collect()
}

/// As [`segment_lives`], for the documents matching `query` (a filter query: it excludes
/// tombstones itself). A filtered vector search used to run its filter over the whole
/// collection on every search; with these tables a search pays for its new segments only.
pub(crate) fn segment_matches(
    searcher: &Searcher,
    query: &dyn tantivy::query::Query,
    previous: &[std::sync::Arc<SegmentLive>],
) -> Result<Vec<std::sync::Arc<SegmentLive>>> {
    let mut weight: Option<Box<dyn tantivy::query::Weight>> = None;
    searcher
        .segment_readers()
        .iter()
        .map(|seg| {
            let id = seg.segment_id();
            if let Some(l) = previous.iter().find(|l| l.segment == id) {
                return Ok(std::sync::Arc::clone(l));
            }
            if weight.is_none() {
                weight = Some(
                    query
                        .weight(tantivy::query::EnableScoring::disabled_from_searcher(
                            searcher,
                        ))
                        .map_err(tantivy_err)?,
                );
            }
            let Some(w) = weight.as_ref() else {
                unreachable!("the weight was just made")
            };
            let column = seg.fast_fields().u64("vid").map_err(tantivy_err)?;
            let mut entries = Vec::new();
            w.for_each_no_score(seg, &mut |docs: &[DocId]| {
                for &doc in docs {
                    if let Some(vid) = column.first(doc) {
                        entries.push((vid, doc));
                    }
                }
            })
            .map_err(tantivy_err)?;
            Ok(std::sync::Arc::new(SegmentLive {
                segment: id,
                entries,
            }))
        })
        .collect()
}

/// The vids of the alive documents in `lists` (one per segment of `searcher`, in order).
pub(crate) fn alive_vids(searcher: &Searcher, lists: &[std::sync::Arc<SegmentLive>]) -> VidSet {
    let size = lists
        .iter()
        .filter_map(|l| l.entries.iter().map(|e| e.0).max())
        .max()
        .map_or(0, |m| m as usize + 1);
    let mut set = VidSet::with_capacity(size);
    for_each_alive(searcher, lists, |_, vid, _| {
        set.insert(vid);
    });
    set
}

/// The live set of `searcher` (every alive, non-tombstone document's vid) and each vid's
/// address (segment << 32 | doc, `u64::MAX` where none), from `lives` (one per segment, in
/// segment order, as [`segment_lives`] returns them).
pub(crate) fn live_set(
    searcher: &Searcher,
    lives: &[std::sync::Arc<SegmentLive>],
) -> (VidSet, Vec<u64>) {
    let mut max = None::<u64>;
    let mut n = 0;
    for l in lives {
        n += l.entries.len();
        max = max.max(l.entries.iter().map(|e| e.0).max());
    }
    let size = max.map_or(0, |m| m as usize + 1);
    let mut set = VidSet::with_capacity(size);
    let mut addrs = vec![u64::MAX; size];
    for_each_alive(searcher, lives, |ord, vid, doc| {
        set.insert(vid);
        addrs[vid as usize] = (u64::from(ord) << 32) | u64::from(doc);
    });
    debug_assert!(set.len <= n);
    (set, addrs)
}

/// Calls `f(segment ordinal, vid, doc)` for every entry of `lists` (one per segment of
/// `searcher`, in order) whose document is alive in `searcher`.
fn for_each_alive(
    searcher: &Searcher,
    lists: &[std::sync::Arc<SegmentLive>],
    mut f: impl FnMut(u32, u64, DocId),
) {
    for (ord, (seg, l)) in searcher.segment_readers().iter().zip(lists).enumerate() {
        let alive = seg.alive_bitset();
        for &(vid, doc) in &l.entries {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                f(ord as u32, vid, doc);
            }
        }
    }
}

/// One segment's message keys, read once from its `key` column's dictionary (a segment never
/// changes, so a snapshot reuses the tables of the segments it shares with the one before).
/// Looking a key up then costs one column read, not the decompression of a dictionary block
/// with a fresh zstd context (which measured most of a vector search's time).
pub(crate) struct SegmentKeys {
    segment: tantivy::index::SegmentId,
    column: Option<tantivy::columnar::StrColumn>,
    /// The keys in term-ordinal order, back to back; `ends[ord]` is where key `ord` ends.
    text: String,
    ends: Vec<u32>,
}

impl SegmentKeys {
    /// Reads the keys of `seg`.
    pub(crate) fn read(seg: &SegmentReader) -> Result<Self> {
        let column = seg.fast_fields().str("key").map_err(tantivy_err)?;
        let mut text = String::new();
        let mut ends = Vec::new();
        if let Some(col) = &column {
            ends.reserve(col.num_terms());
            let mut stream = col
                .dictionary()
                .stream()
                .map_err(|e| tantivy_err(e.into()))?;
            while stream.advance() {
                text.push_str(&String::from_utf8_lossy(stream.key()));
                ends.push(u32::try_from(text.len()).map_err(|_| {
                    chatvault_core::Error::backend_error("a segment's keys exceed 4 GiB")
                })?);
            }
        }
        Ok(SegmentKeys {
            segment: seg.segment_id(),
            column,
            text,
            ends,
        })
    }

    /// The segment these keys are of.
    pub(crate) fn segment(&self) -> tantivy::index::SegmentId {
        self.segment
    }

    /// The key (content id) of document `doc`.
    pub(crate) fn key(&self, doc: DocId) -> Option<&str> {
        let ord = self.column.as_ref()?.term_ords(doc).next()? as usize;
        let end = *self.ends.get(ord)? as usize;
        let start = if ord == 0 {
            0
        } else {
            self.ends[ord - 1] as usize
        };
        self.text.get(start..end)
    }
}

/// The key tables of every segment of `searcher`, reusing those of `previous` for segments it
/// already had.
pub(crate) fn segment_keys(
    searcher: &Searcher,
    previous: &[std::sync::Arc<SegmentKeys>],
) -> Result<Vec<std::sync::Arc<SegmentKeys>>> {
    searcher
        .segment_readers()
        .iter()
        .map(|seg| {
            let id = seg.segment_id();
            match previous.iter().find(|k| k.segment() == id) {
                Some(k) => Ok(std::sync::Arc::clone(k)),
                None => SegmentKeys::read(seg).map(std::sync::Arc::new),
            }
        })
        .collect()
}

/// A filter whose matches are already known per segment (the tables [`segment_matches`] keeps):
/// as a tantivy query it costs a walk over the table of each segment instead of evaluating the
/// filter's term sets (a viewer's channel list is a union of dozens of posting lists).
#[derive(Clone)]
pub(crate) struct KnownMatches {
    lists: std::sync::Arc<Vec<std::sync::Arc<SegmentLive>>>,
}

impl KnownMatches {
    /// The matches of a filter, one table per segment of the searcher the query will run on.
    pub(crate) fn new(lists: std::sync::Arc<Vec<std::sync::Arc<SegmentLive>>>) -> Self {
        KnownMatches { lists }
    }
}

impl std::fmt::Debug for KnownMatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownMatches")
            .field("segments", &self.lists.len())
            .finish()
    }
}

impl tantivy::query::Query for KnownMatches {
    fn weight(
        &self,
        _scoring: tantivy::query::EnableScoring<'_>,
    ) -> tantivy::Result<Box<dyn tantivy::query::Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl tantivy::query::Weight for KnownMatches {
    fn scorer(
        &self,
        reader: &SegmentReader,
        boost: Score,
    ) -> tantivy::Result<Box<dyn tantivy::query::Scorer>> {
        let id = reader.segment_id();
        let list = self
            .lists
            .iter()
            .find(|l| l.segment == id)
            .cloned()
            .ok_or_else(|| {
                tantivy::TantivyError::InternalError(format!(
                    "no filter table for segment {id:?}: the query ran on another searcher"
                ))
            })?;
        Ok(Box::new(tantivy::query::ConstScorer::new(
            SortedDocs::new(list),
            boost,
        )))
    }

    fn explain(
        &self,
        reader: &SegmentReader,
        doc: DocId,
    ) -> tantivy::Result<tantivy::query::Explanation> {
        use tantivy::DocSet;
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} does not pass the filter"
            )));
        }
        Ok(tantivy::query::Explanation::new("passes the filter", 1.0))
    }
}

/// A segment's table as a [`tantivy::DocSet`] (its documents ascend) that seeks by binary
/// search, reading the shared table in place.
struct SortedDocs {
    list: std::sync::Arc<SegmentLive>,
    cursor: usize,
}

impl SortedDocs {
    fn new(list: std::sync::Arc<SegmentLive>) -> Self {
        debug_assert!(list.entries.windows(2).all(|w| w[0].1 < w[1].1));
        SortedDocs { list, cursor: 0 }
    }
}

impl tantivy::DocSet for SortedDocs {
    fn advance(&mut self) -> DocId {
        self.cursor = (self.cursor + 1).min(self.list.entries.len());
        self.doc()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        let rest = &self.list.entries[self.cursor..];
        self.cursor += rest.partition_point(|e| e.1 < target);
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.list
            .entries
            .get(self.cursor)
            .map_or(tantivy::TERMINATED, |e| e.1)
    }

    fn size_hint(&self) -> u32 {
        u32::try_from(self.list.entries.len() - self.cursor).unwrap_or(u32::MAX)
    }
}
