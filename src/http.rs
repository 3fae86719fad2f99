//! The only place that makes an HTTP request (through reqwest), and so the place where
//! `--dry-run` holds for requests: each one is printed as an equivalent `curl` line and none is
//! sent. Redirects are never followed here; bodies are read up to a bound.

use crate::ui::Ui;
use anyhow::Result;
use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bodies are read up to this many bytes; the rest is dropped and flagged.
pub const MAX_BODY: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub enum Body {
    Form(Vec<(String, String)>),
    Json(serde_json::Value),
    Raw(String),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
    pub timeout: Duration,
    /// Follow redirects (up to 10); off unless asked, so a redirect can be asserted on.
    pub follow_redirects: bool,
    /// A cookie jar to send cookies from and keep the answer's in (a smoke chain's), also
    /// across the redirects followed.
    pub cookies: Option<std::sync::Arc<Cookies>>,
}

/// A cookie jar as a browser keeps one (reqwest's, on the `cookie_store` crate: domains, paths,
/// expiry), with the clients that use it.
#[derive(Debug, Default)]
pub struct Cookies {
    jar: std::sync::Arc<reqwest::cookie::Jar>,
    plain: OnceLock<reqwest::blocking::Client>,
    following: OnceLock<reqwest::blocking::Client>,
}

impl Cookies {
    fn client(&self, follow: bool) -> Result<&reqwest::blocking::Client> {
        let cell = if follow { &self.following } else { &self.plain };
        if let Some(c) = cell.get() {
            return Ok(c);
        }
        let c = client_builder(follow).cookie_provider(self.jar.clone()).build()?;
        Ok(cell.get_or_init(|| c))
    }
}

/// Every client's settings: no redirects unless asked (then 10 at most), a 3 s connect time
/// limit, a User-Agent naming safedeploy.
fn client_builder(follow: bool) -> reqwest::blocking::ClientBuilder {
    let policy = if follow { reqwest::redirect::Policy::limited(10) } else { reqwest::redirect::Policy::none() };
    reqwest::blocking::Client::builder()
        .redirect(policy)
        .connect_timeout(Duration::from_secs(3))
        .user_agent(concat!("safedeploy/", env!("CARGO_PKG_VERSION")))
}

