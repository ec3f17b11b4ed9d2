//! Many readers, one writer — with real `chatvault` processes on real stores: searches beside a
//! running ingest, read commands on a read-only data directory, two ingests of one workspace at
//! once, and an ingest killed with SIGKILL and rerun.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chatvault"));
    c.env_remove("CHATVAULT_DATABASE_URL")
        .env_remove("CHATVAULT_DATA_DIR")
        .env("RUST_LOG", "warn");
    c
}

/// `chatvault --data-dir <dir> --embedder hashing <args>`.
fn cli(dir: &Path, args: &[&str]) -> Command {
    let mut c = bin();
    c.arg("--data-dir")
        .arg(dir)
        .args(["--embedder", "hashing"])
        .args(args);
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cli(dir, args).output().expect("chatvault runs")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "chatvault {args:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(dir, &all)).expect("one JSON document")
}

/// A synthetic export of `n` messages over 10 channels; `variant` changes every text, and
/// `edited` (when set) marks every message as edited at that revision.
fn export(dir: &Path, n: usize, variant: &str, edited: Option<&str>) {
    let channels: Vec<Value> = (0..10)
        .map(|i| serde_json::json!({"id": format!("C{i:03}"), "name": format!("chan-{i}"), "members": ["U1", "U2"]}))
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("channels.json"),
        serde_json::to_vec(&channels).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("users.json"),
        br#"[{"id":"U1","name":"ann"},{"id":"U2","name":"bob"}]"#,
    )
    .unwrap();
    let per_day = 250;
    let mut i = 0;
    let mut day = 0;
    while i < n {
        for c in 0..10 {
            let mut msgs = Vec::new();
            for j in 0..per_day {
                if i >= n {
                    break;
                }
                let mut m = serde_json::json!({
                    "type": "message",
                    "user": if j % 2 == 0 { "U1" } else { "U2" },
                    "ts": format!("{}.{:06}", 1_600_000_000 + day * 86_400 + j * 7, c),
                    "text": format!("{variant} message {i} about topic{} and item{}", i % 97, i % 13),
                });
                if let Some(rev) = edited {
                    m["edited"] = serde_json::json!({"user": "U1", "ts": rev});
                }
                msgs.push(m);
                i += 1;
            }
            if msgs.is_empty() {
                break;
            }
            let folder = dir.join(format!("chan-{c}"));
            std::fs::create_dir_all(&folder).unwrap();
            let name = format!("2020-{:02}-{:02}.json", 1 + day / 28 % 12, 1 + day % 28);
            std::fs::write(folder.join(name), serde_json::to_vec(&msgs).unwrap()).unwrap();
        }
        day += 1;
    }
}

fn spawn_ingest(dir: &Path, export: &Path, extra: &[&str]) -> Child {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["ingest-export", export.to_str().unwrap(), "--as", "big"]);
    cli(dir, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chatvault starts")
}

