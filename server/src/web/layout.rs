//! The frame every page shares: head, navigation, who is signed in.

use chatvault_core::Workspace;
use chatvault_query::Scope;
use maud::{html, Markup, DOCTYPE};

use super::assets;

/// A page being built: its title, its workspace (for the navigation) and its viewer.
#[derive(Debug)]
pub(crate) struct Page<'a> {
    title: String,
    workspace: Option<&'a Workspace>,
    viewer: &'a Scope,
    /// Which navigation entry is current.
    pub(crate) section: Section,
    /// The search box's text (kept on the search page).
    pub(crate) query: String,
    /// The signed-in member's name, when known.
    name: Option<String>,
}

/// The navigation entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Browse,
    Search,
    Digest,
    Prs,
    Ask,
    Other,
}

impl<'a> Page<'a> {
    pub(crate) fn new(
        title: impl Into<String>,
        workspace: Option<&'a Workspace>,
        viewer: &'a Scope,
    ) -> Self {
        Page {
            title: title.into(),
            workspace,
            viewer,
            section: Section::Browse,
            query: String::new(),
            name: None,
        }
    }

    /// Shows the signed-in member by this name (rather than by id).
    pub(crate) fn named(mut self, name: Option<&str>) -> Self {
        self.name = name.map(str::to_string);
        self
    }

    pub(crate) fn section(mut self, section: Section) -> Self {
        self.section = section;
        self
    }

    /// The whole document around `body`.
    pub(crate) fn render(&self, body: Markup) -> Markup {
        let site = self.workspace.map_or("chatvault", |w| w.name.as_str());
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="color-scheme" content="light dark";
                    title { (self.title) " · " (site) }
                    link rel="stylesheet" href=(assets::css_url());
                    script src=(assets::js_url()) defer {}
                }
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        nav aria-label="Archive" {
                            a.brand href=(self.workspace.map_or("/".to_string(), |w| format!("/w/{}/", w.id))) { (site) }
                            @if let Some(w) = self.workspace {
                                (self.nav_link(format!("/w/{}/", w.id), "Channels", Section::Browse))
                                (self.nav_link(format!("/w/{}/search", w.id), "Search", Section::Search))
                                (self.nav_link(format!("/w/{}/digest", w.id), "Digest", Section::Digest))
                                (self.nav_link(format!("/w/{}/prs", w.id), "Reviews", Section::Prs))
                                (self.nav_link(format!("/w/{}/ask", w.id), "Ask", Section::Ask))
                            }
                        }
                        @if let Some(w) = self.workspace {
                            @if self.section != Section::Search {
                                form.quick role="search" method="get" action=(format!("/w/{}/search", w.id)) {
                                    label.visually-hidden for="quick-q" { "Search the archive" }
                                    input #quick-q type="search" name="q" placeholder="Search" value=(self.query);
                                }
                            }
                        }
                        (self.account())
                    }
                    main #main tabindex="-1" { (body) }
                    footer.bottom { "chatvault web archive · times in UTC" }
                }
            }
        }
    }

    fn nav_link(&self, href: String, label: &str, section: Section) -> Markup {
        html! {
            @if self.section == section {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    }

    fn account(&self) -> Markup {
        let who = match self.viewer {
            Scope::Public => None,
            Scope::Admin => Some("admin".to_string()),
            Scope::User(u) => Some(self.name.clone().unwrap_or_else(|| u.to_string())),
        };
        html! {
            div.account {
                @match who {
                    Some(who) => {
                        span.who title="Signed in" { "Signed in: " (who) }
                        form method="post" action="/logout" {
                            button type="submit" { "Log out" }
                        }
                    }
                    None => {
                        span.who { "Public channels" }
                        a href="/login" { "Log in" }
                    }
                }
            }
        }
    }
}
