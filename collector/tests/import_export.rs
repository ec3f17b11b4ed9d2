//! Imports the two real exports (and synthetic bad ones) into the in-memory reference stores.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use chatvault_collector::{Collector, ImportOptions, Relay, RelayOptions};
use chatvault_core::testing::{MemoryContentStore, MemoryMetadataStore};
use chatvault_core::{ContentStore, MetadataStore, PageRequest, RetryPolicy, WorkspaceId};
use common::*;

fn fast_relay() -> RelayOptions {
    RelayOptions {
        retry: RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        },
        poll_interval: Duration::from_millis(5),
        ..Default::default()
    }
}

async fn import_and_check(name: &str) {
    let path = testdata(name);
    let expected = expected_counts(&path);
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let content: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    let embedder = CountingEmbedder::new();
    let ws = WorkspaceId::new("T1").unwrap();
    let collector = Collector::new(meta.clone(), ws.clone());
    let summary = collector
        .import_export(&path, ImportOptions::default())
        .await
        .unwrap();
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    eprintln!(
        "{name}: {:?} metadata-only {} per subtype {:?}",
        summary.totals, summary.metadata_only, summary.per_subtype
    );

    // the summary and the store both agree with the JSON, channel by channel
    let stored = stored_counts(meta.as_ref(), &ws).await;
    for (folder, exp) in &expected {
        let got = summary.per_channel.get(folder).copied().unwrap_or_default();
        assert_eq!(
            (
                got.messages,
                got.replies,
                got.reactions,
                got.files,
                got.links
            ),
            (
                exp.messages,
                exp.replies,
                exp.reactions,
                exp.files,
                exp.links
            ),
            "summary of {folder}"
        );
        let st = stored.get(folder).copied().unwrap_or_default();
        assert_eq!(st, *exp, "store of {folder}");
    }
    let total: u64 = expected.values().map(|e| e.messages).sum();
    assert_eq!(summary.totals.messages, total);

    let relay = Relay::new(
        meta.clone(),
        content.clone(),
        embedder.clone(),
        fast_relay(),
    );
    let report = relay.drain().await.unwrap();
    assert_eq!(report.acked, summary.outbox_enqueued);
    let docs = content
        .list_versions(&ws, &PageRequest::first(1_000_000))
        .await
        .unwrap();
    assert_eq!(docs.len() as u64, summary.totals.with_content);
    assert_eq!(embedder.texts(), summary.totals.with_content);
    let stats = meta.stats(&ws).await.unwrap();
    assert_eq!(stats.messages, total);
    assert_eq!(stats.with_content, summary.totals.with_content);
    let ob = meta.outbox_stats(Some(ws.clone())).await.unwrap();
    assert_eq!((ob.pending, ob.leased, ob.dead), (0, 0, 0));

    // re-import: nothing changes, nothing is enqueued or embedded again
    let again = collector
        .import_export(&path, ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(again.outbox_enqueued, 0);
    let r2 = relay.drain().await.unwrap();
    assert_eq!(r2.claimed, 0);
    assert_eq!(embedder.texts(), summary.totals.with_content);
    assert_eq!(meta.stats(&ws).await.unwrap(), stats);
}

#[tokio::test]
async fn testarchive_imports_with_exact_counts() {
    import_and_check("slack-export-viewer-testarchive").await;
}

#[tokio::test]
async fn houstondatavis_imports_with_exact_counts() {
    import_and_check("slack-export-houstondatavis").await;
}

#[tokio::test]
async fn modern_export_with_threads_files_blocks_and_all_conversation_kinds() {
    import_and_check("modern-export").await;
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let content: Arc<dyn ContentStore> = Arc::new(MemoryContentStore::new());
    let ws = WorkspaceId::new("T1").unwrap();
    let s = Collector::new(meta.clone(), ws.clone())
        .import_export(testdata("modern-export"), ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (s.users, s.channels, s.totals.messages, s.totals.replies),
        (3, 4, 12, 4)
    );
    Relay::new(
        meta.clone(),
        content.clone(),
        CountingEmbedder::new(),
        fast_relay(),
    )
    .drain()
    .await
    .unwrap();
    use chatvault_core::{ChannelId, ChannelKind, MessageKey, UserId};
    let kinds: Vec<(String, ChannelKind)> = meta
        .list_channels(&ws)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id.to_string(), c.kind))
        .collect();
    assert!(kinds.contains(&("C1".into(), ChannelKind::Public)));
    assert!(kinds.contains(&("G1".into(), ChannelKind::Private)));
    assert!(kinds.contains(&("D1".into(), ChannelKind::Im)));
    assert!(kinds.contains(&("G2".into(), ChannelKind::Mpim)));
    let c1 = ChannelId::new("C1").unwrap();
    assert_eq!(
        meta.channel_members(&ws, &c1).await.unwrap(),
        vec![UserId::new("U1").unwrap(), UserId::new("U2").unwrap()]
    );
    let parent = MessageKey::parse("T1", "C1", "1600000100.000100").unwrap();
    let d = meta
        .get_messages(&ws, std::slice::from_ref(&parent))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (
            d.meta.reply_count,
            d.meta.reaction_count,
            d.meta.mention_count
        ),
        (3, 3, 1)
    );
    assert_eq!(d.links.len(), 1);
    assert_eq!(
        meta.thread_participants(&ws, &parent).await.unwrap().len(),
        2
    );
    // text lives in the content store only, rendered: names instead of ids
    let doc = content.get(&ws, &[parent]).await.unwrap().remove(0);
    assert_eq!(
        doc.content.text,
        "Deploy plan: PR 42 (https://github.com/acme/app/pull/42) cc @Bob B"
    );
    // the tombstone is metadata only; its reply is content
    let tomb = MessageKey::parse("T1", "C1", "1600086400.000100").unwrap();
    assert!(content
        .get(&ws, std::slice::from_ref(&tomb))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(meta.get_messages(&ws, &[tomb]).await.unwrap().len(), 1);
    // the bot message: attachment and block text, links from both
    let bot = MessageKey::parse("T1", "C1", "1600086600.000100").unwrap();
    let doc = content
        .get(&ws, std::slice::from_ref(&bot))
        .await
        .unwrap()
        .remove(0);
    assert!(
        doc.content.text.contains("Build 7 passed")
            && doc.content.text.contains("Details at the log")
    );
    assert_eq!(
        meta.get_messages(&ws, &[bot]).await.unwrap()[0].links.len(),
        3
    );
    // private visibility reaches the content attributes
    let private = MessageKey::parse("T1", "G1", "1600000500.000100").unwrap();
    let doc = content.get(&ws, &[private]).await.unwrap().remove(0);
    assert_eq!(doc.content.attributes.visibility, ChannelKind::Private);
    assert!(doc.content.text.contains("#general"));
}

