//! `chatvault ask`: passages that answer a question, with citations; with `--answer`, the
//! grounded answer of a language model, streamed.

use chatvault_answer::{answer_grounded, HttpAnswerer, Outcome, RelevanceGate};
use chatvault_core::{Error, Result, WorkspaceId};
use chatvault_examples::{Access, Stores};
use chatvault_query::AskRequest;
use clap::Args;

use crate::cli::{Global, LlmArgs, ScopeArgs};
use crate::output::{one_line, print_json};
use crate::stores::{engine, open_workspace, resolve_scope};

#[derive(Args, Debug)]
pub(crate) struct AskArgs {
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
}

pub(crate) async fn run(g: &Global, args: &AskArgs) -> Result<()> {
    let AskArgs {
        question,
        passages,
        answer,
        llm,
        scope,
    } = args;
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
        return answer_with(g.json, &stores, &ws, request, &answerer).await;
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
async fn answer_with(
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
                crate::stdout_failed(e);
            }
        }
    };
    let answer = answer_grounded(&engine(stores), ws, request, answerer, &gate, &on_token).await?;
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
