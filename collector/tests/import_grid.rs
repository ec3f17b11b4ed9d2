//! Enterprise Grid org exports (`testdata/slack-export-grid`): each workspace of the org becomes
//! its own chatvault workspace, and nothing of one is visible through another. Real stores:
//! SQLite metadata and the embedded vector store in a tempdir.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use chatvault_collector::{
    is_grid_export, Collector, GridImport, GridImportOptions, GridImportSummary, ImportOptions,
    Relay, RelayOptions,
};
use chatvault_core::{ContentStore, ErrorKind, MetadataStore, UserId, WorkspaceId};
use chatvault_query::{QueryEngine, Scope, SearchMode, SearchRequest};
use chatvault_storage_postgres::{ConnectOptions, SqlMetadataStore};
use chatvault_storage_vector::{VectorStore, VectorStoreOptions};
use common::*;

const GRID: &str = "slack-export-grid";
const MESOS: &str = "T0BMHLSRH";
const HOUSTON: &str = "T061A2UFL";

struct Stores {
    meta: Arc<dyn MetadataStore>,
    content: Arc<dyn ContentStore>,
    _dir: tempfile::TempDir,
}

async fn stores() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("meta.db").display());
    let meta: Arc<dyn MetadataStore> = Arc::new(
        SqlMetadataStore::connect(&url, ConnectOptions::default())
            .await
            .unwrap(),
    );
    let content: Arc<dyn ContentStore> = Arc::new(
        VectorStore::open(dir.path().join("content"), VectorStoreOptions::default()).unwrap(),
    );
    Stores {
        meta,
        content,
        _dir: dir,
    }
}

async fn import(
    s: &Stores,
    root: &Path,
    only: Option<&[&str]>,
) -> chatvault_core::Result<GridImportSummary> {
    GridImport::new(s.meta.clone())
        .import(
            root,
            GridImportOptions {
                only_workspaces: only.map(|o| o.iter().map(|w| w.to_string()).collect()),
                ..Default::default()
            },
        )
        .await
}

fn ws(id: &str) -> WorkspaceId {
    WorkspaceId::new(id).unwrap()
}

/// Messages in a conversation folder, counted as the importer stores them.
fn messages_in(folder: &Path) -> u64 {
    // counted alone: the folder it sits in also holds teams/
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(folder, &tmp.path().join("c"));
    expected_counts(tmp.path())["c"].messages
}

/// Messages in a workspace export folder, all conversations.
fn messages_under(dir: &Path) -> u64 {
    expected_counts(dir).values().map(|e| e.messages).sum()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else if p.extension().is_some_and(|x| x == "json") {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

/// A fresh copy of the Grid fixture (JSON files only).
fn copy_grid() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("grid");
    copy_dir(&testdata(GRID), &root);
    (tmp, root)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn lines(issues: &[chatvault_collector::ImportIssue]) -> Vec<String> {
    issues.iter().map(|i| i.to_string()).collect()
}

async fn channel_ids(meta: &Arc<dyn MetadataStore>, id: &str) -> Vec<String> {
    let mut out: Vec<String> = meta
        .list_channels(&ws(id))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id.to_string())
        .collect();
    out.sort();
    out
}

async fn user_ids(meta: &Arc<dyn MetadataStore>, id: &str) -> Vec<String> {
    let mut out: Vec<String> = meta
        .list_users(&ws(id))
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id.to_string())
        .collect();
    out.sort();
    out
}

