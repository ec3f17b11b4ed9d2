//! `chatvault`: ingest Slack into the embedded stores (or PostgreSQL) and search it.
//!
//! Output is for people by default; `--json` prints one JSON document per command (the library's
//! serde types: `SearchResponse`, `Thread`, `Digest`, `PrReviewReport`, `Retrieval`, …).
//! Exit codes: 0 ok, 2 usage, 3 bad input, 4 not found, 5 store unavailable, 6 conflict,
//! 7 unsupported, 1 anything else.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatvault_collector::{
    Backfill, BackfillOptions, Collector, ImportOptions, ImportSummary, Progress, ProgressUpdate,
    Relay, RelayOptions, Stage,
};
use chatvault_core::{
    Error, MessageKey, MetadataStore, OutboxId, Result, SecretString, TimeRange, Ts, WorkspaceId,
};
use chatvault_examples::{
    exit_code, open_all, parse_time, resolve_channel, resolve_user, resolve_workspace,
    sample_export, workspace_id_from_path, Access, EmbedderChoice, StorageConfig, Stores,
};
use chatvault_query::{
    AskRequest, DigestRequest, MessageView, PrReviewRequest, QueryEngine, Scope, SearchFilter,
    SearchMode, SearchRequest, SearchResponse,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `println!` that ends the program quietly when the reader has gone (`chatvault … | head`):
/// `println!` panics on a closed pipe. Exiting mid-command loses nothing: every write is
/// committed or re-done by the outbox on the next run.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            stdout_failed(e);
        }
    }};
}

fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1);
}

#[derive(Parser, Debug)]
#[command(
    name = "chatvault",
    version,
    about = "Archive Slack and search it: metadata in SQLite or PostgreSQL, content in an embedded vector + BM25 index"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// The data directory: the SQLite file and the vector collections.
    #[arg(
        long,
        global = true,
        default_value = "./chatvault-data",
        env = "CHATVAULT_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Keep metadata in PostgreSQL instead of the SQLite file (postgres://user@host/db). Best
    /// set in the environment, so that its password stays out of the process list.
    #[arg(
        long,
        global = true,
        env = "CHATVAULT_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Keep content (texts and vectors) in a ChromaDB server instead of the data directory's
    /// collections (http://host:8000, optionally ?tenant=…&database=…; token from
    /// $CHATVAULT_CHROMA_TOKEN). Hybrid search then runs semantic only and says so.
    #[arg(
        long,
        global = true,
        env = "CHATVAULT_CHROMA_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    chroma_url: Option<String>,
    /// Commands that write: how many seconds to wait for another process that is writing the
    /// same workspace (default 0: fail at once with exit code 6). Reading commands never wait.
    #[arg(long, global = true, default_value_t = 0, value_name = "SECONDS")]
    wait: u64,
    /// CPU priority (nice value, 1–19) for the commands that only read (search, thread, digest,
    /// prs, ask, stats, mcp, reconcile --dry-run, dead-letters list): an import or sync running
    /// beside them then keeps its pace, and the readers take only the CPU it leaves (they can
    /// wait seconds while it runs flat out). 0, the default, keeps the normal priority.
    #[arg(
        long,
        global = true,
        env = "CHATVAULT_READ_NICE",
        default_value_t = 0,
        value_parser = clap::value_parser!(u8).range(0..=19),
        value_name = "0-19"
    )]
    read_nice: u8,
    /// The workspace to use when the data directory holds several.
    #[arg(long, global = true)]
    workspace: Option<String>,
    /// Which embedder: auto (the model if found, else hashing), minilm, hashing.
    #[arg(long, global = true, value_enum, default_value_t = EmbedderArg::Auto)]
    embedder: EmbedderArg,
    /// A sentence-transformers model directory (default: $CHATVAULT_MODEL_DIR).
    #[arg(long, global = true)]
    model_dir: Option<PathBuf>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    json: bool,
    /// On errors, print the chain of causes.
    #[arg(long, short, global = true)]
    verbose: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum EmbedderArg {
    Auto,
    Minilm,
    Hashing,
}

/// A kind of conversation `backfill --types` takes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ConversationType {
    Public,
    Private,
    Mpim,
    Im,
}

