//! `chatvault serve` as a real process: signed Slack events in over HTTP, SIGTERM, a restart that
//! delivers whatever the first run left in the outbox, and exact counts read beside it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "serve-test-secret";
const TEAM: &str = "T0001";

fn cli(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chatvault"));
    c.env_remove("CHATVAULT_DATABASE_URL")
        .env_remove("CHATVAULT_DATA_DIR")
        .env_remove("CHATVAULT_LISTEN")
        .env("RUST_LOG", "warn")
        .arg("--data-dir")
        .arg(dir)
        .args(["--embedder", "hashing"]);
    c
}

/// Starts `chatvault serve` on a free port; returns the child and its base URL.
fn start(dir: &Path) -> (Child, String) {
    let mut child = cli(dir)
        .args(["--workspace", TEAM, "serve", "--listen", "127.0.0.1:0"])
        .env("SLACK_SIGNING_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("chatvault serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("serve prints where it listens");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, format!("http://{addr}"))
}

/// SIGTERM, then the exit status (it must stop on its own, and cleanly).
fn terminate(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "serve exited with {status:?} on SIGTERM");
            return;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("serve did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sign(timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v0={hex}")
}

async fn post(client: &reqwest::Client, url: &str, event: Value) {
    let body = json!({"type": "event_callback", "team_id": TEAM, "event_id": "Ev", "event": event})
        .to_string()
        .into_bytes();
    let ts = chrono::Utc::now().timestamp();
    let resp = client
        .post(format!("{url}/slack/events"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sign(ts, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        resp.text().await.unwrap()
    );
}

fn stats(dir: &Path) -> Value {
    let out = cli(dir).args(["--json", "stats"]).output().unwrap();
    assert!(
        out.status.success(),
        "stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_on_sigterm_and_a_restart_delivers_the_rest() {
    const N: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();

    let (child, url) = start(dir.path());
    post(
        &client,
        &url,
        json!({"type": "channel_created",
               "channel": {"id": "C1", "name": "general", "created": 1_700_000_000}}),
    )
    .await;
    for i in 0..N {
        post(
            &client,
            &url,
            json!({"type": "message", "channel": "C1", "channel_type": "channel", "user": "U1",
                   "ts": format!("1700000000.{i:06}"), "text": format!("note number {i}")}),
        )
        .await;
    }
    terminate(child);
    // Every event was acknowledged after its metadata committed: all are there after SIGTERM.
    let s = stats(dir.path());
    assert_eq!(s["metadata"]["messages"], N as u64, "{s}");

    // A restart delivers whatever the first run's relay had not.
    let (child, url) = start(dir.path());
    let started = Instant::now();
    loop {
        let ready: Value = client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["outbox"]["pending"] == 0 && ready["outbox"]["leased"] == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not delivered: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    terminate(child);
    let s = stats(dir.path());
    assert_eq!(s["metadata"]["messages"], N as u64, "{s}");
    assert_eq!(s["outbox"]["pending"], 0, "{s}");
    assert_eq!(s["outbox"]["dead"], 0, "{s}");
    assert_eq!(s["content"]["documents"], N as u64, "{s}");
}

#[test]
fn serve_refuses_a_public_address_without_allow_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(dir.path())
        .args(["--workspace", TEAM, "serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-anonymous"));
}

#[test]
fn a_second_server_of_the_same_workspace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = start(dir.path());
    let out = cli(dir.path())
        .args(["--workspace", TEAM, "serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    terminate(first);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(out.stdout.is_empty(), "the second server listened: {out:?}");
}