#[tokio::test]
async fn a_zip_imports_like_the_directory() {
    let dir = testdata("slack-export-viewer-testarchive");
    let tmp = tempfile::tempdir().unwrap();
    let zip_path = tmp.path().join("export.zip");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        for entry in walk(&dir) {
            let rel = entry
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .to_string();
            // inside a top folder, as Slack's zips sometimes are
            zip.start_file(format!("My Export/{rel}"), opts).unwrap();
            zip.write_all(&std::fs::read(&entry).unwrap()).unwrap();
        }
        zip.finish().unwrap();
    }
    let ws = WorkspaceId::new("T1").unwrap();
    let m1: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let m2: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let s1 = Collector::new(m1.clone(), ws.clone())
        .import_export(&dir, ImportOptions::default())
        .await
        .unwrap();
    let s2 = Collector::new(m2.clone(), ws.clone())
        .import_export(&zip_path, ImportOptions::default())
        .await
        .unwrap();
    assert!(s2.skipped.is_empty(), "{:?}", s2.skipped);
    assert_eq!(s1.per_channel, s2.per_channel);
    assert_eq!(m1.stats(&ws).await.unwrap(), m2.stats(&ws).await.unwrap());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
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

#[tokio::test]
async fn bad_input_is_skipped_reported_and_the_rest_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::write(
        root.join("channels.json"),
        r#"[{"id":"C1","name":"general","members":["U1"]}]"#,
    )
    .unwrap();
    std::fs::write(
        root.join("users.json"),
        r#"[{"id":"U1","name":"ann"},{"name":"no id"}]"#,
    )
    .unwrap();
    let ch = root.join("general");
    std::fs::create_dir(&ch).unwrap();
    std::fs::write(
        ch.join("2020-01-01.json"),
        "[{\"ts\": \"1.0\", \"text\": \"ok\"},\n {broken",
    )
    .unwrap();
    std::fs::write(
        ch.join("2020-01-02.json"),
        r#"[{"text":"no ts"},{"ts":"2.0","text":"fine","user":"U1"},{"ts":"3.0","subtype":"weird_new","text":"x"}]"#,
    )
    .unwrap();
    let mut bad_utf8 = br#"[{"ts":"4.0","text":"caf"#.to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    bad_utf8.extend_from_slice(br#"e"}]"#);
    std::fs::write(ch.join("2020-01-03.json"), bad_utf8).unwrap();
    let big = format!(
        r#"[{{"ts":"5.0","text":"{}"}},{{"ts":"6.0","text":"after big"}}]"#,
        "a".repeat(2 * 1024 * 1024)
    );
    std::fs::write(ch.join("2020-01-04.json"), big).unwrap();
    std::fs::create_dir(root.join("unlisted")).unwrap();
    std::fs::write(root.join("unlisted/2020-01-01.json"), "[]").unwrap();

    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let ws = WorkspaceId::new("T1").unwrap();
    let s = Collector::new(meta.clone(), ws.clone())
        .import_export(root, ImportOptions::default())
        .await
        .unwrap();
    let issues: Vec<String> = s.skipped.iter().map(|i| i.to_string()).collect();
    let has = |needle: &str| issues.iter().any(|i| i.contains(needle));
    assert!(has("users.json, user 1"), "{issues:#?}");
    assert!(has("general/2020-01-01.json, line 2"), "{issues:#?}");
    assert!(
        has("general/2020-01-02.json, message 0 (ts ?)") && has("`ts`"),
        "{issues:#?}"
    );
    assert!(has("message 2 (ts 3.0)") && has("weird_new"), "{issues:#?}");
    assert!(
        has("general/2020-01-04.json, message 0 (ts 5.0)") && has("bytes"),
        "{issues:#?}"
    );
    assert!(has("unlisted/"), "{issues:#?}");
    assert_eq!(s.skipped.len(), 6, "{issues:#?}");
    assert_eq!(s.warnings.len(), 1);
    assert!(s.warnings[0]
        .to_string()
        .contains("general/2020-01-03.json"));
    assert!(s.warnings[0].reason.contains("UTF-8"));
    // 2.0, 4.0 (repaired) and 6.0 are stored
    assert_eq!(s.totals.messages, 3);
    assert_eq!(meta.stats(&ws).await.unwrap().messages, 3);
}

