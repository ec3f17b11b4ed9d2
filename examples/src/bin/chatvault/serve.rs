//! `chatvault serve`: the service — Slack events in (HTTP and Socket Mode), the JSON API, the web
//! archive and MCP out, the relay in between — as the writer of the workspaces it serves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chatvault_collector::BackfillOptions;
use chatvault_core::{Error, Result, SecretString, WorkspaceId};
use clap::Args;

use crate::cli::{Global, LlmArgs};
use crate::stores::{embedder_choice, storage, WRITERS};

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "CHATVAULT_LISTEN")]
    listen: std::net::SocketAddr,
    /// A file holding the Slack app's signing secret (default: $SLACK_SIGNING_SECRET). Without
    /// one, POST /slack/events answers 503.
    #[arg(long, value_name = "FILE")]
    signing_secret_file: Option<PathBuf>,
    /// A file of API tokens, one per line: `<sha256 hex of the token> <admin | Slack user id>`
    /// (`printf '%s' "$token" | sha256sum`). Requests present `Authorization: Bearer <token>`
    /// and see what that user (or an admin) may see; without a token, public channels only.
    #[arg(long, value_name = "FILE", env = "CHATVAULT_API_TOKENS_FILE")]
    api_tokens_file: Option<PathBuf>,
    /// Trust this request header, set by an authenticating reverse proxy (oauth2-proxy:
    /// X-Auth-Request-Email), as the signed-in person's email address: requests carrying it see
    /// what the member with that email may see. Enable it only behind a proxy that strips the
    /// header from clients' requests.
    #[arg(long, value_name = "HEADER", env = "CHATVAULT_TRUSTED_EMAIL_HEADER")]
    trusted_email_header: Option<String>,
    /// Listen on a non-loopback address although nothing authenticates the JSON API.
    #[arg(long)]
    allow_anonymous: bool,
    /// Run the Slack Web API backfill at start and then this long after each run ends (15m,
    /// 1h, 1d), with the bot token in the variable --backfill-token-env names; serves one
    /// workspace (--workspace, the team the token belongs to).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    backfill_every: Option<Duration>,
    /// The environment variable holding the bot token for --backfill-every.
    #[arg(long, default_value = "SLACK_BOT_TOKEN", value_name = "VAR")]
    backfill_token_env: String,
    /// The Web API base URL for --backfill-every (for tests and proxies).
    #[arg(long, default_value = "https://slack.com/api", value_name = "URL")]
    backfill_api_url: String,
    /// Also receive events over Socket Mode (no public URL needed), with the app-level token in
    /// $SLACK_APP_TOKEN. On by default when that variable is set.
    #[arg(long)]
    socket_mode: bool,
    /// The language model that answers POST /api/v1/workspaces/{ws}/ask (without one, the
    /// endpoint returns passages and a prompt).
    #[command(flatten)]
    llm: LlmArgs,
}

/// A header name as HTTP spells it (lower case), or an error naming it.
fn axum_header_name(given: &str) -> Result<String> {
    let ok = !given.is_empty()
        && given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if !ok {
        return Err(Error::invalid_input(format!(
            "--trusted-email-header {given:?} is not a header name (letters, digits, '-')"
        )));
    }
    Ok(given.to_ascii_lowercase())
}

/// The environment variable holding the Slack signing secret.
const SIGNING_SECRET_ENV: &str = "SLACK_SIGNING_SECRET";

/// The signing secret from `--signing-secret-file`, else `$SLACK_SIGNING_SECRET`.
fn signing_secret(file: Option<&std::path::Path>) -> Result<Option<SecretString>> {
    let secret = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            Error::invalid_input(format!(
                "cannot read the signing secret file {}: {e}",
                path.display()
            ))
        })?,
        None => std::env::var(SIGNING_SECRET_ENV).unwrap_or_default(),
    };
    let secret = secret.trim();
    Ok((!secret.is_empty()).then(|| SecretString::new(secret)))
}

/// Completes on SIGTERM or SIGINT. The handlers are installed before this returns, so a signal
/// that arrives while the server starts is not lost.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let installed =
        |kind| signal(kind).map_err(|e| Error::unavailable(format!("cannot handle signals: {e}")));
    let (mut term, mut int) = (
        installed(SignalKind::terminate())?,
        installed(SignalKind::interrupt())?,
    );
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