/// Polls `stats --json` (a reader) until `ready` holds or `timeout` passes.
fn wait_for_stats(dir: &Path, timeout: Duration, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let out = run(dir, &["--json", "stats"]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            if ready(&v) {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "stats never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn documents(stats: &Value) -> u64 {
    stats["content"]["documents"].as_u64().unwrap_or(0)
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ingest exited {:?}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn assert_consistent(dir: &Path, messages: u64) {
    let stats = json(dir, &["stats"]);
    assert_eq!(stats["metadata"]["messages"], messages, "{stats}");
    assert_eq!(documents(&stats), messages, "{stats}");
    assert_eq!(stats["outbox"]["pending"], 0, "{stats}");
    assert_eq!(stats["outbox"]["leased"], 0, "{stats}");
    assert_eq!(stats["outbox"]["dead"], 0, "{stats}");
    let rec = json(dir, &["reconcile", "--dry-run"]);
    assert_eq!(rec["clean"], true, "{rec}");
    assert!(json(dir, &["dead-letters", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn twenty_searches_run_beside_an_ingest_and_see_its_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, src) = (tmp.path().join("data"), tmp.path().join("export"));
    let n = 30_000;
    export(&src, n, "first", None);
    let ingest = spawn_ingest(&data, &src, &[]);
    // searches start once the first batches are searchable, while the rest is delivered
    let early = wait_for_stats(&data, Duration::from_secs(120), |s| documents(s) > 0);
    assert!(
        documents(&early) < n as u64,
        "the ingest finished too early to test: {early}"
    );

    let searches: Vec<Child> = (0..20)
        .map(|i| {
            cli(
                &data,
                &[
                    "--json",
                    "search",
                    &format!("topic{} item{}", i % 97, i % 13),
                    "--limit",
                    "5",
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for s in searches {
        let out = s.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a search beside the ingest exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(!v["hits"].as_array().unwrap().is_empty(), "{v}");
    }
    // a reader sees later batches as they commit
    let later = wait_for_stats(&data, Duration::from_secs(300), |s| {
        documents(s) > documents(&early)
    });
    assert!(documents(&later) > documents(&early));
    finish(ingest);
    assert_consistent(&data, n as u64);
}

#[test]
fn two_ingests_of_one_workspace_agree_and_the_newer_revision_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
    let n = 4_000;
    export(&old, n, "older", Some("1600000001.000000"));
    export(&new, n, "newer", Some("1700000000.000000"));
    for round in 0..2 {
        let (a, b) = if round == 0 {
            (&new, &old)
        } else {
            (&old, &new)
        };
        let first = spawn_ingest(&data, a, &["--wait", "300"]);
        let second = spawn_ingest(&data, b, &["--wait", "300"]);
        let (first, second) = (finish(first), finish(second));
        for out in [&first, &second] {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["dead_lettered"], 0, "{v}");
        }
        assert_consistent(&data, n as u64);
        let hits = json(&data, &["search", "message 17 about", "--mode", "lexical"]);
        let text = hits["hits"][0]["message"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.starts_with("newer"), "round {round}: {text}");
        let older = json(&data, &["search", "older", "--mode", "lexical"]);
        assert!(older["hits"].as_array().unwrap().is_empty(), "{older}");
    }
}

#[test]
fn a_second_writer_without_wait_is_refused_before_it_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, src) = (tmp.path().join("data"), tmp.path().join("export"));
    export(&src, 20_000, "first", None);
    let ingest = spawn_ingest(&data, &src, &[]);
    wait_for_stats(&data, Duration::from_secs(120), |s| {
        s["metadata"]["messages"].as_u64().unwrap_or(0) > 0
    });
    let other = tmp.path().join("other");
    export(&other, 50, "other", None);
    let out = run(
        &data,
        &["ingest-export", other.to_str().unwrap(), "--as", "big"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains(&format!("process {}", ingest.id())) && stderr.contains("since"),
        "the refusal names the writer: {stderr}"
    );
    finish(ingest);
    // nothing of the refused run was stored
    assert_consistent(&data, 20_000);
    let hits = json(&data, &["search", "other", "--mode", "lexical"]);
    assert!(hits["hits"].as_array().unwrap().is_empty(), "{hits}");
}

#[test]
fn an_ingest_killed_mid_delivery_is_rerun_at_once_with_exact_counts() {
    let n = 20_000;
    // A kill can land between two batches (nothing leased): then try again on a fresh directory.
    let mut attempt = 0;
    let (_tmp, data, src) = loop {
        attempt += 1;
        let tmp = tempfile::tempdir().unwrap();
        let (data, src) = (tmp.path().join("data"), tmp.path().join("export"));
        export(&src, n, "first", None);
        let mut ingest = spawn_ingest(&data, &src, &[]);
        // Kill it while it holds leased outbox entries. A batch with the hashing embedder is
        // delivered in milliseconds, less than a `stats` process takes: watch the outbox through
        // a read-only connection of our own, and kill the moment a lease shows.
        wait_for_stats(&data, Duration::from_secs(120), |s| {
            s["outbox"]["pending"].as_u64().unwrap_or(0) > 0
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = chatvault_examples::StorageConfig {
            data_dir: data.clone(),
            database_url: None,
            chroma_url: None,
        };
        let (meta, _) = rt
            .block_on(chatvault_examples::open_stores_read_only(&config))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while rt.block_on(meta.outbox_stats(None)).map_or(0, |s| s.leased) == 0 {
            assert!(Instant::now() < deadline, "no lease seen in 120 s");
        }
        ingest.kill().unwrap(); // SIGKILL
        drop(meta);
        ingest.wait().unwrap();
        let stats = json(&data, &["stats"]);
        if stats["outbox"]["leased"].as_u64().unwrap() > 0 {
            break (tmp, data, src);
        }
        assert!(
            attempt < 10,
            "no kill landed while entries were leased: {stats}"
        );
    };

    let started = Instant::now();
    let rerun = spawn_ingest(&data, &src, &[]);
    let out = finish(rerun);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("held by another running relay"),
        "the rerun waited for a dead process's leases: {stderr}"
    );
    // the leases were 60 s long: had the rerun waited them out, its drain would have said so
    eprintln!("rerun after SIGKILL took {:?}", started.elapsed());
    assert_consistent(&data, n as u64);
}

/// Makes `dir` read-only for the commands run through the returned wrapper: a read-only bind
/// mount where this process may make one (root), else a non-root user with the write bits
/// removed. `None` where neither is possible.
struct ReadOnlyView {
    path: PathBuf,
    mounted: bool,
    run_as: Option<&'static str>,
}

impl ReadOnlyView {
    fn new(dir: &Path, mount_point: &Path) -> Option<ReadOnlyView> {
        std::fs::create_dir_all(mount_point).unwrap();
        let bind = Command::new("mount")
            .arg("--bind")
            .arg(dir)
            .arg(mount_point)
            .status();
        if bind.is_ok_and(|s| s.success()) {
            let ro = Command::new("mount")
                .args(["-o", "remount,ro,bind"])
                .arg(mount_point)
                .status();
            if ro.is_ok_and(|s| s.success()) {
                return Some(ReadOnlyView {
                    path: mount_point.to_path_buf(),
                    mounted: true,
                    run_as: None,
                });
            }
            let _ = Command::new("umount").arg(mount_point).status();
        }
        // a non-root user cannot write where the write bits are gone
        let setpriv = Command::new("setpriv").arg("--version").output();
        if setpriv.is_ok_and(|o| o.status.success()) {
            let _ = Command::new("chmod")
                .arg("-R")
                .arg("a+rX,a-w")
                .arg(dir)
                .status();
            let mut p = dir.to_path_buf();
            while let Some(parent) = p.parent() {
                let _ = Command::new("chmod").arg("a+x").arg(parent).status();
                p = parent.to_path_buf();
            }
            return Some(ReadOnlyView {
                path: dir.to_path_buf(),
                mounted: false,
                run_as: Some("65534"),
            });
        }
        None
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = match self.run_as {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={uid}"),
                    "--clear-groups",
                    "--",
                    env!("CARGO_BIN_EXE_chatvault"),
                ]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_chatvault")),
        };
        c.env_remove("CHATVAULT_DATABASE_URL")
            .env("RUST_LOG", "warn")
            .env("HOME", "/nonexistent")
            .arg("--data-dir")
            .arg(&self.path)
            .args(["--embedder", "hashing"])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for ReadOnlyView {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        }
    }
}

#[test]
fn read_commands_work_on_a_read_only_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/slack-export-houstondatavis");
    ok(&data, &["ingest-export", sample.to_str().unwrap()]);
    let expected = json(&data, &["stats"]);
    let Some(view) = ReadOnlyView::new(&data, &tmp.path().join("ro")) else {
        let msg = "cannot make a read-only directory here (no bind mount, no setpriv): skipped";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("{msg}");
        return;
    };
    let thread_ts = {
        let hits = json(&data, &["search", "meetup", "--limit", "1"]);
        let m = &hits["hits"][0]["message"];
        (
            m["key"]["channel"].as_str().unwrap().to_string(),
            m["key"]["ts"].as_str().unwrap().to_string(),
        )
    };
    for args in [
        vec!["--json", "stats"],
        vec!["--json", "search", "meetup"],
        vec!["--json", "search", "maps", "--mode", "semantic"],
        vec!["--json", "thread", &thread_ts.0, &thread_ts.1],
        vec![
            "--json",
            "digest",
            "--since",
            "2015-01-01",
            "--until",
            "2017-01-01",
        ],
        vec!["--json", "prs"],
        vec!["--json", "ask", "where is the meetup"],
        vec!["--json", "reconcile", "--dry-run"],
        vec!["--json", "dead-letters", "list"],
    ] {
        let out = view.run(&args);
        assert!(
            out.status.success(),
            "{args:?} on a read-only directory exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        if args[1] == "stats" {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["metadata"], expected["metadata"]);
            assert_eq!(v["content"], expected["content"]);
        }
        if args[1] == "search" {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(!v["hits"].as_array().unwrap().is_empty(), "{v}");
        }
    }
    // a writing command is refused clearly, and nothing changes
    let out = view.run(&["reconcile"]);
    assert!(!out.status.success());
    drop(view);
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("u+w")
        .arg(&data)
        .status();
    assert_eq!(json(&data, &["stats"])["metadata"], expected["metadata"]);
}

#[test]
fn help_never_shows_the_database_password() {
    let secret = "s3cr3t-pa55word";
    let out = bin()
        .env(
            "CHATVAULT_DATABASE_URL",
            format!("postgres://ann:{secret}@127.0.0.1:1/chatvault"),
        )
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CHATVAULT_DATABASE_URL"), "{text}");
    assert!(!text.contains(secret), "{text}");
    // a malformed URL in an error
    let out = bin()
        .env(
            "CHATVAULT_DATABASE_URL",
            format!("postgres://ann:{secret}@[bad/chatvault"),
        )
        .arg("stats")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(secret), "{all}");
    let out = bin()
        .env(
            "CHATVAULT_DATABASE_URL",
            format!("postgres://ann:{secret}@[bad/chatvault"),
        )
        .args(["--verbose", "stats"])
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&out.stderr);
    assert!(!all.contains(secret), "{all}");
}

/// The nice value of a running process (field 19 of `/proc/<pid>/stat`).
fn nice_of(pid: u32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(16).unwrap().parse().unwrap()
}

#[test]
fn read_only_commands_yield_the_cpu_when_asked() {
    if !Path::new("/proc/self/stat").exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "no /proc: cannot check priorities"
        );
        eprintln!("skipped: no /proc to read priorities from");
        return;
    }
    let ours = nice_of(std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let (data, src) = (tmp.path().join("data"), tmp.path().join("export"));
    export(&src, 50, "first", None);
    finish(spawn_ingest(&data, &src, &[]));
    // `mcp` is a reader that stays up while its standard input is open
    let nice_of_mcp = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.push("mcp");
        let mut child = cli(&data, &args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let nice = nice_of(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        nice
    };
    assert_eq!(
        nice_of_mcp(&[]),
        ours,
        "readers keep the normal priority by default"
    );
    assert_eq!(nice_of_mcp(&["--read-nice", "10"]), ours.max(10));
    assert_eq!(
        nice_of_mcp(&["--read-nice", "0"]),
        ours,
        "--read-nice 0 keeps ours"
    );
    let bad = run(&data, &["--read-nice", "20", "stats"]);
    assert_eq!(bad.status.code(), Some(2), "out of range is a usage error");
    let help = ok(&data, &["--help"]);
    assert!(help.contains("--read-nice"), "{help}");
}
