//! The dashboard and the conformance HTML report in a real headless Chromium, driven over
//! WebDriver (chromedriver) with fantoccini (feature `browser-tests`; `.ci/run` installs
//! Debian's `chromium` and `chromium-driver`). Screenshots at desktop and phone widths are
//! written under `target/tmp/browser-tests/`.
#![cfg(feature = "browser-tests")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::server::{driftless, ServerProcess};
use common::traffic::{generate, VALUE_MARKERS};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// A chromedriver child process on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let mut child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} (apt-get install chromium-driver): {e}")
            });
        // Ready once it says so on stdout: its own signal, no sleep.
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        loop {
            let line = lines
                .next()
                .expect("chromedriver exited before it was ready")
                .unwrap();
            if line.contains("started successfully") {
                break;
            }
        }
        // Keep draining its stdout so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self) -> Client {
        let chrome = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,1000"]
            }
        });
        let caps = match caps {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a headless Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: under the target directory, kept as test output.
fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(b: &Client, width: u32, height: u32, name: &str) {
    b.set_window_size(width, height).await.unwrap();
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(shots().join(name), png).unwrap();
}

async fn js(b: &Client, script: &str) -> Value {
    b.execute(script, vec![]).await.unwrap()
}

async fn text_of(b: &Client, css: &str) -> String {
    b.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn dashboard_shows_clients_lag_and_rejections_and_never_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let traffic = generate(dir.path());
    let driver = Driver::start();
    let b = driver.browser().await;
    b.goto(&format!("{}/dashboard", traffic.server.base))
        .await
        .unwrap();
    // The page asks for the token once, then keeps it in the tab.
    let input = b.wait().for_element(Locator::Css("#token")).await.unwrap();
    input.send_keys(&traffic.admin).await.unwrap();
    b.find(Locator::Css("#login button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .for_element(Locator::Css("table.clients tr.row"))
        .await
        .unwrap();
    let rows = b
        .find_all(Locator::Css("table.clients tr.row"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "one row per Client");
    assert!(
        !b.find(Locator::Css("#login"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "the token is asked for once: the form is gone once it is accepted"
    );
    let mut lag_of_bob = None;
    for row in &rows {
        let cells: Vec<String> = {
            let mut v = Vec::new();
            for td in row.find_all(Locator::Css("td")).await.unwrap() {
                v.push(td.text().await.unwrap());
            }
            v
        };
        if cells[1] == "bob" {
            lag_of_bob = Some(cells[4].clone());
            assert_eq!(cells[2], "unavailable", "bob never pushed: {cells:?}");
        }
    }
    assert_eq!(
        lag_of_bob.as_deref(),
        Some("2"),
        "bob is two changes behind"
    );
    let by_type = text_of(&b, "table.rejections-by-type").await;
    assert!(by_type.contains("schema-violation"), "{by_type}");
    let latest = text_of(&b, "table.latest-rejections").await;
    assert!(latest.contains("schema-violation"), "{latest}");
    let facts = text_of(&b, ".facts").await;
    assert!(facts.contains("Records") && facts.contains('3'), "{facts}");
    assert_eq!(
        js(&b, "return sessionStorage.length").await,
        json!(1),
        "the token is kept in the tab"
    );
    assert!(
        !b.current_url().await.unwrap().as_str().contains("dl1."),
        "never in a URL"
    );
    // No pushed value, no rejected value and no Token anywhere in the DOM.
    let dom = js(&b, "return document.documentElement.outerHTML")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    for marker in VALUE_MARKERS {
        assert!(!dom.contains(marker), "a pushed value in the DOM");
    }
    assert!(!dom.contains("4242424242"), "the rejected value in the DOM");
    assert!(!dom.contains(&traffic.admin), "the token in the DOM");
    screenshot(&b, 1280, 1000, "dashboard-desktop.png").await;
    // At phone width nothing but the tables' own scroll boxes is wider than the screen.
    b.set_window_size(390, 844).await.unwrap();
    let overflow = js(
        &b,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert_eq!(
        overflow,
        json!(0),
        "the page scrolls sideways at phone width"
    );
    screenshot(&b, 390, 844, "dashboard-phone.png").await;
    b.close().await.unwrap();
}

#[tokio::test]
async fn html_report_shows_the_failing_case_its_requirement_and_its_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = ServerProcess::start(&data, &["--rate-limit", "200", "--fault", "wrong-checksum"]);
    let token_cmd = format!(
        "{} token --data {} --user {{user}} --space {{space}} --scope {{scope}} --ttl {{ttl}}",
        env!("CARGO_BIN_EXE_driftless"),
        data.display()
    );
    let report = dir.path().join("report.html");
    let run = driftless()
        .args([
            "conformance",
            "--server",
            &server.base,
            "--token-cmd",
            &token_cmd,
        ])
        .args([
            "--run",
            "integrity.*",
            "--seed",
            "5",
            "--format",
            "html",
            "--output",
        ])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let driver = Driver::start();
    let b = driver.browser().await;
    b.goto(&format!("file://{}", report.display()))
        .await
        .unwrap();
    let failing = b
        .wait()
        .for_element(Locator::Css("tr.case[data-outcome=fail]"))
        .await
        .unwrap();
    assert!(failing.is_displayed().await.unwrap());
    let id = failing
        .find(Locator::Css("td.id"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(id.starts_with("integrity."), "{id}");
    // Its transcript and expected vs actual are visible below it.
    let index = failing.attr("data-index").await.unwrap().unwrap();
    let exchanges = b
        .find_all(Locator::Css(&format!("#ev-{index} pre.exchange")))
        .await
        .unwrap();
    assert!(!exchanges.is_empty(), "the failing case has a transcript");
    let mut transcript = String::new();
    for x in &exchanges {
        assert!(x.is_displayed().await.unwrap());
        transcript.push_str(&x.text().await.unwrap());
    }
    assert!(
        transcript.contains("> GET /v1/spaces/") && transcript.contains("< 200 application/json"),
        "{transcript}"
    );
    assert!(b
        .find(Locator::Css(&format!("#ev-{index} dd.expected")))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    b.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
    screenshot(&b, 1280, 1000, "report-desktop.png").await;
    // Its requirement link leads to the requirement's text, which links to the chapter.
    let link = failing.find(Locator::Css("a.req")).await.unwrap();
    let target = link.attr("href").await.unwrap().unwrap();
    link.click().await.unwrap();
    let dt = b
        .find(Locator::Css(&format!("dt{}", target)))
        .await
        .unwrap();
    assert!(dt.is_displayed().await.unwrap());
    let chapter = dt
        .find(Locator::Css("a"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(
        chapter.starts_with("spec/06-integrity.md#:~:text="),
        "{chapter}"
    );
    // The grade filter hides the failing case.
    b.goto(&format!("file://{}", report.display()))
        .await
        .unwrap();
    b.find(Locator::Css("input[data-grade=fail]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let failing = b
        .find(Locator::Css("tr.case[data-outcome=fail]"))
        .await
        .unwrap();
    assert!(
        !failing.is_displayed().await.unwrap(),
        "the fail filter hides it"
    );
    screenshot(&b, 390, 844, "report-phone.png").await;
    b.close().await.unwrap();
}
