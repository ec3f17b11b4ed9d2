//! `chatvault mcp` as a real child process speaking MCP over stdio, driven by rmcp's client: the
//! tools are listed, `search_messages` and `get_thread` answer on the bundled houstondatavis
//! export, a private channel (added to a copy of the export: the bundled exports have none)
//! stays invisible outside the configured scope and visible to its member, and malformed
//! requests get JSON-RPC errors while the server keeps answering.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::ServiceExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const MEMBER: &str = "U0CBK5KAT"; // aaron.anzalone in the export's users.json
const SECRET_TEXT: &str = "The zeppelin budget for the secret gala is forty thousand dollars";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The bundled export plus a private channel `secret-plans` whose only member is `MEMBER`,
/// ingested into a fresh data directory (hashing embedder: no model needed).
fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("houstondatavis");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/slack-export-houstondatavis"),
        &export,
    );
    std::fs::write(
        export.join("groups.json"),
        json!([{"id": "G0SECRET1", "name": "secret-plans", "is_group": true, "created": 1450000000,
                "creator": MEMBER, "members": [MEMBER]}])
        .to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(export.join("secret-plans")).unwrap();
    std::fs::write(
        export.join("secret-plans/2016-01-01.json"),
        json!([{"type": "message", "user": MEMBER, "text": SECRET_TEXT, "ts": "1451649600.000100"}])
            .to_string(),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let status = cli(&data)
        .args(["ingest-export", "--as", "houston"])
        .arg(&export)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("chatvault ingest-export runs");
    assert!(status.success(), "ingest failed: {status}");
    (tmp, data)
}

fn cli(data: &Path) -> StdCommand {
    let mut c = StdCommand::new(env!("CARGO_BIN_EXE_chatvault"));
    c.env_remove("CHATVAULT_DATABASE_URL")
        .env_remove("CHATVAULT_DATA_DIR")
        .env("RUST_LOG", "warn")
        .arg("--data-dir")
        .arg(data)
        .args(["--embedder", "hashing"]);
    c
}

fn mcp_command(data: &Path, scope: &[&str]) -> tokio::process::Command {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chatvault")).configure(|c| {
        c.env_remove("CHATVAULT_DATABASE_URL")
            .env_remove("CHATVAULT_DATA_DIR")
            .env("RUST_LOG", "warn")
            .arg("--data-dir")
            .arg(data)
            .args(["--embedder", "hashing", "mcp"])
            .args(scope);
    })
}

async fn connect(data: &Path, scope: &[&str]) -> RunningService<RoleClient, ()> {
    let transport = TokioChildProcess::new(mcp_command(data, scope)).expect("chatvault mcp starts");
    ().serve(transport).await.expect("MCP initialize")
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &'static str,
    args: Value,
) -> (Value, bool) {
    let result: CallToolResult = client
        .call_tool(
            CallToolRequestParams::new(tool)
                .with_arguments(args.as_object().expect("arguments object").clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let text: String = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    let is_error = result.is_error == Some(true);
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (value, is_error)
}

#[tokio::test]
async fn mcp_tools_search_and_read_threads_within_the_configured_scope() {
    let (_tmp, data) = data_dir();

    let public = connect(&data, &[]).await;
    let info = public.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("chatvault")
    );
    let mut tools: Vec<String> = public
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "ask",
            "digest",
            "get_context",
            "get_thread",
            "list_channels",
            "search_messages"
        ]
    );

    let (found, is_error) = call(
        &public,
        "search_messages",
        json!({"query": "cleaned up data from the data jam published", "limit": 5}),
    )
    .await;
    assert!(!is_error, "{found}");
    let hits = found["hits"].as_array().expect("hits");
    assert!(!hits.is_empty(), "{found}");
    let hit = &hits[0];
    assert!(
        hit["text"].as_str().unwrap().chars().count() <= 301,
        "snippets are short"
    );

    // The hit's thread (by its parent when it is a reply).
    let ts = hit.get("thread_ts").unwrap_or(&hit["ts"]).clone();
    let (thread, is_error) = call(
        &public,
        "get_thread",
        json!({"channel": hit["channel"], "ts": ts}),
    )
    .await;
    assert!(!is_error, "{thread}");
    let messages = thread["messages"].as_array().expect("messages");
    assert!(messages.iter().any(|m| m["ts"] == hit["ts"]), "{thread}");

    // The private channel is invisible to the public viewer: not listed, not found, not
    // searchable, not readable by name or id.
    let (channels, _) = call(&public, "list_channels", json!({})).await;
    let names: Vec<&str> = channels["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"#datajam") && !names.contains(&"#secret-plans"),
        "{names:?}"
    );
    let (found, _) = call(
        &public,
        "search_messages",
        json!({"query": "zeppelin budget secret gala", "limit": 50}),
    )
    .await;
    assert!(!found.to_string().contains("zeppelin"), "{found}");
    assert!(!found.to_string().contains("G0SECRET1"), "{found}");
    for channel in ["secret-plans", "G0SECRET1"] {
        let (read, is_error) = call(
            &public,
            "get_thread",
            json!({"channel": channel, "ts": "1451649600.000100"}),
        )
        .await;
        assert!(is_error, "{read}");
        assert!(!read.to_string().contains("zeppelin"), "{read}");
    }
    let (asked, _) = call(
        &public,
        "ask",
        json!({"question": "what is the zeppelin budget for the gala?"}),
    )
    .await;
    assert!(
        !asked.to_string().contains("zeppelin budget for"),
        "{asked}"
    );
    public.cancel().await.expect("close");

    // Its member, configured on the command line, sees it.
    let member = connect(&data, &["--as", "aaron.anzalone"]).await;
    let (found, _) = call(
        &member,
        "search_messages",
        json!({"query": "zeppelin budget secret gala", "limit": 5}),
    )
    .await;
    assert_eq!(found["hits"][0]["channel"], "#secret-plans", "{found}");
    // The scope is not a tool argument: an extra argument is refused, not obeyed.
    let (refused, is_error) = call(&member, "list_channels", json!({"viewer": "admin"})).await;
    assert!(is_error, "{refused}");
    assert!(
        refused.to_string().contains("unknown field `viewer`"),
        "{refused}"
    );
    member.cancel().await.expect("close");
}