impl Request {
    pub fn get(url: impl Into<String>) -> Self {
        Request {
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(10),
            follow_redirects: false,
            cookies: None,
        }
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The request as a `curl` command line (what a dry run prints).
    pub fn display(&self) -> String {
        let q = crate::exec::quote;
        let mut parts = vec!["curl".to_string(), "-sS".into()];
        if self.follow_redirects {
            parts.push("-L".into());
        }
        if self.method != "GET" {
            parts.push(format!("-X {}", self.method));
        }
        for (k, v) in &self.headers {
            let v = if harmless_header(k) { v.as_str() } else { crate::redact::MASK };
            parts.push(format!("-H {}", q(&format!("{k}: {v}"))));
        }
        match &self.body {
            Some(Body::Form(fields)) => {
                for (k, v) in fields {
                    parts.push(format!("--data-urlencode {}", q(&format!("{k}={v}"))));
                }
            }
            Some(Body::Json(v)) => {
                parts.push("-H 'Content-Type: application/json'".into());
                parts.push(format!("--data {}", q(&v.to_string())));
            }
            Some(Body::Raw(s)) => parts.push(format!("--data-binary {}", q(s))),
            None => {}
        }
        parts.push(q(&self.url));
        parts.join(" ")
    }
}

/// Headers whose values say nothing secret; every other header's value (an `X-Api-Key`, an
/// `Authorization`, a custom token header) is shown as `****` wherever a request is echoed.
pub fn harmless_header(name: &str) -> bool {
    const HARMLESS: &[&str] = &[
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-type",
        "content-length",
        "host",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "origin",
        "pragma",
        "referer",
        "user-agent",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-request-id",
        "x-requested-with",
        "x-safedeploy-check",
    ];
    HARMLESS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub truncated: bool,
    pub elapsed: Duration,
}

impl Response {
    /// A `Retry-After` given in seconds (the HTTP-date form is not used by load balancers).
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// The start of the body, on one line, for error messages.
    pub fn body_start(&self) -> String {
        one_line(&self.body)
    }
}

/// The start of a text an answer carried, on one line (200 characters, control characters as
/// spaces) and unescaped, so the secrets in it are masked as they are, not as JSON escaped them.
pub fn one_line(text: &str) -> String {
    let flat: String = text.chars().take(200).map(|c| if c.is_control() { ' ' } else { c }).collect();
    flat.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A request that got no HTTP answer: connection refused, timeout, TLS failure.
#[derive(Debug, thiserror::Error)]
#[error("{method} {url}: {reason}")]
pub struct TransportError {
    pub method: String,
    pub url: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct Http {
    pub dry_run: bool,
    pub ui: Ui,
    client: OnceLock<reqwest::blocking::Client>,
    following: OnceLock<reqwest::blocking::Client>,
}

impl Http {
    pub fn new(dry_run: bool, ui: Ui) -> Self {
        Http { dry_run, ui, client: OnceLock::new(), following: OnceLock::new() }
    }

    fn client(&self, follow: bool) -> Result<&reqwest::blocking::Client> {
        let cell = if follow { &self.following } else { &self.client };
        if let Some(c) = cell.get() {
            return Ok(c);
        }
        let c = client_builder(follow).build()?;
        Ok(cell.get_or_init(|| c))
    }

    /// Prints a request in a dry run (true: do not send it).
    pub fn plan(&self, req: &Request, note: &str) -> bool {
        if self.dry_run {
            self.ui.plan(format!("+ {}{note}", req.display()));
        }
        self.dry_run
    }

    /// Sends a request; `Ok(None)` in a dry run. A transport failure is a [`TransportError`].
    pub fn send(&self, req: &Request) -> Result<Option<Response>> {
        if self.plan(req, "") {
            return Ok(None);
        }
        crate::failpoint::step(|| format!("+ {}", req.display()))?;
        self.send_now(req).map(Some)
    }

    /// A read-only look (a health probe): sent in a real run, not in a dry run (`None`), and not
    /// a step of the plan, since it changes nothing.
    pub fn probe(&self, req: &Request) -> Option<Result<Response>> {
        (!self.dry_run).then(|| self.send_now(req))
    }

    /// Sends without consulting the dry-run flag. Only for callers that have already printed the
    /// request in a dry run (polling loops print once, then stop).
    fn send_now(&self, req: &Request) -> Result<Response> {
        self.ui.detail(format!("> {} {}", req.method, req.url));
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| crate::usage!("invalid HTTP method {:?}", req.method))?;
        let client = match &req.cookies {
            Some(jar) => jar.client(req.follow_redirects)?,
            None => self.client(req.follow_redirects)?,
        };
        let mut rb = client.request(method, &req.url).timeout(req.timeout);
        for (k, v) in &req.headers {
            rb = rb.header(k, v);
        }
        rb = match &req.body {
            Some(Body::Form(f)) => rb.form(f),
            Some(Body::Json(v)) => rb.json(v),
            Some(Body::Raw(s)) => rb.body(s.clone()),
            None => rb,
        };
        let started = Instant::now();
        let transport = |e: reqwest::Error| TransportError {
            method: req.method.clone(),
            url: req.url.clone(),
            reason: reason_of(&e),
        };
        let resp = rb.send().map_err(transport)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut bytes = Vec::new();
        resp.take(MAX_BODY + 1).read_to_end(&mut bytes).map_err(|e| TransportError {
            method: req.method.clone(),
            url: req.url.clone(),
            reason: format!("reading the body: {e}"),
        })?;
        let truncated = bytes.len() as u64 > MAX_BODY;
        bytes.truncate(MAX_BODY as usize);
        let elapsed = started.elapsed();
        self.ui.detail(format!("< {status} in {}ms", elapsed.as_millis()));
        Ok(Response { status, headers, body: String::from_utf8_lossy(&bytes).into_owned(), truncated, elapsed })
    }

    /// Downloads the body of a GET to `path`, streamed (log bundles can be large), up to
    /// `limit` bytes; returns the bytes written (`None` in a dry run). A non-2xx answer is an error.
    pub fn download(&self, req: &Request, path: &std::path::Path, limit: u64) -> Result<Option<u64>> {
        use anyhow::Context as _;
        if self.plan(req, &format!(" -o {}", path.display())) {
            return Ok(None);
        }
        crate::failpoint::step(|| format!("+ {} -o {}", req.display(), path.display()))?;
        self.ui.detail(format!("> {} {}", req.method, req.url));
        let failed = |reason: String| TransportError { method: req.method.clone(), url: req.url.clone(), reason };
        let resp = self
            .client(req.follow_redirects)?
            .get(&req.url)
            .timeout(req.timeout)
            .send()
            .map_err(|e| failed(reason_of(&e)))?;
        if !resp.status().is_success() {
            return Err(failed(format!("answered {}", resp.status())).into());
        }
        let mut file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let n = std::io::copy(&mut resp.take(limit + 1), &mut file)
            .map_err(|e| failed(format!("reading the body: {e}")))?;
        if n > limit {
            return Err(failed(format!("the body is larger than {} MiB", limit / (1024 * 1024))).into());
        }
        Ok(Some(n))
    }

    /// Polls `req` until `accept` says the answer is final or the deadline passes; returns the
    /// last answer (or transport error). In a dry run, prints the poll once and returns `None`.
    pub fn poll(
        &self,
        req: &Request,
        every: Duration,
        deadline: Instant,
        mut accept: impl FnMut(&Result<Response>) -> Poll,
    ) -> Result<Option<Result<Response>>> {
        if self.plan(req, "   # repeated until it answers, or the deadline") {
            return Ok(None);
        }
        crate::failpoint::step(|| format!("+ {}   # repeated until it answers", req.display()))?;
        loop {
            let answer = self.send_now(req);
            let pause = match accept(&answer) {
                Poll::Done => return Ok(Some(answer)),
                Poll::Abort(e) => return Err(e),
                Poll::Again => every,
                Poll::After(d) => d,
            };
            if Instant::now() + pause >= deadline {
                return Ok(Some(answer));
            }
            std::thread::sleep(pause);
        }
    }
}

/// What a polling loop does with an answer.
pub enum Poll {
    Done,
    /// Ask again after the usual pause.
    Again,
    /// Ask again after this long (a `Retry-After`).
    After(Duration),
    Abort(anyhow::Error),
}

fn reason_of(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut source = e.source();
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    if e.is_redirect() {
        return format!("too many redirects ({last})");
    }
    if e.is_connect() { format!("could not connect ({last})") } else { last }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_display_is_curl() {
        let mut r = Request::get("http://127.0.0.1:1/shorten");
        r.method = "POST".into();
        r.body = Some(Body::Form(vec![("url".into(), "https://e.com/a b".into())]));
        assert_eq!(r.display(), "curl -sS -X POST --data-urlencode 'url=https://e.com/a b' http://127.0.0.1:1/shorten");
        r.headers = vec![("X-Team-Auth".into(), "v3ry".into()), ("Accept".into(), "text/html".into())];
        assert!(r.display().contains("-H 'X-Team-Auth: ****' -H 'Accept: text/html'"), "{}", r.display());
    }
}
