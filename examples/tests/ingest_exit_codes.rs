//! `chatvault ingest-export` as a child process on damaged copies of the bundled export: the exit
//! code and the report a person reads.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/slack-export-viewer-testarchive")
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

/// A copy of the bundled export, and a data directory beside it.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    copy_dir(&testdata(), &export);
    let data = tmp.path().join("data");
    (tmp, export, data)
}

fn ingest(data: &Path, export: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatvault"))
        .env_remove("CHATVAULT_DATABASE_URL")
        .env_remove("CHATVAULT_DATA_DIR")
        .env("RUST_LOG", "warn")
        .arg("--data-dir")
        .arg(data)
        .args(["--embedder", "hashing", "ingest-export"])
        .arg(export)
        .args(["--as", "T1"])
        .args(extra)
        .output()
        .expect("chatvault runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_line(o: &Output) -> String {
    stdout(o).lines().last().unwrap_or_default().to_string()
}

/// Appends a copy of `enrique/2016-01-15.json`'s first message: a duplicate ts.
fn add_duplicate_ts(export: &Path) {
    let day = export.join("enrique/2016-01-15.json");
    let mut msgs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&day).unwrap()).unwrap();
    let dup = msgs[0].clone();
    msgs.as_array_mut().unwrap().push(dup);
    std::fs::write(&day, serde_json::to_vec(&msgs).unwrap()).unwrap();
}

#[test]
fn a_clean_export_exits_0_and_says_everything_was_stored() {
    let (_tmp, export, data) = setup();
    let o = ingest(&data, &export, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(last_line(&o), "result: everything in the export was stored");
}

#[test]
fn a_skip_exits_0_with_a_summary_line_and_strict_makes_it_exit_3() {
    let (_tmp, export, data) = setup();
    add_duplicate_ts(&export);
    let o = ingest(&data, &export, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("skipped 1:\n  enrique/2016-01-15.json, message 6 (ts 1452845865.000008): duplicate ts: enrique/2016-01-15.json, message 0 has the same ts; the first was kept\n"),
        "{out}"
    );
    assert_eq!(
        last_line(&o),
        "result: 158 messages stored; 1 skipped (listed above)"
    );

    let o = ingest(&data, &export, &["--strict"]);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("skipped 1:"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("1 item(s) of the export were skipped and --strict was given"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_malformed_listing_exits_3_naming_it() {
    let (_tmp, export, data) = setup();
    std::fs::write(export.join("channels.json"), r#"{"channels": []}"#).unwrap();
    let o = ingest(&data, &export, &[]);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("cannot import: channels.json must hold a JSON array of conversations, but holds an object; nothing was written"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_channel_asked_for_but_absent_exits_4() {
    let (_tmp, export, data) = setup();
    let o = ingest(
        &data,
        &export,
        &["--channel", "enrique", "--channel", "no-such-channel"],
    );
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            "missing: conversation no-such-channel was asked for but is not in the export\n"
        ),
        "{out}"
    );
    assert_eq!(
        last_line(&o),
        "result: 102 messages stored; 1 asked for but missing (listed above)"
    );
}
