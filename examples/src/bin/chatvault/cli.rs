//! The command line: global options and the commands, each handled by its own module.

use std::path::PathBuf;

use chatvault_core::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::ask::AskArgs;
use crate::backfill::BackfillArgs;
use crate::dead_letters::{DeadLetterAction, DeadLettersArgs};
use crate::demo::DemoArgs;
use crate::digest::DigestArgs;
use crate::ingest::IngestArgs;
use crate::mcp::McpArgs;
use crate::prs::PrsArgs;
use crate::reconcile::ReconcileArgs;
use crate::search::SearchArgs;
use crate::serve::ServeArgs;
use crate::thread::ThreadArgs;

#[derive(Parser, Debug)]
#[command(
    name = "chatvault",
    version,
    about = "Archive Slack and search it: metadata in SQLite or PostgreSQL, content in an embedded vector + BM25 index"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args, Debug)]
pub(crate) struct Global {
    /// The data directory: the SQLite file and the vector collections.
    #[arg(
        long,
        global = true,
        default_value = "./chatvault-data",
        env = "CHATVAULT_DATA_DIR"
    )]
    pub(crate) data_dir: PathBuf,
    /// Keep metadata in PostgreSQL instead of the SQLite file (postgres://user@host/db). Best
    /// set in the environment, so that its password stays out of the process list.
    #[arg(
        long,
        global = true,
        env = "CHATVAULT_DATABASE_URL",
        hide_env_values = true
    )]
    pub(crate) database_url: Option<String>,
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
    pub(crate) chroma_url: Option<String>,
    /// Commands that write: how many seconds to wait for another process that is writing the
    /// same workspace (default 0: fail at once with exit code 6). Reading commands never wait.
    #[arg(long, global = true, default_value_t = 0, value_name = "SECONDS")]
    pub(crate) wait: u64,
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
    pub(crate) read_nice: u8,
    /// The workspace to use when the data directory holds several.
    #[arg(long, global = true)]
    pub(crate) workspace: Option<String>,
    /// Which embedder: auto (the model if found, else hashing), minilm, hashing.
    #[arg(long, global = true, value_enum, default_value_t = EmbedderArg::Auto)]
    pub(crate) embedder: EmbedderArg,
    /// A sentence-transformers model directory (default: $CHATVAULT_MODEL_DIR).
    #[arg(long, global = true)]
    pub(crate) model_dir: Option<PathBuf>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// On errors, print the chain of causes.
    #[arg(long, short, global = true)]
    pub(crate) verbose: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum EmbedderArg {
    Auto,
    Minilm,
    Hashing,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Ingest the bundled sample export into a fresh data directory and run a few searches.
    Demo(DemoArgs),
    /// Import a Slack export (a directory or a .zip), then deliver its content to the index.
    IngestExport(IngestArgs),
    /// Fetch history from the Slack Web API with a bot token read from an environment variable.
    Backfill(BackfillArgs),
    /// Search messages.
    Search(SearchArgs),
    /// Show a message's whole thread.
    Thread(ThreadArgs),
    /// A digest (Markdown) of a time range: most reacted, active threads, links, busiest channels and people.
    Digest(DigestArgs),
    /// Pull/merge requests shared in a range with the attention they got, and unanswered questions.
    Prs(PrsArgs),
    /// Retrieve passages that answer a question, with citations, and the prompt for a language
    /// model; with --answer, have the model answer (streamed), citing the passages.
    Ask(AskArgs),
    /// Counts for the workspace and the outbox.
    Stats,
    /// Compare the metadata and content stores and repair drift.
    Reconcile(ReconcileArgs),
    /// List or re-queue content deliveries that kept failing.
    DeadLetters(DeadLettersArgs),
    /// Run the service: Slack events over HTTP in; the JSON API, the web archive and MCP for AI
    /// assistants (/mcp) out; the relay in between. The server is the writer of the workspaces it serves (--workspace, else every stored
    /// one); other commands read beside it. Stops on SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Serve the archive to an AI assistant over MCP (the Model Context Protocol) on standard
    /// input and output: tools to search, read threads and context, ask, digest and list
    /// channels. Reads beside a running writer. The viewer is fixed here (--as, --admin;
    /// default: public channels only), never by the assistant.
    Mcp(McpArgs),
}

impl Command {
    /// Whether the command only reads (opens the stores read-only).
    pub(crate) fn only_reads(&self) -> bool {
        match self {
            Command::Search(_)
            | Command::Thread(_)
            | Command::Digest(_)
            | Command::Prs(_)
            | Command::Ask(_)
            | Command::Stats
            | Command::Mcp(_) => true,
            Command::Reconcile(r) => r.dry_run,
            Command::DeadLetters(d) => matches!(d.action, DeadLetterAction::List { .. }),
            Command::Demo(_)
            | Command::IngestExport(_)
            | Command::Backfill(_)
            | Command::Serve(_) => false,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ScopeArgs {
    /// Search as this member (handle, name or id): public channels plus their private ones.
    /// Without it, public channels only.
    #[arg(long)]
    pub(crate) viewer: Option<String>,
    /// Every channel, private ones included (administrators).
    #[arg(long, conflicts_with = "viewer")]
    pub(crate) admin: bool,
}

/// The language model that answers (an OpenAI-compatible chat-completions endpoint). Its API key
/// comes from the environment only: CHATVAULT_LLM_API_KEY, else OPENAI_API_KEY.
#[derive(Args, Debug)]
pub(crate) struct LlmArgs {
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
    pub(crate) fn answerer(&self) -> Result<Option<chatvault_answer::HttpAnswerer>> {
        chatvault_answer::HttpAnswererConfig::from_options(
            self.llm_url.as_deref(),
            self.llm_model.as_deref(),
        )?
        .map(chatvault_answer::HttpAnswerer::new)
        .transpose()
    }
}
