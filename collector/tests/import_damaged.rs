//! Damaged copies of the bundled export, each with its exact expected report: what was stored,
//! what was skipped and why, what was refused before anything was written.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use chatvault_collector::{Collector, ImportOptions, ImportSummary, Relay, RelayOptions};
use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::{
    ContentStore, ErrorKind, MessageKey, MetadataStore, RetryPolicy, WorkspaceId,
};
use common::*;

const EXPORT: &str = "slack-export-viewer-testarchive";

/// A fresh copy of the bundled export in a temp dir.
fn copy_export() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("export");
    copy_dir(&testdata(EXPORT), &root);
    (tmp, root)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// Messages in the pristine export.
fn pristine_total() -> u64 {
    expected_counts(&testdata(EXPORT))
        .values()
        .map(|e| e.messages)
        .sum()
}

fn ws() -> WorkspaceId {
    WorkspaceId::new("T1").unwrap()
}

async fn import(
    meta: &Arc<dyn MetadataStore>,
    root: &Path,
) -> chatvault_core::Result<ImportSummary> {
    import_with(meta, root, ImportOptions::default()).await
}

async fn import_with(
    meta: &Arc<dyn MetadataStore>,
    root: &Path,
    options: ImportOptions,
) -> chatvault_core::Result<ImportSummary> {
    Collector::new(meta.clone(), ws())
        .import_export(root, options)
        .await
}

fn lines(issues: &[chatvault_collector::ImportIssue]) -> Vec<String> {
    issues.iter().map(ToString::to_string).collect()
}

fn store() -> Arc<dyn MetadataStore> {
    Arc::new(MemoryMetadataStore::new())
}

async fn drain(meta: &Arc<dyn MetadataStore>, content: &Arc<dyn ContentStore>) {
    Relay::new(
        meta.clone(),
        content.clone(),
        CountingEmbedder::new(),
        RelayOptions {
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
            },
            poll_interval: Duration::from_millis(5),
            ..Default::default()
        },
    )
    .drain()
    .await
    .unwrap();
}

async fn text_of(content: &Arc<dyn ContentStore>, channel: &str, ts: &str) -> String {
    let key = MessageKey::parse("T1", channel, ts).unwrap();
    content
        .get(&ws(), &[key])
        .await
        .unwrap()
        .remove(0)
        .content
        .text
}