/// Reads JSON-RPC lines until the response with `id`.
async fn response<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    id: Value,
) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read")
                .expect("server still running");
            let v: Value = serde_json::from_str(&line).expect("the server writes JSON-RPC");
            eprintln!("<- {v}");
            if v.get("id").unwrap_or(&Value::Null) == &id {
                return v;
            }
        }
    })
    .await
    .expect("an answer in time")
}

#[tokio::test]
async fn malformed_requests_get_json_rpc_errors_and_the_server_keeps_answering() {
    let (_tmp, data) = data_dir();
    let mut child = mcp_command(&data, &[])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chatvault mcp starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = async |v: Value| {
        stdin.write_all(format!("{v}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0"}}}),
    )
    .await;
    let init = response(&mut lines, json!(1)).await;
    assert!(init.get("result").is_some(), "{init}");
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;

    // Arguments of the wrong type: a tool error the model can read and correct (rmcp answers
    // argument errors in the result, `isError`, as the MCP specification advises).
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "get_thread", "arguments": {"channel": 42}}}))
    .await;
    let bad = response(&mut lines, json!(2)).await;
    assert_eq!(bad["result"]["isError"], json!(true), "{bad}");
    assert!(bad.to_string().contains("expected a string"), "{bad}");
    // A tool that does not exist.
    send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "drop_tables", "arguments": {}}}))
    .await;
    let unknown = response(&mut lines, json!(3)).await;
    assert!(unknown.get("error").is_some(), "{unknown}");
    // A method that does not exist.
    send(json!({"jsonrpc": "2.0", "id": 4, "method": "no/such/method"})).await;
    let missing = response(&mut lines, json!(4)).await;
    assert_eq!(missing["error"]["code"], json!(-32601), "{missing}");
    // JSON that is not a JSON-RPC message: an Invalid Request error (no id to answer to).
    send(json!({"hello": "world"})).await;
    let invalid = response(&mut lines, Value::Null).await;
    assert_eq!(invalid["error"]["code"], json!(-32600), "{invalid}");
    // Not JSON at all: ignored (as the other official SDKs do), the connection stays.
    stdin.write_all(b"this is not json\n").await.unwrap();

    // Still serving.
    let mut send = async |v: Value| {
        stdin.write_all(format!("{v}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    };
    send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})).await;
    let listed = response(&mut lines, json!(5)).await;
    assert_eq!(
        listed["result"]["tools"].as_array().map(Vec::len),
        Some(6),
        "{listed}"
    );
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits when stdin closes")
        .unwrap();
    assert!(status.success(), "{status}");
}
