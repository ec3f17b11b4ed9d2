//! `chatvault ingest-export` as a child process on the bundled Enterprise Grid org export
//! (`testdata/slack-export-grid`): each workspace of the org becomes its own workspace, searched
//! separately; a workspace asked for that the export does not hold exits 4 before anything is
//! written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn grid() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/slack-export-grid")
}

fn chatvault(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatvault"))
        .env_remove("CHATVAULT_DATABASE_URL")
        .env_remove("CHATVAULT_DATA_DIR")
        .env_remove("CHATVAULT_CHROMA_URL")
        .env("RUST_LOG", "warn")
        .arg("--data-dir")
        .arg(data)
        .args(["--embedder", "hashing"])
        .args(args)
        .output()
        .expect("chatvault runs")
}

fn ingest(data: &Path, extra: &[&str]) -> Output {
    let export = grid();
    let mut args = vec!["ingest-export", export.to_str().unwrap()];
    args.extend_from_slice(extra);
    chatvault(data, &args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The channels a lexical search in `workspace` finds `query` in.
fn search(data: &Path, workspace: &str, query: &str, scope: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--workspace",
        workspace,
        "--json",
        "search",
        query,
        "--mode",
        "lexical",
    ];
    args.extend_from_slice(scope);
    let o = chatvault(data, &args);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut out: Vec<String> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message"]["key"]["channel"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn each_workspace_of_the_org_is_imported_and_searched_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = ingest(&data, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("is an Enterprise Grid org export: 2 workspace(s) imported, each into its own workspace\n"),
        "{out}"
    );
    assert!(
        out.contains("imported teams/houstondatavis/ (team id from teams/houstondatavis/users.json: team_id of 22 of its 22 members) into workspace T061A2UFL: "),
        "{out}"
    );
    assert!(
        out.contains("imported teams/mesos-magellan/ (team id from teams/mesos-magellan/users.json: team_id of 4 of its 4 members) into workspace T0BMHLSRH: "),
        "{out}"
    );
    assert!(
        out.lines()
            .last()
            .unwrap()
            .ends_with("in 2 workspace(s); everything selected in the export was stored"),
        "{out}"
    );

    // the private channel of one workspace: its member finds it there, nobody finds it in the other
    assert_eq!(
        search(
            &data,
            "T0BMHLSRH",
            "metaheuristic",
            &["--viewer", "U0BMQB6JE"]
        ),
        ["G0GRIDSEC1"]
    );
    assert!(search(&data, "T0BMHLSRH", "metaheuristic", &[]).is_empty());
    assert!(search(&data, "T061A2UFL", "metaheuristic", &["--admin"]).is_empty());
    // each workspace's own channels are searched in it only; the shared channel in both
    assert!(!search(&data, "T061A2UFL", "jupyter", &[]).is_empty());
    assert!(search(&data, "T0BMHLSRH", "jupyter", &["--admin"]).is_empty());
    assert!(search(&data, "T061A2UFL", "simanneal", &[]).contains(&"C0JL6CGQ2".to_string()));
}

#[test]
fn a_workspace_not_in_the_export_exits_4_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = ingest(&data, &["--team", "houstondatavis", "--team", "T0NOTHERE"]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("workspace T0NOTHERE is not in the Enterprise Grid export"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(
            "it holds houstondatavis (T061A2UFL), mesos-magellan (T0BMHLSRH); nothing was written"
        ),
        "{}",
        stderr(&o)
    );
    // refused before the data directory was even opened
    assert!(!data.exists());
}

#[test]
fn one_workspace_can_be_picked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = ingest(&data, &["--team", "T061A2UFL"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(
            "1 workspace(s) imported, each into its own workspace (1 not selected: mesos-magellan)"
        ),
        "{}",
        stdout(&o)
    );
    assert!(!search(&data, "T061A2UFL", "jupyter", &[]).is_empty());
    // the other workspace was not written
    let o = chatvault(
        &data,
        &["--workspace", "T0BMHLSRH", "search", "metaheuristic"],
    );
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));

    // --as names one workspace: it cannot hold a whole org
    let o = ingest(&data, &["--as", "org"]);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("--as does not apply to an Enterprise Grid org export"),
        "{}",
        stderr(&o)
    );
}