#[tokio::test]
async fn a_duplicate_ts_keeps_the_first_and_reports_the_second() {
    let (_tmp, root) = copy_export();
    let day = root.join("enrique/2016-01-15.json");
    let mut msgs = read_json(&day);
    let mut dup = msgs[0].clone();
    dup["text"] = Value::from("a second message with the same ts");
    msgs.as_array_mut().unwrap().push(dup);
    write_json(&day, &msgs);

    let meta = store();
    let content: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    let s = import(&meta, &root).await.unwrap();
    assert_eq!(
        lines(&s.skipped),
        vec!["enrique/2016-01-15.json, message 6 (ts 1452845865.000008): duplicate ts: enrique/2016-01-15.json, message 0 has the same ts; the first was kept"]
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // the summary counts what is stored, and that is the pristine export
    assert_eq!(s.totals.messages, pristine_total());
    assert_eq!(meta.stats(&ws()).await.unwrap().messages, s.totals.messages);
    drain(&meta, &content).await;
    let first = msgs[0]["text"].as_str().unwrap();
    assert_eq!(
        text_of(&content, "C0JGLMMNX", "1452845865.000008").await,
        first
    );
}

#[tokio::test]
async fn a_listing_that_is_not_an_array_fails_the_import_before_anything_is_written() {
    for file in [
        "channels.json",
        "users.json",
        "groups.json",
        "mpims.json",
        "dms.json",
    ] {
        let (_tmp, root) = copy_export();
        std::fs::write(
            root.join(file),
            r#"{"id": "C1", "name": "an object, not a list"}"#,
        )
        .unwrap();
        let meta = store();
        let e = import(&meta, &root).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{file}: {e}");
        let what = if file == "users.json" {
            "users"
        } else {
            "conversations"
        };
        assert_eq!(
            e.message(),
            format!("cannot import: {file} must hold a JSON array of {what}, but holds an object; nothing was written"),
        );
        assert!(meta.list_workspaces().await.unwrap().is_empty(), "{file}");
    }

    // broken JSON in a listing: the same, with where
    let (_tmp, root) = copy_export();
    std::fs::write(root.join("channels.json"), "[{\"id\": \"C1\",\n").unwrap();
    let meta = store();
    let e = import(&meta, &root).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(
        e.message()
            .starts_with("cannot import: malformed JSON in channels.json at line 2"),
        "{e}"
    );
    assert!(e.message().ends_with("; nothing was written"), "{e}");
    assert!(meta.list_workspaces().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_users_json_warns_and_never_degrades_stored_names() {
    let meta = store();
    let content: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    let s = import(&meta, &testdata(EXPORT)).await.unwrap();
    assert!(s.skipped.is_empty() && s.warnings.is_empty());
    drain(&meta, &content).await;
    let mention = text_of(&content, "C0JGLMMNX", "1452837352.000006").await;
    assert!(
        mention.starts_with("@") && !mention.contains("U0BMYT2FL"),
        "{mention}"
    );

    let (_tmp, root) = copy_export();
    std::fs::remove_file(root.join("users.json")).unwrap();
    let again = import(&meta, &root).await.unwrap();
    assert_eq!(
        lines(&again.warnings),
        vec!["users.json: missing: no users imported; names come from the 4 users already stored"]
    );
    assert!(again.skipped.is_empty(), "{:?}", again.skipped);
    assert_eq!(again.users, 0);
    assert_eq!(again.totals.messages, pristine_total());
    // nothing to re-embed: every stored text is unchanged
    assert_eq!(again.outbox_enqueued, 0);
    drain(&meta, &content).await;
    assert_eq!(
        text_of(&content, "C0JGLMMNX", "1452837352.000006").await,
        mention
    );

    // into an empty store: the same warning, with no names to fall back on
    let fresh = store();
    let s = import(&fresh, &root).await.unwrap();
    assert_eq!(
        lines(&s.warnings),
        vec!["users.json: missing: no users imported; names come from the 0 users already stored"]
    );
    assert_eq!(s.totals.messages, pristine_total());
}

#[tokio::test]
async fn missing_folders_and_duplicate_ids_are_reported() {
    let (_tmp, root) = copy_export();
    std::fs::remove_dir_all(root.join("traveling-sailor")).unwrap();
    let mut channels = read_json(&root.join("channels.json"));
    let first = channels[0].clone();
    channels.as_array_mut().unwrap().push(first);
    write_json(&root.join("channels.json"), &channels);
    let mut users = read_json(&root.join("users.json"));
    let first = users[0].clone();
    users.as_array_mut().unwrap().push(first);
    write_json(&root.join("users.json"), &users);

    let meta = store();
    let s = import(&meta, &root).await.unwrap();
    assert_eq!(
        lines(&s.skipped),
        vec![
            "users.json, user 4: duplicate user id U0BMYT2FL (first at user 0); the first was kept",
            "channels.json, conversation 2: duplicate conversation id C0JGLMMNX (first at channels.json, conversation 0); the first was kept",
        ]
    );
    assert_eq!(
        lines(&s.warnings),
        vec!["channels.json, conversation 1: C0JL6CGQ2 is listed but the export has no folder traveling-sailor/: no messages imported for it"]
    );
    assert_eq!((s.users, s.channels), (4, 2));
    let enrique = expected_counts(&testdata(EXPORT))["enrique"].messages;
    assert_eq!(s.totals.messages, enrique);
    assert_eq!(meta.stats(&ws()).await.unwrap().messages, enrique);
}

#[cfg(unix)]
#[tokio::test]
async fn symbolic_links_are_refused_and_reported() {
    let (tmp, root) = copy_export();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(
        outside.join("2099-01-01.json"),
        r#"[{"type":"message","user":"U0BMYT2FL","ts":"4070908800.000001","text":"from outside the export"}]"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.join("2099-01-01.json"),
        root.join("enrique/2099-01-01.json"),
    )
    .unwrap();
    // a folder link, listed as a conversation so that it would be imported if followed
    std::os::unix::fs::symlink(&outside, root.join("elsewhere")).unwrap();
    let mut channels = read_json(&root.join("channels.json"));
    channels
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"id": "C0ELSEWHR", "name": "elsewhere"}));
    write_json(&root.join("channels.json"), &channels);

    let meta = store();
    let s = import(&meta, &root).await.unwrap();
    assert_eq!(
        lines(&s.skipped),
        vec![
            "elsewhere: a symbolic link: not followed (nothing outside the export is read)",
            "enrique/2099-01-01.json: a symbolic link: not followed (nothing outside the export is read)",
        ]
    );
    assert_eq!(
        lines(&s.warnings),
        vec!["channels.json, conversation 2: C0ELSEWHR is listed but the export has no folder elsewhere/: no messages imported for it"]
    );
    assert_eq!(s.totals.messages, pristine_total());
    assert_eq!(meta.stats(&ws()).await.unwrap().messages, pristine_total());

    // a linked listing cannot be read: the import fails before writing
    let (tmp, root) = copy_export();
    let users = tmp.path().join("users-elsewhere.json");
    std::fs::rename(root.join("users.json"), &users).unwrap();
    std::os::unix::fs::symlink(&users, root.join("users.json")).unwrap();
    let meta = store();
    let e = import(&meta, &root).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(
        e.message(),
        "cannot import: users.json cannot be read: users.json is a symbolic link: links are not followed, so nothing outside the export is read; nothing was written"
    );
    assert!(meta.list_workspaces().await.unwrap().is_empty());
}