#[tokio::test]
async fn a_path_without_an_export_is_refused_and_nothing_is_stored() {
    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let collector = Collector::new(meta.clone(), WorkspaceId::new("T1").unwrap());
    let refused = |path: &std::path::Path| {
        let collector = collector.clone();
        let path = path.to_path_buf();
        async move {
            let e = collector
                .import_export(&path, ImportOptions::default())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), chatvault_core::ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains("no Slack export found"), "{e}");
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
            e
        }
    };

    // an empty folder
    let empty = tempfile::tempdir().unwrap();
    refused(empty.path()).await;

    // conversation folders and users.json, but nothing listing the conversations: no folder
    // could be imported
    let unlisted = tempfile::tempdir().unwrap();
    std::fs::write(unlisted.path().join("users.json"), r#"[{"id":"U1"}]"#).unwrap();
    std::fs::create_dir(unlisted.path().join("general")).unwrap();
    std::fs::write(unlisted.path().join("general/2020-01-01.json"), "[]").unwrap();
    refused(unlisted.path()).await;

    // the folder above an export: the message points at the export
    let above = tempfile::tempdir().unwrap();
    let inner = above.path().join("acme-export");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(inner.join("channels.json"), "[]").unwrap();
    let e = refused(above.path()).await;
    assert!(e.to_string().contains("acme-export"), "{e}");

    // a zip without an export, at its top or in a folder
    let zip_path = above.path().join("not-an-export.zip");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("notes/users.json", opts).unwrap();
        zip.write_all(b"[]").unwrap();
        zip.start_file("notes/general/2020-01-01.json", opts)
            .unwrap();
        zip.write_all(b"[]").unwrap();
        zip.start_file("__MACOSX/notes/channels.json", opts)
            .unwrap();
        zip.write_all(b"[]").unwrap();
        zip.finish().unwrap();
    }
    refused(&zip_path).await;

    assert!(meta.list_workspaces().await.unwrap().is_empty());

    // the export itself still imports, and only then is the workspace registered
    let s = collector
        .import_export(&inner, ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(s.totals.messages, 0);
    assert_eq!(meta.list_workspaces().await.unwrap().len(), 1);
}

