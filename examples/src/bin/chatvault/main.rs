//! `chatvault`: ingest Slack into the embedded stores (or PostgreSQL) and search it.
//!
//! Output is for people by default; `--json` prints one JSON document per command (the library's
//! serde types: `SearchResponse`, `Thread`, `Digest`, `PrReviewReport`, `Retrieval`, …).
//! Exit codes: 0 ok, 2 usage, 3 bad input, 4 not found, 5 store unavailable, 6 conflict,
//! 7 unsupported, 1 anything else.

use std::io::IsTerminal;

use chatvault_core::Result;
use chatvault_examples::exit_code;
use clap::Parser;

/// `println!` that ends the program quietly when the reader has gone (`chatvault … | head`):
/// `println!` panics on a closed pipe. Exiting mid-command loses nothing: every write is
/// committed or re-done by the outbox on the next run.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::stdout_failed(e);
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

mod ask;
mod backfill;
mod cli;
mod dead_letters;
mod demo;
mod digest;
mod ingest;
mod mcp;
mod output;
mod prs;
mod reconcile;
mod search;
mod serve;
mod stats;
mod stores;
mod thread;

use cli::{Cli, Command};

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
        let closed = stores::close_writers().await;
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

/// Hands the command to its module.
async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Demo(args) => demo::run(g, args).await,
        Command::IngestExport(args) => ingest::run(g, args).await,
        Command::Backfill(args) => backfill::run(g, args).await,
        Command::Search(args) => search::run(g, args).await,
        Command::Thread(args) => thread::run(g, args).await,
        Command::Digest(args) => digest::run(g, args).await,
        Command::Prs(args) => prs::run(g, args).await,
        Command::Ask(args) => ask::run(g, args).await,
        Command::Stats => stats::run(g).await,
        Command::Reconcile(args) => reconcile::run(g, args).await,
        Command::DeadLetters(args) => dead_letters::run(g, args).await,
        Command::Serve(args) => serve::run(g, args).await,
        Command::Mcp(args) => mcp::run(g, args).await,
    }
}