/// Offsets of the uncompressed-size fields of `name` in a zip: the local header's, the central
/// directory's.
fn size_fields(zip: &[u8], name: &str) -> (usize, usize) {
    let n = name.as_bytes();
    let found: Vec<usize> = zip
        .windows(n.len())
        .enumerate()
        .filter(|(_, w)| *w == n)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        found.len(),
        2,
        "{name} in local header and central directory"
    );
    let (local, central) = (found[0], found[1]);
    assert_eq!(&zip[local - 30..local - 26], b"PK\x03\x04");
    assert_eq!(&zip[central - 46..central - 42], b"PK\x01\x02");
    (local - 30 + 22, central - 46 + 24)
}

#[tokio::test]
async fn a_zip_entry_that_inflates_past_its_header_is_refused_after_reading_what_it_declared() {
    let dir = testdata(EXPORT);
    let tmp = tempfile::tempdir().unwrap();
    let zip_path = tmp.path().join("export.zip");
    let bomb = "enrique/2016-01-13.json";
    let inflated: usize = 64 * 1024 * 1024;
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for entry in walk(&dir) {
            let rel = entry
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .to_string();
            zip.start_file(rel, opts).unwrap();
            zip.write_all(&std::fs::read(&entry).unwrap()).unwrap();
        }
        // 64 MiB of blanks compress to a few tens of kilobytes
        zip.start_file(bomb, opts).unwrap();
        let chunk = vec![b' '; 1024 * 1024];
        zip.write_all(b"[").unwrap();
        for _ in 0..inflated / chunk.len() {
            zip.write_all(&chunk).unwrap();
        }
        zip.write_all(b"]").unwrap();
        zip.finish().unwrap();
    }
    // the headers now say 1,000 bytes
    let mut bytes = std::fs::read(&zip_path).unwrap();
    assert!(bytes.len() < inflated / 100, "{} bytes", bytes.len());
    let (local, central) = size_fields(&bytes, bomb);
    bytes[local..local + 4].copy_from_slice(&1000u32.to_le_bytes());
    bytes[central..central + 4].copy_from_slice(&1000u32.to_le_bytes());
    std::fs::write(&zip_path, &bytes).unwrap();

    let meta = store();
    let s = import(&meta, &zip_path).await.unwrap();
    assert_eq!(
        lines(&s.skipped),
        vec![format!("{bomb}: {bomb} inflates past the 1000 bytes its zip header declares: a corrupt or malicious archive (zip bomb); refused after reading 1001 bytes")]
    );
    assert_eq!(s.totals.messages, pristine_total());

    // an entry declaring more than allowed is not read at all
    let meta = store();
    let s = import_with(
        &meta,
        &zip_path,
        ImportOptions {
            max_file_bytes: 5_000,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    // users.json (8,902 bytes) is over the cap: a listing that cannot be read stops the import
    assert_eq!(
        s.message(),
        "cannot import: users.json cannot be read: users.json is 8902 bytes, more than the 5000 allowed; nothing was written"
    );
}

#[tokio::test]
async fn a_conversation_asked_for_but_absent_is_listed_as_missing() {
    let meta = store();
    let s = import_with(
        &meta,
        &testdata(EXPORT),
        ImportOptions {
            only_channels: Some(vec!["C0JGLMMNX".into(), "no-such-channel".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.missing,
        vec!["conversation no-such-channel was asked for but is not in the export"]
    );
    assert_eq!(s.per_channel.keys().collect::<Vec<_>>(), vec!["enrique"]);
    assert_eq!(
        s.totals.messages,
        expected_counts(&testdata(EXPORT))["enrique"].messages
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}
