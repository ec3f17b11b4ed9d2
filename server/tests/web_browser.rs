//! The web archive in a real browser: headless Chromium driven through chromedriver (the
//! distribution's packages), against the same test server as `web.rs`. One browser session
//! walks the archive as a person would; a screenshot of each page lands in
//! `target/web-screenshots/` (looked at by people, never compared).
//!
//! Without `chromium` and `chromedriver` the test says it is skipped; under `CI=true` their
//! absence is a failure.

mod web_fixture;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use web_fixture::*;

/// The first of these that exists.
fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free port of 127.0.0.1, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    /// Kills chromedriver (the test closes its browser session first, which ends Chromium).
    ///
    /// Never `kill -KILL -<pgid>` through the `kill` command: procps-ng 4.0.2 (Debian 12's)
    /// reads that as `kill -KILL -1` and kills every process the user may signal — this test
    /// took down PostgreSQL, the CI run and the shell that way.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver(binary: &Path) -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

async fn browser(driver: &Driver, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,900", "--no-first-run", "--disable-extensions"]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("web-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    match c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(selector))
        .await
    {
        Ok(e) => e,
        Err(e) => panic!("no {selector} on {:?}: {e}", c.current_url().await.ok()),
    }
}

async fn path(c: &Client) -> String {
    let u = c.current_url().await.expect("url");
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

async fn no_secret(c: &Client, what: &str) {
    let source = c.source().await.expect("source").to_lowercase();
    for s in [SECRET_WORD, SECRET_NAME, SECRET_ID] {
        assert!(!source.contains(&s.to_lowercase()), "{what} shows {s}");
    }
}

#[tokio::test]
async fn a_person_browses_searches_and_logs_in() {
    let (Some(chromium), Some(chromedriver)) = (
        find_binary(&["chromium", "chromium-browser", "google-chrome"]),
        find_binary(&["chromedriver"]),
    ) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: chromium and chromedriver must be installed (.ci/run installs them)"
        );
        eprintln!("skipped: chromium or chromedriver not found (apt-get install chromium chromium-driver)");
        return;
    };
    let base = fixture().url.clone();
    let driver = start_driver(&chromedriver);
    let c = browser(&driver, &chromium).await;

    // Home: channels and people, nothing private.
    c.goto(&format!("{base}/")).await.expect("home");
    assert_eq!(path(&c).await, "/w/hdv/");
    css(&c, "table.channels").await;
    no_secret(&c, "home").await;
    shot(&c, "home").await;
    c.set_window_size(390, 844).await.expect("phone size");
    shot(&c, "home-phone").await;
    c.set_window_size(1200, 900).await.expect("desktop size");

    // A channel opens on its last day; the day before holds the formatted thread.
    css(&c, r#"a[href="/w/hdv/c/general"]"#)
        .await
        .click()
        .await
        .expect("open #general");
    css(&c, "nav.daynav").await;
    assert_eq!(path(&c).await, "/w/hdv/c/general/2016-07-29");
    css(&c, r#"a[rel="prev"]"#)
        .await
        .click()
        .await
        .expect("previous day");
    css(&c, "details.thread").await;
    assert_eq!(path(&c).await, format!("/w/hdv/c/general/{FORMATTED_DAY}"));
    let text = css(&c, ".msg .text").await.text().await.expect("text");
    assert!(
        text.contains("<script>alert('xss')</script>"),
        "shown as text: {text}"
    );
    assert_eq!(
        css(&c, ".msg .text strong")
            .await
            .text()
            .await
            .expect("bold"),
        "bold move"
    );
    let executed = c
        .execute(
            "return document.querySelectorAll('main script').length",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(
        executed,
        json!(0),
        "no script element made it into the page"
    );

    // The thread opens in place, then on its own page.
    let reply = css(&c, "details.thread li.msg").await;
    assert!(
        !reply.is_displayed().await.expect("displayed"),
        "collapsed at first"
    );
    css(&c, "details.thread summary")
        .await
        .click()
        .await
        .expect("open the thread");
    assert!(reply.is_displayed().await.expect("displayed"));
    shot(&c, "channel-day").await;
    css(&c, "details.thread p a")
        .await
        .click()
        .await
        .expect("thread page");
    css(&c, "main h1").await;
    assert_eq!(path(&c).await, format!("/w/hdv/t/C061A2UGJ/{FORMATTED_TS}"));
    assert_eq!(
        c.find_all(Locator::Css("li.msg"))
            .await
            .expect("messages")
            .len(),
        3
    );
    shot(&c, "thread").await;

    // Search: the highlighted match, and its link to the message.
    c.goto(&format!("{base}/w/hdv/search"))
        .await
        .expect("search");
    css(&c, "#q")
        .await
        .send_keys(REPLY_WORD)
        .await
        .expect("type");
    css(&c, "form.search-form button")
        .await
        .click()
        .await
        .expect("search");
    let mark = css(&c, ".hit mark").await;
    assert_eq!(mark.text().await.expect("mark").to_lowercase(), REPLY_WORD);
    shot(&c, "search").await;
    let link = css(&c, "a.hit-link").await;
    let href = link.attr("href").await.expect("href").expect("a link");
    assert!(href.starts_with("/w/hdv/m/C061A2UGJ/"), "{href}");
    link.click().await.expect("open the hit");
    css(&c, "li.msg.target").await;
    assert_eq!(path(&c).await, href);
    shot(&c, "message").await;

    // Paging.
    c.goto(&format!("{base}/w/hdv/search?q=data"))
        .await
        .expect("search");
    assert!(css(&c, "#result-count")
        .await
        .text()
        .await
        .expect("count")
        .starts_with("Results 1–20"));
    css(&c, r#"nav.pager a[rel="next"]"#)
        .await
        .click()
        .await
        .expect("next page");
    css(&c, "#result-count").await;
    let count = css(&c, "#result-count").await.text().await.expect("count");
    assert!(count.starts_with("Results 21–"), "{count}");
    shot(&c, "search-page-2").await;

    // The private channel: a 404 without a member's login.
    c.goto(&format!("{base}/w/hdv/c/{SECRET_NAME}"))
        .await
        .expect("private");
    assert_eq!(
        css(&c, "main h1").await.text().await.expect("h1"),
        "Not found"
    );
    no_secret(&c, "the private channel's 404").await;
    c.goto(&format!("{base}/w/hdv/search?q=launch+plan+keep+quiet"))
        .await
        .expect("search");
    no_secret(&c, "search").await;

    // Logged in through the form as a member, it is there.
    c.goto(&format!("{base}/login")).await.expect("login");
    shot(&c, "login").await;
    css(&c, "#token")
        .await
        .send_keys(MEMBER_TOKEN)
        .await
        .expect("type");
    css(&c, "form[action=\"/login\"] button")
        .await
        .click()
        .await
        .expect("log in");
    css(&c, ".account form").await;
    assert_eq!(path(&c).await, "/w/hdv/");
    css(&c, &format!(r#"a[href="/w/hdv/c/{SECRET_NAME}"]"#))
        .await
        .click()
        .await
        .expect("open the private channel");
    css(&c, ".msg").await;
    let source = c.source().await.expect("source");
    assert!(
        source.contains("zanzibar launch plan"),
        "the member reads it"
    );
    shot(&c, "private-channel").await;

    // Logging out hides it again.
    css(&c, ".account form button")
        .await
        .click()
        .await
        .expect("log out");
    css(&c, ".account a[href=\"/login\"]").await;
    no_secret(&c, "home after logout").await;

    // The 404 page.
    c.goto(&format!("{base}/no/such/page")).await.expect("404");
    assert_eq!(
        css(&c, "main h1").await.text().await.expect("h1"),
        "Not found"
    );
    shot(&c, "not-found").await;

    c.close().await.expect("close the browser");
    drop(driver);
}