pub(crate) async fn run(g: &Global, args: &ServeArgs) -> Result<()> {
    let auth = auth_config(args)?;
    let backfill_token = backfill_token(g, args)?;
    let socket_mode = if args.socket_mode
        || std::env::var_os(chatvault_server::APP_TOKEN_ENV).is_some_and(|t| !t.is_empty())
    {
        Some(chatvault_server::SocketModeOptions::from_env()?)
    } else {
        None
    };
    let secret = signing_secret(args.signing_secret_file.as_deref())?;
    let shutdown = shutdown_signal()?;

    let config = storage(g);
    let (meta, content, locks) = chatvault_examples::open_stores_for_writing(&config).await?;
    if let Ok(mut w) = WRITERS.lock() {
        w.push(meta.clone());
    }
    let workspaces = served_workspaces(g, &meta).await?;
    // The server is the writer: take every workspace's lock before anything is written.
    chatvault_examples::lock_workspaces(&locks, &workspaces, Duration::from_secs(g.wait)).await?;

    // One embedder for every collection: they must agree on it.
    let model = collections_model(&content, &workspaces).await?;
    let (embedder, note) = chatvault_examples::choose_embedder(
        embedder_choice(g),
        g.model_dir.as_deref(),
        model.as_deref(),
    )?;
    eprintln!("{note}");
    if secret.is_none() {
        eprintln!(
            "no Slack signing secret ({SIGNING_SECRET_ENV} or --signing-secret-file): \
             POST /slack/events answers 503"
        );
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::unavailable(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::unavailable(format!("the listener has no address: {e}")))?;
    let names: Vec<String> = workspaces.iter().map(ToString::to_string).collect();
    let backfill = match (args.backfill_every, backfill_token) {
        (Some(every), Some(token)) => Some(chatvault_server::BackfillSchedule {
            workspace: workspaces[0].clone(),
            token,
            every,
            options: BackfillOptions {
                api_url: args.backfill_api_url.clone(),
                ..BackfillOptions::default()
            },
        }),
        _ => None,
    };
    let state = chatvault_server::AppState::new(
        meta,
        content,
        embedder,
        chatvault_server::ServerConfig {
            signing_secret: secret,
            workspaces: Some(workspaces),
            auth,
            backfill,
            answerer: args
                .llm
                .answerer()?
                .map(|a| Arc::new(a) as Arc<dyn chatvault_query::Answerer>),
            ..chatvault_server::ServerConfig::default()
        },
    );
    out!(
        "chatvault serve: listening on http://{addr} (workspaces: {})",
        names.join(", ")
    );
    // One signal stops both the HTTP server and the Socket Mode loop.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait_stop = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let socket = socket_mode.map(|options| {
        eprintln!("receiving events over Socket Mode too");
        let (state, stopped) = (state.clone(), wait_stop());
        tokio::spawn(async move {
            if let Err(e) = chatvault_server::run_socket_mode(state, options, stopped).await {
                tracing::error!(error = %e, "Socket Mode stopped");
                eprintln!("error: Socket Mode stopped: {e}");
            }
        })
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let served = chatvault_server::serve(listener, state, wait_stop()).await;
    if let Some(socket) = socket {
        let _ = socket.await;
    }
    // The relay has stopped: flush the index and let the locks go; main closes the metadata
    // store (SQLite folds its WAL).
    locks.close();
    served
}

/// Who may read what through the API and the pages; refuses a non-loopback address that nothing
/// authenticates unless `--allow-anonymous` says so.
fn auth_config(args: &ServeArgs) -> Result<chatvault_server::AuthConfig> {
    let mut auth = match &args.api_tokens_file {
        Some(path) => chatvault_server::AuthConfig::from_tokens_file(path)?,
        None => chatvault_server::AuthConfig::default(),
    };
    if let Some(header) = &args.trusted_email_header {
        let name = axum_header_name(header)?;
        auth.trusted_email_header = Some(name);
    }
    if !args.listen.ip().is_loopback()
        && auth.tokens.is_empty()
        && auth.trusted_email_header.is_none()
        && !args.allow_anonymous
    {
        return Err(Error::invalid_input(format!(
            "refusing to listen on {} with an unauthenticated API: listen on a loopback \
             address, give --api-tokens-file or --trusted-email-header, or pass \
             --allow-anonymous",
            args.listen
        )));
    }
    Ok(auth)
}

/// The bot token for `--backfill-every`, from the environment only.
fn backfill_token(g: &Global, args: &ServeArgs) -> Result<Option<SecretString>> {
    Ok(match args.backfill_every {
        Some(every) if every.is_zero() => {
            return Err(Error::invalid_input(
                "--backfill-every must be longer than zero",
            ))
        }
        Some(_) => {
            if g.workspace.is_none() {
                return Err(Error::invalid_input(
                    "--backfill-every needs --workspace: the team the bot token belongs to",
                ));
            }
            let token = std::env::var(&args.backfill_token_env).unwrap_or_default();
            if token.trim().is_empty() {
                return Err(Error::invalid_input(format!(
                    "--backfill-every: the environment variable {} is not set: export your bot \
                     token (xoxb-…) in it",
                    args.backfill_token_env
                )));
            }
            Some(SecretString::new(token.trim()))
        }
        None => None,
    })
}

/// The workspaces to serve: `--workspace` (created when new: a server fed by Slack's events alone
/// starts from nothing), else every stored one.
async fn served_workspaces(
    g: &Global,
    meta: &Arc<dyn chatvault_core::MetadataStore>,
) -> Result<Vec<WorkspaceId>> {
    use chatvault_core::Workspace;

    let workspaces = match g.workspace.as_deref() {
        Some(name) => {
            let ws = WorkspaceId::new(name)?;
            if meta.get_workspace(&ws).await?.is_none() {
                // A server fed by Slack's events alone starts from nothing.
                meta.upsert_workspace(&Workspace::new(ws.clone(), ws.as_str()))
                    .await?;
                eprintln!("created workspace {ws}");
            }
            vec![ws]
        }
        None => meta
            .list_workspaces()
            .await?
            .into_iter()
            .map(|w| w.id)
            .collect(),
    };
    if workspaces.is_empty() {
        return Err(Error::not_found(
            "this data directory holds no workspace yet: name the Slack team to serve with \
             --workspace <team id>, or ingest an export first",
        ));
    }
    Ok(workspaces)
}

/// The embedding model the served collections were built with: one for all, or an error.
async fn collections_model(
    content: &Arc<dyn chatvault_core::ContentStore>,
    workspaces: &[WorkspaceId],
) -> Result<Option<String>> {
    let mut models = Vec::new();
    for ws in workspaces {
        if let Some(c) = content.collection_info(ws).await? {
            models.push(c.spec.model_id);
        }
    }
    models.dedup();
    if models.len() > 1 {
        return Err(Error::unsupported(format!(
            "the workspaces were indexed with different embedders ({}): serve one with --workspace",
            models.join(", ")
        )));
    }
    Ok(models.pop())
}