/// The channels in which `workspace`'s search for `query`, as `scope`, finds messages.
async fn found_in(engine: &QueryEngine, workspace: &str, query: &str, scope: Scope) -> Vec<String> {
    let r = engine
        .search(
            &ws(workspace),
            SearchRequest::new(query)
                .mode(SearchMode::Lexical)
                .scope(scope)
                .limit(50),
        )
        .await
        .unwrap();
    let mut out: Vec<String> = r
        .hits
        .iter()
        .map(|h| h.message.key.channel.to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn user(id: &str) -> Scope {
    Scope::User(UserId::new(id).unwrap())
}

#[tokio::test]
async fn each_workspace_of_the_org_is_imported_into_its_own_workspace() {
    let root = testdata(GRID);
    assert!(is_grid_export(&root).unwrap());
    let s = stores().await;
    let summary = import(&s, &root, None).await.unwrap();
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    assert!(summary.missing.is_empty());

    let got: Vec<(String, String, String)> = summary
        .workspaces
        .iter()
        .map(|(w, _)| {
            (
                w.folder.clone(),
                w.workspace.to_string(),
                w.team_from.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "houstondatavis".to_string(),
                HOUSTON.to_string(),
                "teams/houstondatavis/users.json: team_id of 22 of its 22 members".to_string()
            ),
            (
                "mesos-magellan".to_string(),
                MESOS.to_string(),
                "teams/mesos-magellan/users.json: team_id of 4 of its 4 members".to_string()
            ),
        ]
    );

    // What each stored is what its folders and the org-level conversations it is in hold.
    let shared = messages_in(&root.join("traveling-sailor"));
    let dm = messages_in(&root.join("D0GRIDDM1"));
    let houston = &summary.workspaces[0].1;
    let mesos = &summary.workspaces[1].1;
    for (_, s) in &summary.workspaces {
        assert!(s.skipped.is_empty(), "{:?}", s.skipped);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }
    assert_eq!(
        houston.totals.messages,
        messages_under(&root.join("teams/houstondatavis")) + shared
    );
    assert_eq!(
        mesos.totals.messages,
        messages_under(&root.join("teams/mesos-magellan")) + shared + dm
    );
    assert_eq!(
        summary.messages(),
        houston.totals.messages + mesos.totals.messages
    );
    assert_eq!(
        mesos.per_channel.keys().collect::<Vec<_>>(),
        [
            "D0GRIDDM1",
            "teams/mesos-magellan/enrique",
            "teams/mesos-magellan/secret-sailors",
            "traveling-sailor"
        ]
    );

    // The workspace boundary: the private channel and the DM exist only in their workspace;
    // the channel shared by both is in both.
    assert_eq!(
        channel_ids(&s.meta, MESOS).await,
        ["C0JGLMMNX", "C0JL6CGQ2", "D0GRIDDM1", "G0GRIDSEC1"]
    );
    assert_eq!(
        channel_ids(&s.meta, HOUSTON).await,
        ["C064FGV36", "C0JL6CGQ2", "C0PNFE8NS"]
    );
    // Users: a workspace's own, and org users of several workspaces (U0BMQB6JE) in each.
    let mesos_users = user_ids(&s.meta, MESOS).await;
    assert_eq!(
        mesos_users,
        ["U0BMM2FEH", "U0BMQB6JE", "U0BMS113R", "U0BMYT2FL"]
    );
    let houston_users = user_ids(&s.meta, HOUSTON).await;
    assert_eq!(houston_users.len(), 24, "{houston_users:?}");
    assert!(houston_users.contains(&"U0BMQB6JE".to_string()));
    assert!(!houston_users.contains(&"U0BMYT2FL".to_string()));
    // The team is recorded, so that events of that team find the workspace.
    let teams = s.meta.list_teams(&ws(MESOS)).await.unwrap();
    assert_eq!(teams.len(), 1);
    assert_eq!(teams[0].id.as_str(), MESOS);
    let names: Vec<String> = {
        let mut w: Vec<_> = s.meta.list_workspaces().await.unwrap();
        w.sort_by(|a, b| a.id.cmp(&b.id));
        w.into_iter()
            .map(|w| format!("{} {}", w.id, w.name))
            .collect()
    };
    assert_eq!(
        names,
        ["T061A2UFL houstondatavis", "T0BMHLSRH mesos-magellan"]
    );

    // Search, per workspace and viewer.
    let report = Relay::new(
        s.meta.clone(),
        s.content.clone(),
        CountingEmbedder::new(),
        RelayOptions::default(),
    )
    .drain()
    .await
    .unwrap();
    assert_eq!(report.dead_lettered, 0, "{report:?}");
    let embedder = CountingEmbedder::new();
    let engine = QueryEngine::new(s.meta.clone(), s.content.clone(), embedder);
    // the private channel: its members see it, nobody else, and never from the other workspace
    assert_eq!(
        found_in(&engine, MESOS, "metaheuristic", user("U0BMQB6JE")).await,
        ["G0GRIDSEC1"]
    );
    assert!(found_in(&engine, MESOS, "metaheuristic", user("U0BMS113R"))
        .await
        .is_empty());
    assert!(found_in(&engine, MESOS, "metaheuristic", Scope::Public)
        .await
        .is_empty());
    assert!(found_in(&engine, HOUSTON, "metaheuristic", Scope::Admin)
        .await
        .is_empty());
    assert!(
        found_in(&engine, HOUSTON, "metaheuristic", user("U0BMQB6JE"))
            .await
            .is_empty()
    );
    // the DM: its members in its workspace only
    let dm = "D0GRIDDM1".to_string();
    assert!(found_in(&engine, MESOS, "executor", user("U0BMYT2FL"))
        .await
        .contains(&dm));
    assert!(!found_in(&engine, MESOS, "executor", user("U0BMS113R"))
        .await
        .contains(&dm));
    let houston_found = found_in(&engine, HOUSTON, "executor", Scope::Admin).await;
    assert!(!houston_found.contains(&dm), "{houston_found:?}");
    // the shared channel: in both; a workspace's own channels: in that one only
    assert_eq!(
        found_in(&engine, HOUSTON, "simanneal", Scope::Public).await,
        ["C0JL6CGQ2"]
    );
    assert_eq!(
        found_in(&engine, MESOS, "simanneal", Scope::Public).await,
        ["C0JGLMMNX", "C0JL6CGQ2"]
    );
    let tools_word = "jupyter";
    assert!(!found_in(&engine, HOUSTON, tools_word, Scope::Public)
        .await
        .is_empty());
    assert!(found_in(&engine, MESOS, tools_word, Scope::Admin)
        .await
        .is_empty());

    // Importing again changes nothing and enqueues nothing.
    let again = import(&s, &root, None).await.unwrap();
    for (_, w) in &again.workspaces {
        assert_eq!(w.outbox_enqueued, 0);
    }
    assert_eq!(again.messages(), summary.messages());
}

#[tokio::test]
async fn a_zip_of_the_org_imports_like_the_directory() {
    let dir = testdata(GRID);
    let tmp = tempfile::tempdir().unwrap();
    let zip_path = tmp.path().join("grid.zip");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        for entry in walk(&dir) {
            let rel = entry
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .to_string();
            zip.start_file(format!("Org Export/{rel}"), opts).unwrap();
            zip.write_all(&std::fs::read(&entry).unwrap()).unwrap();
        }
        zip.finish().unwrap();
    }
    let (a, b) = (stores().await, stores().await);
    let from_dir = import(&a, &dir, None).await.unwrap();
    let from_zip = import(&b, &zip_path, None).await.unwrap();
    assert!(from_zip.skipped.is_empty(), "{:?}", from_zip.skipped);
    assert_eq!(from_dir.workspaces.len(), from_zip.workspaces.len());
    for ((w1, s1), (w2, s2)) in from_dir.workspaces.iter().zip(&from_zip.workspaces) {
        assert_eq!(w1, w2);
        assert_eq!(s1.per_channel, s2.per_channel);
        assert!(s2.skipped.is_empty(), "{:?}", s2.skipped);
    }
}

#[tokio::test]
async fn only_the_workspaces_asked_for_are_imported() {
    let s = stores().await;
    let summary = import(&s, &testdata(GRID), Some(&["houstondatavis"]))
        .await
        .unwrap();
    assert_eq!(summary.workspaces.len(), 1);
    assert_eq!(summary.workspaces[0].0.workspace.as_str(), HOUSTON);
    assert_eq!(summary.not_selected.len(), 1);
    assert_eq!(summary.not_selected[0].folder, "mesos-magellan");
    let stored: Vec<String> = s
        .meta
        .list_workspaces()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id.to_string())
        .collect();
    assert_eq!(stored, [HOUSTON]);

    // by team id too
    let s = stores().await;
    let summary = import(&s, &testdata(GRID), Some(&[MESOS])).await.unwrap();
    assert_eq!(summary.workspaces.len(), 1);
    assert_eq!(summary.workspaces[0].0.folder, "mesos-magellan");
}