impl ConversationType {
    /// Slack's name for it in `conversations.list`'s `types`.
    fn slack_name(self) -> &'static str {
        match self {
            ConversationType::Public => "public_channel",
            ConversationType::Private => "private_channel",
            ConversationType::Mpim => "mpim",
            ConversationType::Im => "im",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ModeArg {
    Hybrid,
    Semantic,
    Lexical,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ingest the bundled sample export into a fresh data directory and run a few searches.
    Demo {
        /// Where to put the data (default: a new temporary directory).
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// Import a Slack export (a directory or a .zip), then deliver its content to the index.
    IngestExport {
        /// The export directory or .zip.
        path: PathBuf,
        /// The workspace id (default: from the file name).
        #[arg(long = "as")]
        workspace_id: Option<String>,
        /// Only this conversation (its folder name or id); repeatable. One the export does not
        /// hold makes the command fail (exit 4) after importing the others.
        #[arg(long = "channel", value_name = "NAME_OR_ID")]
        channels: Vec<String>,
        /// Fail (exit 3) if anything was skipped, after importing the rest.
        #[arg(long)]
        strict: bool,
        /// An Enterprise Grid org export: only this workspace (its team id, or its folder under
        /// teams/); repeatable. Each workspace of the org is stored as its own workspace, under
        /// its team id; one the export does not hold fails the command (exit 4) before anything
        /// is written. The global --workspace picks one too.
        #[arg(long = "team", value_name = "TEAM_ID_OR_FOLDER")]
        teams: Vec<String>,
    },
    /// Fetch history from the Slack Web API with a bot token read from an environment variable.
    Backfill {
        /// The environment variable holding the bot token (never pass tokens as arguments).
        #[arg(long, default_value = "SLACK_BOT_TOKEN")]
        token_env: String,
        /// The workspace id to store under (default: --workspace, else "slack").
        #[arg(long = "as")]
        workspace_id: Option<String>,
        /// The Web API base URL (for tests and proxies).
        #[arg(long, default_value = "https://slack.com/api")]
        api_url: String,
        /// Only this conversation (a name or id); repeatable. One the token cannot see makes the
        /// command fail (exit 4) after fetching the others.
        #[arg(long = "channel", value_name = "NAME_OR_ID")]
        channels: Vec<String>,
        /// Not this conversation (a name or id); repeatable.
        #[arg(long = "exclude-channel", value_name = "NAME_OR_ID")]
        exclude_channels: Vec<String>,
        /// Fetch nothing older than this (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Which kinds of conversations: any of public, private, mpim, im (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "public,private,mpim,im")]
        types: Vec<ConversationType>,
        /// Days of history an incremental run reads again for late replies, edits, deletes and
        /// reactions (0: only what is newer than the newest stored message).
        #[arg(long, default_value_t = 7, value_name = "DAYS")]
        window: u64,
        /// Fail (exit 3) if any message was skipped or any conversation failed.
        #[arg(long)]
        strict: bool,
    },
    /// Search messages.
    Search {
        /// What to look for.
        query: String,
        /// hybrid (default), semantic or lexical.
        #[arg(long, value_enum, default_value_t = ModeArg::Hybrid)]
        mode: ModeArg,
        /// Only in these channels (#name or id); repeatable.
        #[arg(long)]
        channel: Vec<String>,
        /// Only by these people (handle, name or id); repeatable.
        #[arg(long)]
        user: Vec<String>,
        /// Only from this date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only before this date.
        #[arg(long)]
        until: Option<String>,
        /// How many hits.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Continue from a previous page's cursor.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Show a message's whole thread.
    Thread {
        /// The channel (#name or id).
        channel: String,
        /// The message's ts (any message of the thread).
        ts: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// A digest (Markdown) of a time range: most reacted, active threads, links, busiest channels and people.
    Digest {
        /// From (YYYY-MM-DD or RFC 3339); default: 7 days before --until.
        #[arg(long)]
        since: Option<String>,
        /// Until (default: now).
        #[arg(long)]
        until: Option<String>,
        /// Rows per section.
        #[arg(long, default_value_t = 5)]
        limit: usize,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Pull/merge requests shared in a range with the attention they got, and unanswered questions.
    Prs {
        /// From (default: all time).
        #[arg(long)]
        since: Option<String>,
        /// Until (default: now).
        #[arg(long)]
        until: Option<String>,
        /// How many of each.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Retrieve passages that answer a question, with citations, and the prompt for a language
    /// model; with --answer, have the model answer (streamed), citing the passages.
    Ask {
        /// The question (at most 4,000 characters).
        question: String,
        /// How many passages.
        #[arg(long, default_value_t = 5)]
        passages: usize,
        /// Generate the answer with the language model (--llm-url, --llm-model): it streams,
        /// then the sources it cites follow.
        #[arg(long)]
        answer: bool,
        #[command(flatten)]
        llm: LlmArgs,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Counts for the workspace and the outbox.
    Stats,
    /// Compare the metadata and content stores and repair drift.
    Reconcile {
        /// Only report, repair nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List or re-queue content deliveries that kept failing.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Run the service: Slack events over HTTP in; the JSON API, the web archive and MCP for AI
    /// assistants (/mcp) out; the relay in between. The server is the writer of the workspaces it serves (--workspace, else every stored
    /// one); other commands read beside it. Stops on SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Serve the archive to an AI assistant over MCP (the Model Context Protocol) on standard
    /// input and output: tools to search, read threads and context, ask, digest and list
    /// channels. Reads beside a running writer. The viewer is fixed here (--as, --admin;
    /// default: public channels only), never by the assistant.
    Mcp {
        /// Read as this member (handle, name or id): public channels plus their private ones.
        #[arg(long = "as", value_name = "USER")]
        as_user: Option<String>,
        /// Read every channel, private ones included.
        #[arg(long, conflicts_with = "as_user")]
        admin: bool,
    },
}

impl Command {
    /// Whether the command only reads (opens the stores read-only).
    fn only_reads(&self) -> bool {
        match self {
            Command::Search { .. }
            | Command::Thread { .. }
            | Command::Digest { .. }
            | Command::Prs { .. }
            | Command::Ask { .. }
            | Command::Stats
            | Command::Mcp { .. } => true,
            Command::Reconcile { dry_run } => *dry_run,
            Command::DeadLetters { action } => matches!(action, DeadLetterAction::List { .. }),
            Command::Demo { .. }
            | Command::IngestExport { .. }
            | Command::Backfill { .. }
            | Command::Serve(_) => false,
        }
    }
}

#[derive(Subcommand, Debug)]
enum DeadLetterAction {
    /// List them.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Put them back in the queue (all, or these ids) and deliver them.
    Requeue {
        /// Only these outbox ids.
        #[arg(long)]
        id: Vec<OutboxId>,
    },
}

#[derive(Args, Debug, Clone)]
struct ScopeArgs {
    /// Search as this member (handle, name or id): public channels plus their private ones.
    /// Without it, public channels only.
    #[arg(long)]
    viewer: Option<String>,
    /// Every channel, private ones included (administrators).
    #[arg(long, conflicts_with = "viewer")]
    admin: bool,
}

/// The language model that answers (an OpenAI-compatible chat-completions endpoint). Its API key
/// comes from the environment only: CHATVAULT_LLM_API_KEY, else OPENAI_API_KEY.
#[derive(Args, Debug)]
struct LlmArgs {
    /// The endpoint's base URL, e.g. `http://localhost:11434/v1` (Ollama) or
    /// `https://api.openai.com/v1`.
    #[arg(long, env = "CHATVAULT_LLM_URL")]
    llm_url: Option<String>,
    /// The model, e.g. llama3.2 or gpt-4o-mini.
    #[arg(long, env = "CHATVAULT_LLM_MODEL")]
    llm_model: Option<String>,
}

impl LlmArgs {
    /// The configured answerer, if any.
    fn answerer(&self) -> Result<Option<chatvault_answer::HttpAnswerer>> {
        chatvault_answer::HttpAnswererConfig::from_options(
            self.llm_url.as_deref(),
            self.llm_model.as_deref(),
        )?
        .map(chatvault_answer::HttpAnswerer::new)
        .transpose()
    }
}

fn main() {
    let cli = Cli::parse();
    let filter = if cli.global.verbose { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if cli.command.only_reads() && cli.global.read_nice > 0 {
        // Before any thread starts: threads inherit the priority of the thread that made them.
        chatvault_examples::lower_cpu_priority(cli.global.read_nice);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let verbose = cli.global.verbose;
    let result = runtime.block_on(async {
        let result = run(cli).await;
        let closed = close_writers().await;
        result.and(closed)
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        if verbose {
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
        } else if std::error::Error::source(&e).is_some() {
            eprintln!("  (run with --verbose for the causes)");
        }
        std::process::exit(exit_code(&e));
    }
}

fn storage(g: &Global) -> StorageConfig {
    StorageConfig {
        data_dir: g.data_dir.clone(),
        database_url: g.database_url.clone(),
        chroma_url: g.chroma_url.clone(),
    }
}

fn embedder_choice(g: &Global) -> EmbedderChoice {
    match g.embedder {
        EmbedderArg::Auto => EmbedderChoice::Auto,
        EmbedderArg::Minilm => EmbedderChoice::MiniLm,
        EmbedderArg::Hashing => EmbedderChoice::Hashing,
    }
}

/// The metadata stores opened for writing, closed (flushed) when the command ends.
static WRITERS: Mutex<Vec<Arc<dyn MetadataStore>>> = Mutex::new(Vec::new());

/// Closes the stores opened for writing: SQLite folds its write-ahead log into the database
/// file, so a copy or a read-only mount of the data directory holds every commit.
async fn close_writers() -> Result<()> {
    let writers: Vec<_> = WRITERS
        .lock()
        .map(|mut w| w.drain(..).collect())
        .unwrap_or_default();
    let mut result = Ok(());
    for w in writers {
        result = result.and(w.close().await);
    }
    result
}

/// Opens both stores and the embedder for `ws` as the global options say.
async fn open_for(
    g: &Global,
    config: &StorageConfig,
    ws: &WorkspaceId,
    access: Access,
) -> Result<Stores> {
    let stores = open_all(
        config,
        embedder_choice(g),
        g.model_dir.as_deref(),
        Some(ws),
        access,
    )
    .await?;
    if access != Access::Read {
        if let Ok(mut w) = WRITERS.lock() {
            w.push(stores.meta.clone());
        }
    }
    Ok(stores)
}

/// How a writing command opens the stores: as the workspace's one writer, waiting `--wait`.
fn write_access(g: &Global) -> Access {
    Access::Write {
        wait: Duration::from_secs(g.wait),
    }
}

/// As [`open_for`] with the configured storage, as the workspace's writer, telling a person (not
/// a script) which embedder writes the vectors.
async fn open_for_writing(g: &Global, ws: &WorkspaceId) -> Result<Stores> {
    let stores = open_for(g, &storage(g), ws, write_access(g)).await?;
    if !g.json {
        eprintln!("{}", stores.embedder_note);
    }
    Ok(stores)
}

/// Opens the stores for an existing workspace.
async fn open_workspace(g: &Global, access: Access) -> Result<(Stores, WorkspaceId)> {
    // Resolve the workspace first (metadata only), then pick the embedder its collection uses.
    let config = storage(g);
    let (meta, _) = match access {
        Access::Read => chatvault_examples::open_stores_read_only(&config).await?,
        Access::Write { .. } => chatvault_examples::open_stores(&config).await?,
    };
    let ws = resolve_workspace(meta.as_ref(), g.workspace.as_deref()).await?;
    drop(meta);
    let stores = open_for(g, &config, &ws, access).await?;
    Ok((stores, ws))
}

async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Demo { into } => demo(g, into.clone()).await,
        Command::Serve(args) => serve(g, args).await,
        Command::Mcp { as_user, admin } => {
            let (stores, ws) = open_workspace(g, Access::Read).await?;
            let scope = ScopeArgs {
                viewer: as_user.clone(),
                admin: *admin,
            };
            let scope = resolve_scope(&stores, &ws, &scope).await?;
            tracing::info!(workspace = %ws, ?scope, "serving MCP on stdio");
            chatvault_server::mcp::serve_stdio(chatvault_server::mcp::ArchiveMcp::new(
                engine(&stores),
                ws,
                scope,
            ))
            .await
        }
        Command::IngestExport {
            path,
            workspace_id,
            channels,
            strict,
            teams,
        } => {
            let options = ImportOptions {
                only_channels: (!channels.is_empty()).then(|| channels.clone()),
                ..Default::default()
            };
            if chatvault_collector::is_grid_export(path)? {
                if workspace_id.is_some() {
                    return Err(Error::invalid_input(
                        "--as does not apply to an Enterprise Grid org export: each of its workspaces is stored under its own team id (pick workspaces with --team)",
                    ));
                }
                let mut only = teams.clone();
                only.extend(g.workspace.clone());
                return ingest_grid(
                    g,
                    path,
                    (!only.is_empty()).then_some(only),
                    options,
                    *strict,
                )
                .await;
            }
            if !teams.is_empty() {
                return Err(Error::invalid_input(format!(
                    "--team picks workspaces of an Enterprise Grid org export, and {} is a workspace export",
                    path.display()
                )));
            }
            let ws = match workspace_id.as_deref().or(g.workspace.as_deref()) {
                Some(w) => WorkspaceId::new(w)?,
                None => workspace_id_from_path(path)?,
            };
            let stores = open_for_writing(g, &ws).await?;
            let summary = ingest(g, &stores, &ws, path, options).await?;
            import_outcome(&summary, *strict)
        }
        Command::Backfill {
            token_env,
            workspace_id,
            api_url,
            channels,
            exclude_channels,
            since,
            types,
            window,
            strict,
        } => {
            let token = std::env::var(token_env).map_err(|_| {
                Error::invalid_input(format!(
                    "the environment variable {token_env} is not set: export your bot token (xoxb-…) in it"
                ))
            })?;
            let ws = WorkspaceId::new(
                workspace_id
                    .as_deref()
                    .or(g.workspace.as_deref())
                    .unwrap_or("slack"),
            )?;
            let stores = open_for_writing(g, &ws).await?;
            let bars = Bars::new(g.json);
            let mut kinds: Vec<&str> = types.iter().map(|t| t.slack_name()).collect();
            kinds.dedup();
            let options = BackfillOptions {
                api_url: api_url.clone(),
                only_channels: (!channels.is_empty()).then(|| channels.clone()),
                exclude_channels: exclude_channels.clone(),
                channel_types: kinds.join(","),
                since: since
                    .as_deref()
                    .map(parse_time)
                    .transpose()?
                    .map(Ts::from_datetime),
                window: Duration::from_secs(window.saturating_mul(24 * 3600)),
                ..Default::default()
            };
            let backfill = Backfill::new(
                stores.meta.clone(),
                ws.clone(),
                SecretString::new(token),
                options,
            )?
            .with_progress(bars.clone());
            let report = backfill.run().await?;
            let relay = relay_all(&stores, &ws, &bars).await?;
            bars.finish();
            if g.json {
                print_json(&serde_json::json!({
                    "workspace": ws,
                    "users": report.users, "channels": report.channels,
                    "messages": report.messages, "replies": report.replies,
                    "api_calls": report.calls, "rate_limited": report.rate_limited,
                    "channels_complete": report.channels_complete,
                    "channels_failed": report.channels_failed.iter().map(|(c, e)| serde_json::json!({"channel": c, "error": e})).collect::<Vec<_>>(),
                    "skipped": report.skipped,
                    "missing": report.missing,
                    "memberships_refreshed": report.memberships_refreshed,
                    "late": {
                        "new": report.late.new, "edited": report.late.edited,
                        "reactions_changed": report.late.reactions_changed,
                        "threads_reread": report.late.threads_reread, "deleted": report.late.deleted,
                    },
                    "embedded": relay.embedded, "delivered": relay.acked, "dead_lettered": relay.dead_lettered,
                }))?;
            } else {
                out!(
                    "backfilled {}: {} users, {} channels ({} complete), {} messages ({} replies) in {} API calls ({} rate-limited)",
                    ws, report.users, report.channels, report.channels_complete, report.messages,
                    report.replies, report.calls, report.rate_limited
                );
                out!(
                    "members of {} private conversations refreshed; in the re-read window: {} new, {} edited, {} with changed reactions, {} threads re-read, {} deleted",
                    report.memberships_refreshed, report.late.new, report.late.edited,
                    report.late.reactions_changed, report.late.threads_reread, report.late.deleted
                );
                for (c, e) in &report.channels_failed {
                    out!("  channel {c} failed: {e} (a rerun continues where it stopped)");
                }
                for s in report.skipped.iter().take(20) {
                    out!("  skipped: {s}");
                }
                if report.skipped.len() > 20 {
                    out!(
                        "  … and {} more skipped (--json lists all)",
                        report.skipped.len() - 20
                    );
                }
                for m in &report.missing {
                    out!("missing: {m}");
                }
                out!(
                    "content: {} embedded, {} delivered, {} dead-lettered",
                    relay.embedded,
                    relay.acked,
                    relay.dead_lettered
                );
            }
            if !report.missing.is_empty() {
                return Err(Error::not_found(format!(
                    "{} of what was asked for could not be fetched: {}",
                    report.missing.len(),
                    report.missing.join("; ")
                )));
            }
            if *strict && (!report.skipped.is_empty() || !report.channels_failed.is_empty()) {
                return Err(Error::invalid_input(format!(
                    "{} message(s) skipped and {} conversation(s) failed, and --strict was given",
                    report.skipped.len(),
                    report.channels_failed.len()
                )));
            }
            Ok(())
        }
        Command::Search {
            query,
            mode,
            channel,
            user,
            since,
            until,
            limit,
            cursor,
            scope,
        } => {
            let (stores, ws) = open_workspace(g, Access::Read).await?;
            let engine = engine(&stores);
            let mut filter = SearchFilter::default();
            if !channel.is_empty() {
                let mut ids = Vec::new();
                for c in channel {
                    ids.push(resolve_channel(stores.meta.as_ref(), &ws, c).await?);
                }
                filter.channels = Some(ids);
            }
            if !user.is_empty() {
                let mut ids = Vec::new();
                for u in user {
                    ids.push(resolve_user(stores.meta.as_ref(), &ws, u).await?);
                }
                filter.users = Some(ids);
            }
            filter.time = range(since.as_deref(), until.as_deref())?;
            let request = SearchRequest::new(query.clone())
                .mode(match mode {
                    ModeArg::Hybrid => SearchMode::Hybrid,
                    ModeArg::Semantic => SearchMode::Semantic,
                    ModeArg::Lexical => SearchMode::Lexical,
                })
                .filter(filter)
                .limit(*limit)
                .cursor(cursor.clone())
                .scope(resolve_scope(&stores, &ws, scope).await?);
            let response = engine.search(&ws, request).await?;
            if g.json {
                print_json(&response)
            } else {
                print_search(query, &response);
                Ok(())
            }
        }
        Command::Thread { channel, ts, scope } => {
            let (stores, ws) = open_workspace(g, Access::Read).await?;
            let channel = resolve_channel(stores.meta.as_ref(), &ws, channel).await?;
            let key = MessageKey::new(ws.clone(), channel, Ts::new(ts.as_str())?);
            let thread = engine(&stores)
                .thread(&key, &resolve_scope(&stores, &ws, scope).await?)
                .await?;
            if g.json {
                print_json(&thread)
            } else {
                for m in &thread.messages {
                    print_message(m, "");
                }
                Ok(())
            }
        }
        Command::Digest {
            since,
            until,
            limit,
            scope,
        } => {
            let (stores, ws) = open_workspace(g, Access::Read).await?;
            let until_t = match until {
                Some(u) => parse_time(u)?,
                None => chrono::Utc::now(),
            };
            let since_t = match since {
                Some(s) => parse_time(s)?,
                None => until_t - chrono::Duration::days(7),
            };
            let mut request = DigestRequest::new(TimeRange::between(since_t, until_t));
            request.limit = *limit;
            request.scope = resolve_scope(&stores, &ws, scope).await?;
            let digest = engine(&stores).digest(&ws, request).await?;
            if g.json {
                print_json(&digest)
            } else {
                out!("{}", digest.to_markdown());
                Ok(())
            }
        }
        Command::Prs {
            since,
            until,
            limit,
            scope,
        } => {
            let (stores, ws) = open_workspace(g, Access::Read).await?;
            let mut request = PrReviewRequest::new(range(since.as_deref(), until.as_deref())?);
            request.limit = *limit;
            request.scope = resolve_scope(&stores, &ws, scope).await?;
            let report = engine(&stores).pr_reviews(&ws, request).await?;
            if g.json {
                return print_json(&report);
            }
            out!("Review requests ({}):", report.reviews.len());
            for r in &report.reviews {
                out!(
                    "  {}  — {} replies, {} reactions, shared {}×",
                    r.url,
                    r.reply_count,
                    r.reaction_count,
                    r.shares.len()
                );
                if let Some(first) = r.shares.first() {
                    out!(
                        "      first shared in {} by {}",
                        first.message.channel_label(),
                        first.message.author_label()
                    );
                }
            }
            out!("\nUnanswered questions ({}):", report.open_questions.len());
            for q in &report.open_questions {
                print_message(&q.message, "  ");
            }
            Ok(())
        }
        Command::Ask {
            question,
            passages,
            answer,
            llm,
            scope,
        } => {
            let answerer = if *answer {
                Some(llm.answerer()?.ok_or_else(|| {
                    Error::invalid_input(
                        "--answer needs a language model: pass --llm-url and --llm-model (or set \
                         CHATVAULT_LLM_URL and CHATVAULT_LLM_MODEL; the key, if any, in \
                         CHATVAULT_LLM_API_KEY)",
                    )
                })?)
            } else {
                None
            };
            let (stores, ws) = open_workspace(g, Access::Read).await?;
            let mut request = AskRequest::new(question.clone());
            request.passages = *passages;
            request.scope = resolve_scope(&stores, &ws, scope).await?;
            if let Some(answerer) = answerer {
                return ask::answer(g.json, &stores, &ws, request, &answerer).await;
            }
            let retrieval = engine(&stores).ask(&ws, request).await?;
            if g.json {
                return print_json(&retrieval);
            }
            if let Some(d) = &retrieval.degraded {
                out!("(note: {d})");
            }
            if retrieval.passages.is_empty() {
                out!("No passage found for {question:?}.");
            }
            for p in &retrieval.passages {
                print_passage(p);
            }
            out!("\n(To generate an answer, pass --answer with a language model, or hand `chatvault ask --json … | jq -r .prompt` to one.)");
            Ok(())
        }
        Command::Stats => {
            let (stores, ws) = open_workspace(g, Access::Read).await?;
            let stats = stores.meta.stats(&ws).await?;
            let outbox = stores.meta.outbox_stats(Some(ws.clone())).await?;
            let collection = stores.content.collection_info(&ws).await?;
            if g.json {
                return print_json(&serde_json::json!({
                    "workspace": ws, "metadata": stats, "outbox": outbox,
                    "content": collection,
                    "metadata_backend": stores.meta.backend(), "content_backend": stores.content.backend(),
                }));
            }
            out!(
                "workspace {ws}  (metadata: {}, content: {})",
                stores.meta.backend(),
                stores.content.backend()
            );
            out!(
                "  messages      {:>8}  ({} replies)",
                stats.messages,
                stats.replies
            );
            out!("  with content  {:>8}", stats.with_content);
            out!("  channels      {:>8}", stats.channels);
            out!("  users         {:>8}", stats.users);
            out!("  reactions     {:>8}", stats.reactions);
            out!("  links         {:>8}", stats.links);
            out!("  files         {:>8}", stats.files);
            out!(
                "  outbox        {:>8} pending, {} leased, {} dead",
                outbox.pending,
                outbox.leased,
                outbox.dead
            );
            match collection {
                Some(c) => out!(
                    "  index         {:>8} documents ({}, {} dims)",
                    c.documents,
                    c.spec.model_id,
                    c.spec.dimension
                ),
                None => out!("  index         none yet"),
            }
            Ok(())
        }
        Command::Reconcile { dry_run } => {
            let access = if *dry_run {
                Access::Read
            } else {
                write_access(g)
            };
            let (stores, ws) = open_workspace(g, access).await?;
            let options = chatvault_collector::ReconcileOptions {
                repair: !dry_run,
                collection_spec: Some(chatvault_core::CollectionSpec {
                    dimension: stores.embedder.dimension(),
                    model_id: stores.embedder.model_id().to_string(),
                }),
                ..Default::default()
            };
            let report = chatvault_collector::reconcile_with(
                stores.meta.clone(),
                stores.content.clone(),
                ws.clone(),
                options,
            )
            .await?;
            if g.json {
                let mut json = serde_json::to_value(&report)?;
                if let Some(fields) = json.as_object_mut() {
                    fields.insert("workspace".into(), serde_json::json!(ws));
                    fields.insert("clean".into(), report.is_clean().into());
                    fields.insert("summary".into(), report.summary().into());
                }
                print_json(&json)?;
            } else {
                out!(
                    "{} expected, {} stored; {} missing, {} mismatched, {} undelivered, {} awaiting source, {} orphans",
                    report.expected,
                    report.stored,
                    report.missing,
                    report.mismatched,
                    report.undelivered,
                    report.awaiting_source,
                    report.orphans
                );
                out!("workspace {ws}: {}", report.summary());
                for (what, key) in &report.examples {
                    out!("  {what}: {key}");
                }
            }
            if *dry_run && !report.is_clean() {
                return Err(Error::conflict(format!(
                    "the stores of workspace {ws} disagree (reconcile --dry-run found drift)"
                )));
            }
            Ok(())
        }
        Command::DeadLetters { action } => {
            let access = match action {
                DeadLetterAction::List { .. } => Access::Read,
                DeadLetterAction::Requeue { .. } => write_access(g),
            };
            let (stores, ws) = open_workspace(g, access).await?;
            match action {
                DeadLetterAction::List { limit } => {
                    let dead = stores.meta.dead_letters(Some(ws.clone()), *limit).await?;
                    if g.json {
                        return print_json(&dead);
                    }
                    if dead.is_empty() {
                        out!("no dead letters");
                    }
                    for d in &dead {
                        out!(
                            "{:>8}  {:<10} {}  after {} attempts: {}",
                            d.id,
                            d.op.name(),
                            d.key,
                            d.attempts,
                            d.last_error.as_deref().unwrap_or("")
                        );
                    }
                    Ok(())
                }
                DeadLetterAction::Requeue { id } => {
                    let ids = (!id.is_empty()).then(|| id.clone());
                    let n = stores
                        .meta
                        .requeue_dead_letters(Some(ws.clone()), ids)
                        .await?;
                    let bars = Bars::new(g.json);
                    let report = relay_all(&stores, &ws, &bars).await?;
                    bars.finish();
                    if g.json {
                        return print_json(
                            &serde_json::json!({"requeued": n, "delivered": report.acked, "dead_lettered": report.dead_lettered}),
                        );
                    }
                    out!(
                        "re-queued {n}; delivered {}, dead-lettered again {}",
                        report.acked,
                        report.dead_lettered
                    );
                    Ok(())
                }
            }
        }
    }
}

/// One passage of `ask`: where, who, when, its context, its link.
fn print_passage(p: &chatvault_query::Passage) {
    out!(
        "[{}] {} · {} · {}",
        p.citation,
        p.hit.message.channel_label(),
        p.hit.message.author_label(),
        p.hit.message.time.format("%Y-%m-%d %H:%M")
    );
    for m in &p.context {
        let marker = if m.key == p.hit.message.key { ">" } else { " " };
        out!(
            "   {marker} {}: {}",
            m.author_label(),
            one_line(m.text.as_deref().unwrap_or(""), 160)
        );
    }
    out!("    {}", p.link());
}

/// `ask --answer`: the grounded answer, streamed.
mod ask {
    use super::*;
    use chatvault_answer::{answer_grounded, HttpAnswerer, Outcome, RelevanceGate};

    pub(super) async fn answer(
        json: bool,
        stores: &Stores,
        ws: &WorkspaceId,
        request: AskRequest,
        answerer: &HttpAnswerer,
    ) -> Result<()> {
        let gate = RelevanceGate::for_embedder(stores.embedder.model_id());
        let on_token = |t: &str| {
            if !json {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                if let Err(e) = out.write_all(t.as_bytes()).and_then(|()| out.flush()) {
                    stdout_failed(e);
                }
            }
        };
        let answer =
            answer_grounded(&engine(stores), ws, request, answerer, &gate, &on_token).await?;
        if json {
            print_json(&answer)?;
        } else {
            match answer.outcome {
                Outcome::NotFound => out!("{}", answer.answer),
                Outcome::ModelFailed => {}
                _ => out!(""),
            }
            if !answer.checks.removed_citations.is_empty() {
                let removed: Vec<String> = answer
                    .checks
                    .removed_citations
                    .iter()
                    .map(|n| format!("[{n}]"))
                    .collect();
                out!(
                    "(note: removed citations of passages that do not exist: {}; checked answer: {})",
                    removed.join(", "),
                    answer.answer
                );
            }
            if answer.outcome == Outcome::Unsupported {
                out!("(warning: the answer cites no passage: it is not supported by the archive)");
            }
            if answer.outcome == Outcome::NotFound {
                out!(
                    "(no passage was relevant enough{}; the model was not asked)",
                    match (answer.checks.best_score, answer.checks.min_score) {
                        (Some(b), Some(m)) => format!(": best similarity {b:.2} < {m:.2}"),
                        _ => String::new(),
                    }
                );
            } else if answer.outcome == Outcome::ModelFailed {
                out!("The passages retrieved:");
                for p in &answer.passages {
                    print_passage(p);
                }
            } else if !answer.sources.is_empty() {
                out!("\nSources:");
                for s in &answer.sources {
                    out!(
                        "[{}] {} · {} · {}  {}",
                        s.citation,
                        s.channel,
                        s.author,
                        s.time.format("%Y-%m-%d %H:%M"),
                        s.link
                    );
                }
            }
        }
        match answer.error {
            Some(e) => Err(Error::unavailable(e)),
            None => Ok(()),
        }
    }
}

fn engine(stores: &Stores) -> QueryEngine {
    QueryEngine::new(
        stores.meta.clone(),
        stores.content.clone(),
        stores.embedder.clone(),
    )
}

async fn resolve_scope(stores: &Stores, ws: &WorkspaceId, scope: &ScopeArgs) -> Result<Scope> {
    if scope.admin {
        return Ok(Scope::Admin);
    }
    match &scope.viewer {
        Some(v) => Ok(Scope::User(
            resolve_user(stores.meta.as_ref(), ws, v).await?,
        )),
        None => Ok(Scope::Public),
    }
}

fn range(since: Option<&str>, until: Option<&str>) -> Result<TimeRange> {
    Ok(TimeRange {
        start: since.map(parse_time).transpose()?,
        end: until.map(parse_time).transpose()?,
    })
}

/// What an import's summary means for the exit code: something asked for and missing is an
/// error (exit 4), and with `--strict` so is anything skipped (exit 3). The summary has been
/// printed already.
fn import_outcome(summary: &ImportSummary, strict: bool) -> Result<()> {
    if !summary.missing.is_empty() {
        return Err(Error::not_found(format!(
            "{} of what was asked for is not in the export: {}",
            summary.missing.len(),
            summary.missing.join("; ")
        )));
    }
    if strict && !summary.skipped.is_empty() {
        return Err(Error::invalid_input(format!(
            "{} item(s) of the export were skipped and --strict was given (everything else was imported)",
            summary.skipped.len()
        )));
    }
    Ok(())
}

async fn ingest(
    g: &Global,
    stores: &Stores,
    ws: &WorkspaceId,
    path: &std::path::Path,
    options: ImportOptions,
) -> Result<ImportSummary> {
    let bars = Bars::new(g.json);
    let collector = Collector::new(stores.meta.clone(), ws.clone()).with_progress(bars.clone());
    let summary = collector.import_export(path, options).await?;
    let relay = relay_all(stores, ws, &bars).await?;
    bars.finish();
    if g.json {
        print_json(&import_json(ws, &summary, &relay))?;
    } else {
        print_import(&path.display().to_string(), ws, &summary, &relay);
        out!("{}", import_verdict(&summary));
    }
    Ok(summary)
}

/// An Enterprise Grid org export: each selected workspace imported into its own workspace (all
/// locked first), then delivered, with a report per workspace and one for the org.
async fn ingest_grid(
    g: &Global,
    path: &std::path::Path,
    only: Option<Vec<String>>,
    options: ImportOptions,
    strict: bool,
) -> Result<()> {
    let selected = chatvault_collector::grid_workspaces(path, only.as_deref())?;
    let ids: Vec<WorkspaceId> = selected.iter().map(|w| w.workspace.clone()).collect();
    let Some(first) = ids.first() else {
        return Err(Error::invalid_input(format!(
            "{} holds no workspace to import",
            path.display()
        )));
    };
    let stores = open_for_writing(g, first).await?;
    if let Some(locks) = &stores.locks {
        chatvault_examples::lock_workspaces(locks, &ids[1..], Duration::from_secs(g.wait)).await?;
    }
    let bars = Bars::new(g.json);
    let summary = chatvault_collector::GridImport::new(stores.meta.clone())
        .with_progress(bars.clone())
        .import(
            path,
            chatvault_collector::GridImportOptions {
                only_workspaces: Some(selected.iter().map(|w| w.folder.clone()).collect()),
                import: options,
            },
        )
        .await?;
    let mut reports = Vec::new();
    for (w, _) in &summary.workspaces {
        reports.push(relay_all(&stores, &w.workspace, &bars).await?);
    }
    bars.finish();
    let issues = |v: &[chatvault_collector::ImportIssue]| {
        v.iter().map(|i| i.to_string()).collect::<Vec<_>>()
    };
    if g.json {
        let workspaces: Vec<serde_json::Value> = summary
            .workspaces
            .iter()
            .zip(&reports)
            .map(|((w, s), relay)| {
                let mut v = import_json(&w.workspace, s, relay);
                v["folder"] = serde_json::json!(w.folder);
                v["team"] = serde_json::json!(w.team);
                v
            })
            .collect();
        print_json(&serde_json::json!({
            "grid": true,
            "workspaces": workspaces,
            "not_selected": summary.not_selected.iter().map(|w| &w.folder).collect::<Vec<_>>(),
            "skipped": issues(summary.skipped.as_slice()),
            "warnings": issues(summary.warnings.as_slice()),
            "missing": summary.missing,
        }))?;
    } else {
        out!(
            "{} is an Enterprise Grid org export: {} workspace(s) imported, each into its own workspace{}",
            path.display(),
            summary.workspaces.len(),
            if summary.not_selected.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} not selected: {})",
                    summary.not_selected.len(),
                    summary
                        .not_selected
                        .iter()
                        .map(|w| w.folder.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        for ((w, s), relay) in summary.workspaces.iter().zip(&reports) {
            out!("");
            print_import(
                &format!("teams/{}/ (team id from {})", w.folder, w.team_from),
                &w.workspace,
                s,
                relay,
            );
        }
        out!("");
        for (title, list) in [
            ("org-level skipped", &summary.skipped),
            ("org-level warnings", &summary.warnings),
        ] {
            if !list.is_empty() {
                out!("{title} {}:", list.len());
                for i in list {
                    out!("  {i}");
                }
            }
        }
        for m in &summary.missing {
            out!("missing: {m}");
        }
        let skipped = summary.skipped_total();
        out!(
            "result: {} messages stored in {} workspace(s); {}",
            summary.messages(),
            summary.workspaces.len(),
            if skipped == 0 && summary.missing.is_empty() {
                "everything selected in the export was stored".to_string()
            } else {
                format!(
                    "{skipped} skipped, {} asked for but missing (listed above)",
                    summary.missing.len()
                )
            }
        );
    }
    if !summary.missing.is_empty() {
        return Err(Error::not_found(format!(
            "{} of what was asked for is not in the export: {}",
            summary.missing.len(),
            summary.missing.join("; ")
        )));
    }
    if strict && summary.skipped_total() > 0 {
        return Err(Error::invalid_input(format!(
            "{} item(s) of the export were skipped and --strict was given (everything else was imported)",
            summary.skipped_total()
        )));
    }
    Ok(())
}

/// One workspace's import report for scripts.
fn import_json(
    ws: &WorkspaceId,
    summary: &ImportSummary,
    relay: &chatvault_collector::RelayReport,
) -> serde_json::Value {
    serde_json::json!({
        "workspace": ws,
        "files_read": summary.files_read, "users": summary.users, "channels": summary.channels,
        "messages": summary.totals.messages, "replies": summary.totals.replies,
        "with_content": summary.totals.with_content, "reactions": summary.totals.reactions,
        "files": summary.totals.files, "links": summary.totals.links,
        "metadata_only": summary.metadata_only, "outbox_enqueued": summary.outbox_enqueued,
        "skipped": summary.skipped.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        "warnings": summary.warnings.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        "missing": summary.missing,
        "deleted_since": summary.messages_deleted_before,
        "embedded": relay.embedded, "embeddings_reused": relay.embeddings_reused,
        "delivered": relay.acked, "dead_lettered": relay.dead_lettered,
        "seconds": summary.elapsed.as_secs_f64(),
    })
}

/// One workspace's import report for people (without the verdict line).
fn print_import(
    what: &str,
    ws: &WorkspaceId,
    summary: &ImportSummary,
    relay: &chatvault_collector::RelayReport,
) {
    out!(
        "imported {what} into workspace {ws}: {} messages ({} replies, {} with text, {} metadata-only), {} users, {} channels, {} reactions, {} files, {} links in {:.1} s ({:.0} messages/s)",
        summary.totals.messages,
        summary.totals.replies,
        summary.totals.with_content,
        summary.metadata_only,
        summary.users,
        summary.channels,
        summary.totals.reactions,
        summary.totals.files,
        summary.totals.links,
        summary.elapsed.as_secs_f64(),
        summary.messages_per_second()
    );
    out!(
        "content: {} embedded, {} reused unchanged, {} delivered, {} dead-lettered",
        relay.embedded,
        relay.embeddings_reused,
        relay.acked,
        relay.dead_lettered
    );
    for (title, issues) in [
        ("skipped", &summary.skipped),
        ("warnings", &summary.warnings),
    ] {
        if issues.is_empty() {
            continue;
        }
        out!("{title} {}:", issues.len());
        for i in issues.iter().take(20) {
            out!("  {i}");
        }
        if issues.len() > 20 {
            out!("  … and {} more (--json lists all)", issues.len() - 20);
        }
    }
    for m in &summary.missing {
        out!("missing: {m}");
    }
}

/// The last line of an import's report: whether everything in the export was stored.
fn import_verdict(s: &ImportSummary) -> String {
    let mut parts = Vec::new();
    if !s.missing.is_empty() {
        parts.push(format!("{} asked for but missing", s.missing.len()));
    }
    if !s.skipped.is_empty() {
        parts.push(format!("{} skipped", s.skipped.len()));
    }
    if !s.warnings.is_empty() {
        parts.push(format!("{} warnings", s.warnings.len()));
    }
    if parts.is_empty() {
        "result: everything in the export was stored".into()
    } else {
        format!(
            "result: {} messages stored; {} (listed above)",
            s.totals.messages,
            parts.join(", ")
        )
    }
}

async fn relay_all(
    stores: &Stores,
    ws: &WorkspaceId,
    bars: &Arc<Bars>,
) -> Result<chatvault_collector::RelayReport> {
    let relay = Relay::new(
        stores.meta.clone(),
        stores.content.clone(),
        stores.embedder.clone(),
        RelayOptions {
            workspace: Some(ws.clone()),
            ..Default::default()
        },
    )
    .with_progress(bars.clone());
    relay.drain().await
}

async fn demo(g: &Global, into: Option<PathBuf>) -> Result<()> {
    let dir = match into {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("chatvault-demo-{}", std::process::id())),
    };
    if dir.join("metadata.db").exists() {
        return Err(Error::invalid_input(format!(
            "{} already holds a chatvault data directory: the demo wants a fresh one (pass another --into)",
            dir.display()
        )));
    }
    let config = StorageConfig {
        data_dir: dir.clone(),
        database_url: g.database_url.clone(),
        chroma_url: g.chroma_url.clone(),
    };
    let ws = WorkspaceId::new("houstondatavis")?;
    let stores = open_for(g, &config, &ws, write_access(g)).await?;
    out!("data directory: {}", dir.display());
    out!("{}", stores.embedder_note);
    let export = sample_export();
    ingest(g, &stores, &ws, &export, ImportOptions::default()).await?;
    let engine = engine(&stores);
    for query in [
        "where is the next meetup",
        "d3 tutorial for beginners",
        "python library for interactive maps",
    ] {
        out!("\n=== hybrid search: {query:?}");
        let response = engine
            .search(&ws, SearchRequest::new(query).limit(3))
            .await?;
        print_search(query, &response);
    }
    out!(
        "\nTry more: cargo run -p chatvault-examples --bin chatvault -- --data-dir {} search \"<words>\"",
        dir.display()
    );
    Ok(())
}

fn print_search(query: &str, response: &SearchResponse) {
    if let Some(d) = &response.degraded {
        out!("(note: {d})");
    }
    if response.hits.is_empty() {
        out!("no results for {query:?}");
        return;
    }
    for (i, hit) in response.hits.iter().enumerate() {
        let m = &hit.message;
        let mut why = Vec::new();
        if let Some(l) = hit.why.lexical {
            why.push(format!("lexical #{}", l.rank));
        }
        if let Some(s) = hit.why.semantic {
            why.push(format!("semantic #{} ({:.2})", s.rank, s.score));
        }
        out!(
            "{:>2}. {} · {} · {}   [{}]",
            i + 1,
            m.channel_label(),
            m.author_label(),
            m.time.format("%Y-%m-%d %H:%M"),
            why.join(", ")
        );
        out!("    {}", one_line(&hit.snippet.marked, 200));
        let mut extra = Vec::new();
        if m.reaction_count > 0 {
            extra.push(format!("{} reactions", m.reaction_count));
        }
        if m.reply_count > 0 {
            extra.push(format!("{} replies", m.reply_count));
        }
        if let Some(p) = &hit.parent {
            extra.push(format!(
                "in a thread by {}",
                p.user_name.as_deref().unwrap_or("?")
            ));
        }
        if !extra.is_empty() {
            out!("    ({})", extra.join(", "));
        }
        out!("    {}", m.link());
    }
    if let Some(c) = &response.next_cursor {
        out!("(more: --cursor {c})");
    }
}

fn print_message(m: &MessageView, indent: &str) {
    out!(
        "{indent}{} · {} · {}: {}",
        m.channel_label(),
        m.author_label(),
        m.time.format("%Y-%m-%d %H:%M"),
        one_line(m.text.as_deref().unwrap_or("(no text)"), 200)
    );
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Progress bars per stage (indicatif), drawn only when stderr is a terminal and output is not JSON.
#[derive(Debug)]
struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<StageKey, ProgressBar>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StageKey(u8);

fn stage_key(s: Stage) -> (StageKey, &'static str) {
    match s {
        Stage::Users => (StageKey(0), "users"),
        Stage::Channels => (StageKey(1), "channels"),
        Stage::DayFiles => (StageKey(2), "day files"),
        Stage::Messages => (StageKey(3), "messages"),
        Stage::Relay => (StageKey(4), "delivered"),
        Stage::Embedded => (StageKey(5), "embedded"),
        Stage::ApiPages => (StageKey(6), "API pages"),
        Stage::Reconcile => (StageKey(7), "compared"),
        Stage::Reindex => (StageKey(8), "queued for re-indexing"),
    }
}

impl Bars {
    fn new(json: bool) -> Arc<Self> {
        let draw = !json && std::io::stderr().is_terminal();
        Arc::new(Bars {
            multi: draw.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: Mutex::new(HashMap::new()),
        })
    }

    fn finish(&self) {
        if let Ok(bars) = self.bars.lock() {
            for b in bars.values() {
                b.finish();
            }
        }
    }
}

impl Progress for Bars {
    fn update(&self, u: &ProgressUpdate) {
        let Some(multi) = &self.multi else { return };
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let (key, label) = stage_key(u.stage);
        let bar = bars.entry(key).or_insert_with(|| {
            let bar = multi.add(match u.total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            });
            let template = if u.total.is_some() {
                format!("{label:>10} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}")
            } else {
                format!("{label:>10} {{spinner}} {{pos}} {{per_sec}} {{msg}}")
            };
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if let Some(t) = u.total {
            bar.set_length(t);
        }
        bar.set_position(u.done);
        if let Some(d) = &u.detail {
            bar.set_message(d.clone());
        }
    }
}

// ----- chatvault serve -----

#[derive(Args, Debug)]
struct ServeArgs {
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

async fn serve(g: &Global, args: &ServeArgs) -> Result<()> {
    use chatvault_core::Workspace;

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
    let backfill_token = match args.backfill_every {
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
    };
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

    // The server is the writer: take every workspace's lock before anything is written.
    chatvault_examples::lock_workspaces(&locks, &workspaces, Duration::from_secs(g.wait)).await?;

    // One embedder for every collection: they must agree on it.
    let mut models = Vec::new();
    for ws in &workspaces {
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
    let (embedder, note) = chatvault_examples::choose_embedder(
        embedder_choice(g),
        g.model_dir.as_deref(),
        models.first().map(String::as_str),
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
