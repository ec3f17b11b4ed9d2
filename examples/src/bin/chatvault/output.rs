//! Printing for people and for scripts, and the progress bars.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatvault_collector::{Progress, ProgressUpdate, Stage};
use chatvault_core::Result;
use chatvault_query::MessageView;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) fn print_message(m: &MessageView, indent: &str) {
    out!(
        "{indent}{} · {} · {}: {}",
        m.channel_label(),
        m.author_label(),
        m.time.format("%Y-%m-%d %H:%M"),
        one_line(m.text.as_deref().unwrap_or("(no text)"), 200)
    );
}

pub(crate) fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Progress bars per stage (indicatif), drawn only when stderr is a terminal and output is not JSON.
#[derive(Debug)]
pub(crate) struct Bars {
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
    pub(crate) fn new(json: bool) -> Arc<Self> {
        let draw = !json && std::io::stderr().is_terminal();
        Arc::new(Bars {
            multi: draw.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn finish(&self) {
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