#[tokio::test]
async fn a_workspace_not_in_the_archive_is_refused_before_anything_is_written() {
    let s = stores().await;
    let e = import(&s, &testdata(GRID), Some(&[MESOS, "T0NOTHERE"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.message()
            .starts_with("workspace T0NOTHERE is not in the Enterprise Grid export"),
        "{e}"
    );
    assert!(
        e.message().ends_with(
            "it holds houstondatavis (T061A2UFL), mesos-magellan (T0BMHLSRH); nothing was written"
        ),
        "{e}"
    );
    assert!(s.meta.list_workspaces().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_grid_export_is_refused_as_one_workspace() {
    let s = stores().await;
    let e = Collector::new(s.meta.clone(), ws("T1"))
        .import_export(testdata(GRID), ImportOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().contains(
            "is an Enterprise Grid org export holding 2 workspaces (houstondatavis, mesos-magellan)"
        ),
        "{e}"
    );
    assert!(s.meta.list_workspaces().await.unwrap().is_empty());
}

/// A damaged listing anywhere in the org fails the whole import, naming the file, before any
/// workspace is written.
#[tokio::test]
async fn a_damaged_listing_fails_the_import_naming_its_file() {
    for (file, content, expected) in [
        (
            "teams/mesos-magellan/groups.json",
            "{\"G1\": {}}",
            "cannot import: teams/mesos-magellan/groups.json must hold a JSON array of conversations, but holds an object; nothing was written",
        ),
        (
            "teams/houstondatavis/users.json",
            "[{\"id\": \"U1\",",
            "cannot import: malformed JSON in teams/houstondatavis/users.json at line 1, column 13: EOF while parsing a value at line 1 column 13; nothing was written",
        ),
        (
            "org_users.json",
            "\"everyone\"",
            "cannot import: org_users.json must hold a JSON array of users, but holds a string; nothing was written",
        ),
        (
            "dms.json",
            "null",
            "cannot import: dms.json must hold a JSON array of conversations, but holds null; nothing was written",
        ),
    ] {
        let (_tmp, root) = copy_grid();
        std::fs::write(root.join(file), content).unwrap();
        let s = stores().await;
        let e = import(&s, &root, None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{file}: {e}");
        assert_eq!(e.message(), expected, "{file}");
        assert_eq!(e.context("file"), Some(file), "{file}");
        assert!(
            s.meta.list_workspaces().await.unwrap().is_empty(),
            "{file}: something was written"
        );
    }
}

/// Damaged items are skipped and reported with their file and position; the rest is imported.
#[tokio::test]
async fn damaged_items_of_the_org_are_reported_with_file_and_position() {
    let (_tmp, root) = copy_grid();
    // an org-level channel that names no workspace, whose messages name none either
    let mut channels = read_json(&root.join("channels.json"));
    channels.as_array_mut().unwrap().push(json!({
        "id": "C0ORPHAN1", "name": "orphan", "created": "1452845000", "members": ["U0BMQB6JE"]
    }));
    write_json(&root.join("channels.json"), &channels);
    std::fs::create_dir(root.join("orphan")).unwrap();
    write_json(
        &root.join("orphan/2016-01-20.json"),
        &json!([{"type": "message", "user": "U0BMQB6JE", "ts": "1453300000.000100", "text": "nobody's"}]),
    );
    // a top-level folder no org listing lists
    std::fs::create_dir(root.join("stray")).unwrap();
    write_json(
        &root.join("stray/2016-01-20.json"),
        &json!([{"type": "message", "user": "U0BMQB6JE", "ts": "1453300000.000200", "text": "lost"}]),
    );
    // a workspace's conversation without an id, and a duplicate user in its users.json
    let ch = root.join("teams/mesos-magellan/channels.json");
    let mut channels = read_json(&ch);
    channels
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "no-id"}));
    write_json(&ch, &channels);
    let us = root.join("teams/houstondatavis/users.json");
    let mut users = read_json(&us);
    let first = users[0].clone();
    users.as_array_mut().unwrap().push(first);
    write_json(&us, &users);

    let s = stores().await;
    let summary = import(&s, &root, None).await.unwrap();
    assert_eq!(
        lines(&summary.skipped),
        [
            "channels.json, conversation 1: org-level conversation C0ORPHAN1 (orphan/) belongs to no workspace of this export: neither its `internal_team_ids`/`shared_team_ids` nor the `team` of its messages name one of T061A2UFL, T0BMHLSRH; not imported",
            "stray/: folder is not listed in the org-level channels.json, groups.json, dms.json or mpims.json; its messages were not imported",
        ]
    );
    let houston = &summary.workspaces[0].1;
    let mesos = &summary.workspaces[1].1;
    assert_eq!(
        lines(&mesos.skipped),
        ["teams/mesos-magellan/channels.json, conversation 1: invalid input: conversation without an `id`"]
    );
    assert_eq!(
        lines(&houston.skipped),
        ["teams/houstondatavis/users.json, user 23: duplicate user id U064SRKPD (first at user 0); the first was kept"]
    );
    assert_eq!(summary.skipped_total(), 4);
    // nothing of the orphan reached any workspace
    assert!(!channel_ids(&s.meta, MESOS)
        .await
        .contains(&"C0ORPHAN1".to_string()));
    assert!(!channel_ids(&s.meta, HOUSTON)
        .await
        .contains(&"C0ORPHAN1".to_string()));
}

/// Two workspace folders of the same team would pour one workspace into another: refused.
#[tokio::test]
async fn two_folders_of_one_team_are_refused() {
    let (_tmp, root) = copy_grid();
    copy_dir(
        &root.join("teams/mesos-magellan"),
        &root.join("teams/mesos-copy"),
    );
    let s = stores().await;
    let e = import(&s, &root, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        e.message(),
        "cannot import: teams/mesos-copy/ and teams/mesos-magellan/ are both team T0BMHLSRH: a workspace would receive another's conversations; nothing was written"
    );
    assert!(s.meta.list_workspaces().await.unwrap().is_empty());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    out.sort();
    out
}