/// An export in slackdump's layout (its `export` command, as its documentation describes it):
/// private channels listed in `channels.json` with `is_private`, `dms.json` entries of only
/// `id`/`created`/`members`, folders named by id for DMs, by name otherwise, downloaded files in
/// `__uploads/<file id>/`, and messages carrying `user_team`, `source_team` and `user_profile`.
#[tokio::test]
async fn a_slackdump_export_imports_with_private_channels_kept_private() {
    use chatvault_core::{ChannelId, ChannelKind, UserId};
    use serde_json::json;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let write = |rel: &str, v: serde_json::Value| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    };
    write(
        "users.json",
        json!([
            {"id":"U01","team_id":"T01","name":"alice","real_name":"Alice A","profile":{"display_name":"alice"}},
            {"id":"U02","team_id":"T01","name":"bob","profile":{"real_name":"Bob B"}},
            {"id":"U03","team_id":"T01","name":"carol","is_bot":false}
        ]),
    );
    write(
        "channels.json",
        json!([
            {"id":"C01","name":"everyone","created":1640995200,"is_channel":true,"is_general":true,
             "members":["U01","U02","U03"],"topic":{"value":"all hands"},"purpose":{"value":""}},
            {"id":"C02","name":"secret","created":1640995200,"is_channel":true,"is_private":true,
             "is_group":false,"members":["U01","U02"]}
        ]),
    );
    write(
        "dms.json",
        json!([{"id":"D01","created":1640995200,"members":["U03","U01"]}]),
    );
    write(
        "mpims.json",
        json!([{"id":"C03","name":"mpdm-alice--bob--carol-1","created":1640995200,"is_mpim":true,
            "members":["U01","U02","U03"]}]),
    );
    let profile =
        |name: &str| json!({"real_name": name, "display_name": name, "name": name, "team": "T01"});
    write(
        "everyone/2022-01-01.json",
        json!([
            {"type":"message","user":"U01","ts":"1641049200.000100","text":"happy new year <@U02>",
             "user_team":"T01","source_team":"T01","user_profile":profile("alice"),
             "thread_ts":"1641049200.000100","reply_count":1,"reply_users_count":1,
             "latest_reply":"1641049300.000100","reply_users":["U02"]},
            {"type":"message","user":"U02","ts":"1641049300.000100","text":"same to you",
             "thread_ts":"1641049200.000100","parent_user_id":"U01",
             "user_team":"T01","source_team":"T01","user_profile":profile("bob")}
        ]),
    );
    write(
        "secret/2022-01-04.json",
        json!([{"type":"message","user":"U01","ts":"1641308400.000100","text":"the launch date is friday",
            "user_team":"T01","source_team":"T01","user_profile":profile("alice")}]),
    );
    write(
        "D01/2022-01-04.json",
        json!([{"type":"message","user":"U03","ts":"1641308500.000100","text":"lunch?",
            "user_team":"T01","source_team":"T01","user_profile":profile("carol")}]),
    );
    write(
        "mpdm-alice--bob--carol-1/2022-01-04.json",
        json!([{"type":"message","user":"U02","ts":"1641308600.000100","text":"group plans",
            "files":[{"id":"F02PM6A1AUA","name":"Chevy.jpg","title":"Chevy","mimetype":"image/jpeg"}],
            "user_team":"T01","source_team":"T01","user_profile":profile("bob")}]),
    );
    std::fs::create_dir_all(root.join("__uploads/F02PM6A1AUA")).unwrap();
    std::fs::write(
        root.join("__uploads/F02PM6A1AUA/Chevy.jpg"),
        [0xff, 0xd8, 0xff],
    )
    .unwrap();

    let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadataStore::new());
    let ws = WorkspaceId::new("T01").unwrap();
    let s = Collector::new(meta.clone(), ws.clone())
        .import_export(root, ImportOptions::default())
        .await
        .unwrap();
    assert!(s.skipped.is_empty(), "{:?}", s.skipped);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(
        (
            s.users,
            s.channels,
            s.totals.messages,
            s.totals.replies,
            s.totals.files
        ),
        (3, 4, 5, 1, 1)
    );
    let kinds: std::collections::BTreeMap<String, ChannelKind> = meta
        .list_channels(&ws)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id.to_string(), c.kind))
        .collect();
    assert_eq!(kinds["C01"], ChannelKind::Public);
    // listed in channels.json, but private: never public
    assert_eq!(kinds["C02"], ChannelKind::Private);
    assert_eq!(kinds["D01"], ChannelKind::Im);
    assert_eq!(kinds["C03"], ChannelKind::Mpim);
    let u = |id: &str| UserId::new(id).unwrap();
    let mut dm = meta
        .channel_members(&ws, &ChannelId::new("D01").unwrap())
        .await
        .unwrap();
    dm.sort();
    assert_eq!(dm, vec![u("U01"), u("U03")]);
    let mut seen_by_carol = meta.user_channels(&ws, &u("U03")).await.unwrap();
    seen_by_carol.sort();
    assert!(!seen_by_carol.contains(&ChannelId::new("C02").unwrap()));
}
