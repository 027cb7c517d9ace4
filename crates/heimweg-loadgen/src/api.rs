//! `heimweg-loadgen api`: many clients of the JSON API and the panel at once, as a busy
//! helpdesk and an enrollment script make them, while a prober measures how long a
//! revocation takes to leave the running data plane.
//!
//! Each client keeps one HTTP/1.1 connection (as browsers and API clients do) and sends its
//! next request when the answer to the last one is in, cycling through a fixed mix: device
//! reads and searches with a read-only token, the panel's device list and device page with a
//! helpdesk session, enrollments, rotations, expiry changes and revocations with an admin
//! token. The prober enrolls a device with a key of its own, waits until the gateway's UAPI
//! socket lists it as a peer, revokes it over the API and times until the peer is gone.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// What to load and for how long.
pub struct Plan {
    pub api: SocketAddr,
    pub admin_token: String,
    pub read_token: String,
    pub panel_user: String,
    pub panel_password: String,
    pub clients: usize,
    /// Devices `bench-0 ..` enrolled before the clock starts, read and rotated by the clients.
    pub devices: usize,
    pub duration: Duration,
    pub uapi_socket: PathBuf,
}

/// One kind of request in the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    ReadDevice,
    SearchDevices,
    PanelList,
    PanelDevice,
    Enroll,
    Rotate,
    Patch,
    Revoke,
}

/// The mix every client cycles through: reads dominate, as at a helpdesk; a tenth are
/// enrollments and their revocations, a tenth rotations and expiry changes.
const MIX: [Op; 20] = [
    Op::ReadDevice,
    Op::SearchDevices,
    Op::PanelList,
    Op::ReadDevice,
    Op::Enroll,
    Op::PanelDevice,
    Op::ReadDevice,
    Op::Rotate,
    Op::SearchDevices,
    Op::ReadDevice,
    Op::PanelList,
    Op::Patch,
    Op::ReadDevice,
    Op::Enroll,
    Op::SearchDevices,
    Op::PanelDevice,
    Op::ReadDevice,
    Op::Rotate,
    Op::PanelList,
    Op::Revoke,
];

/// A keep-alive HTTP/1.1 connection with the cookies the panel set on it.
struct Client {
    api: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    cookies: BTreeMap<String, String>,
}

struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Client {
    fn new(api: SocketAddr) -> Client {
        Client {
            api,
            sender: None,
            cookies: BTreeMap::new(),
        }
    }

    async fn connect(&mut self) -> Result<()> {
        let stream = tokio::net::TcpStream::connect(self.api)
            .await
            .with_context(|| format!("connecting to {}", self.api))?;
        stream.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request (reconnecting once if the server closed the connection).
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<(&'static str, String)>,
    ) -> Result<Answer> {
        for attempt in 0..2 {
            if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
                self.connect().await?;
            }
            let mut req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header("host", "localhost");
            if let Some(t) = auth {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            if !self.cookies.is_empty() {
                let jar: Vec<String> = self
                    .cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                req = req.header("cookie", jar.join("; "));
            }
            if method == Method::POST {
                // What a browser sends with a form from the panel's own page.
                req = req.header("sec-fetch-site", "same-origin");
            }
            let req = match &body {
                Some((kind, b)) => req
                    .header("content-type", *kind)
                    .body(Full::new(Bytes::from(b.clone())))?,
                None => req.body(Full::new(Bytes::new()))?,
            };
            let sender = self.sender.as_mut().expect("connected above");
            let resp = match sender.send_request(req).await {
                Ok(r) => r,
                Err(_) if attempt == 0 => {
                    self.sender = None;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for line in resp.headers().get_all("set-cookie") {
                let line = line.to_str().unwrap_or("");
                let pair = line.split(';').next().unwrap_or("");
                if let Some((k, v)) = pair.split_once('=') {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            return Ok(Answer { status, body });
        }
        bail!("the connection closed twice in a row")
    }

    async fn json(
        &mut self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Answer> {
        let body = body.map(|b| ("application/json", b.to_string()));
        self.send(method, path, Some(token), body).await
    }

    /// Logs in to the panel with the login form, as a browser does.
    async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        let page = self.send(Method::GET, "/login", None, None).await?;
        let text = String::from_utf8_lossy(&page.body);
        let marker = r#"name="_csrf" value=""#;
        let start = text
            .find(marker)
            .context("no CSRF field on the login page")?
            + marker.len();
        let csrf = &text[start..start + text[start..].find('"').unwrap_or(0)];
        let form = form_urlencoded(&[
            ("_csrf", csrf),
            ("name", user),
            ("password", password),
            ("next", "/"),
        ]);
        let done = self
            .send(
                Method::POST,
                "/login",
                None,
                Some(("application/x-www-form-urlencoded", form)),
            )
            .await?;
        if done.status != StatusCode::SEE_OTHER {
            bail!(
                "logging in as {user} failed: {} {}",
                done.status,
                String::from_utf8_lossy(&done.body)
            );
        }
        Ok(())
    }
}

fn form_urlencoded(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", k, percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Latencies and status codes of one kind of request.
#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

impl Tally {
    fn record(&mut self, took: Duration, status: Option<StatusCode>) {
        self.latencies_ms.push(took.as_secs_f64() * 1000.0);
        match status {
            Some(s) => *self.statuses.entry(s.as_u16()).or_default() += 1,
            None => self.errors += 1,
        }
    }
}

/// The value below which `q` of the sorted samples lie (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summary(samples: &mut [f64]) -> Value {
    samples.sort_by(f64::total_cmp);
    json!({
        "count": samples.len(),
        "p50_ms": quantile(samples, 0.50),
        "p90_ms": quantile(samples, 0.90),
        "p99_ms": quantile(samples, 0.99),
        "max_ms": samples.last().copied().unwrap_or(f64::NAN),
    })
}

/// The peers' public keys (hex) the gateway's UAPI socket lists now.
async fn uapi_peers(socket: &std::path::Path) -> Result<Vec<String>> {
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    s.write_all(b"get=1\n\n").await?;
    // The server keeps the connection for further requests: the answer ends with its errno
    // line and a blank line, not with the connection.
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while !out.ends_with(b"\n\n") || !contains_errno(&out) {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("public_key="))
        .map(String::from)
        .collect())
}

fn contains_errno(answer: &[u8]) -> bool {
    answer.windows(6).any(|w| w == b"errno=")
}

/// Polls the UAPI socket every millisecond until `present(peers)` holds; the time it took.
async fn until_peers(
    socket: &std::path::Path,
    limit: Duration,
    present: impl Fn(&[String]) -> bool,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if present(&uapi_peers(socket).await?) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("the data plane did not follow within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What the prober saw: per round, enrolled → peer and revoked → gone (ms), and how often the
/// API refused it (it tries again, as an admin would) or the data plane did not follow.
#[derive(Default)]
struct Probes {
    added: Vec<f64>,
    removed: Vec<f64>,
    refused: u64,
    not_followed: u64,
}

/// How long the prober waits for the data plane before it counts a round as not followed.
const FOLLOW_LIMIT: Duration = Duration::from_secs(120);

/// Sends a request until the answer has status `want`, counting the refusals.
async fn until_status(
    client: &mut Client,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    want: StatusCode,
    refused: &mut u64,
) -> Result<()> {
    loop {
        let a = client.json(method.clone(), path, token, body.clone()).await;
        if a.is_ok_and(|a| a.status == want) {
            return Ok(());
        }
        *refused += 1;
        if *refused > 1000 {
            bail!("the API refused the prober a thousand times");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Enroll with an own key, wait for the peer, revoke, wait until it is gone: rounds until
/// `stop`.
async fn probe(plan: Arc<Plan>, stop: Instant) -> Result<Probes> {
    let mut client = Client::new(plan.api);
    let mut out = Probes::default();
    let mut round = 0u32;
    let run_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    while Instant::now() < stop {
        // A key of the prober's own, unique per run and round (as a device that made its key).
        let secret = crate::keys::device_secret(run_seed, round);
        let public = boringtun::x25519::PublicKey::from(&secret);
        let hex_key: String = public
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let name = format!("probe-{run_seed:x}-{round}");
        round += 1;
        let body = json!({"name": name, "public_key": crate::keys::b64(public.as_bytes())});
        let t = Instant::now();
        let token = plan.admin_token.as_str();
        until_status(
            &mut client,
            token,
            Method::POST,
            "/api/v1/devices",
            Some(body),
            StatusCode::CREATED,
            &mut out.refused,
        )
        .await?;
        let present = |p: &[String]| p.contains(&hex_key);
        if until_peers(&plan.uapi_socket, FOLLOW_LIMIT, present)
            .await
            .is_err()
        {
            out.not_followed += 1;
        }
        out.added.push(t.elapsed().as_secs_f64() * 1000.0);
        let path = format!("/api/v1/devices/{name}/revoke");
        until_status(
            &mut client,
            token,
            Method::POST,
            &path,
            None,
            StatusCode::NO_CONTENT,
            &mut out.refused,
        )
        .await?;
        // From the answer on: the promise is "gone within a second of the revocation".
        let t = Instant::now();
        let absent = |p: &[String]| !p.contains(&hex_key);
        if until_peers(&plan.uapi_socket, FOLLOW_LIMIT, absent)
            .await
            .is_err()
        {
            out.not_followed += 1;
        }
        out.removed.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(out)
}

/// Sends the `n`th request of client `id`, of kind `op`; `None` when there is nothing to
/// send (a revocation with no enrollment of its own left).
async fn send(
    client: &mut Client,
    plan: &Plan,
    op: Op,
    id: usize,
    n: usize,
    mine: &mut Vec<String>,
) -> Option<Result<Answer>> {
    let k = (id * 7 + n) % plan.devices;
    let (admin, read) = (plan.admin_token.as_str(), plan.read_token.as_str());
    Some(match op {
        Op::ReadDevice => {
            let path = format!("/api/v1/devices/bench-{k}");
            client.json(Method::GET, &path, read, None).await
        }
        Op::SearchDevices => {
            let path = format!("/api/v1/devices?search=bench-{}&limit=50", k % 10);
            client.json(Method::GET, &path, read, None).await
        }
        Op::PanelList => {
            client
                .send(Method::GET, "/devices?q=bench", None, None)
                .await
        }
        Op::PanelDevice => {
            let path = format!("/devices/bench-{k}");
            client.send(Method::GET, &path, None, None).await
        }
        Op::Enroll => {
            let name = format!("c{id}-{n}");
            let body = json!({ "name": name });
            let a = client
                .json(Method::POST, "/api/v1/devices", admin, Some(body))
                .await;
            if a.as_ref().is_ok_and(|a| a.status == StatusCode::CREATED) {
                mine.push(name);
            }
            a
        }
        Op::Rotate => {
            let path = format!("/api/v1/devices/bench-{k}/rotate");
            client.json(Method::POST, &path, admin, None).await
        }
        Op::Patch => {
            let path = format!("/api/v1/devices/bench-{k}");
            let body = json!({ "expires_at": 4_000_000_000u64 + n as u64 });
            client.json(Method::PATCH, &path, admin, Some(body)).await
        }
        Op::Revoke => {
            let name = mine.pop()?;
            let path = format!("/api/v1/devices/{name}/revoke");
            client.json(Method::POST, &path, admin, None).await
        }
    })
}

/// One client's loop until `stop`.
async fn client_loop(
    plan: Arc<Plan>,
    id: usize,
    cookies: BTreeMap<String, String>,
    stop: Instant,
    tallies: Arc<Mutex<BTreeMap<Op, Tally>>>,
) -> Result<()> {
    let mut client = Client::new(plan.api);
    client.cookies = cookies;
    let mut mine: Vec<String> = Vec::new();
    let mut n = 0usize;
    let mut local: BTreeMap<Op, Tally> = BTreeMap::new();
    while Instant::now() < stop {
        let op = MIX[(id + n) % MIX.len()];
        n += 1;
        let t = Instant::now();
        let Some(answer) = send(&mut client, &plan, op, id, n, &mut mine).await else {
            continue;
        };
        local
            .entry(op)
            .or_default()
            .record(t.elapsed(), answer.ok().map(|a| a.status));
    }
    let mut all = tallies.lock().await;
    for (op, t) in local {
        let e = all.entry(op).or_default();
        e.latencies_ms.extend(t.latencies_ms);
        e.errors += t.errors;
        for (s, c) in t.statuses {
            *e.statuses.entry(s).or_default() += c;
        }
    }
    Ok(())
}

/// Runs the plan and returns the report as JSON.
pub async fn run(plan: Plan) -> Result<Value> {
    let plan = Arc::new(plan);
    // The devices the clients read and rotate.
    let mut setup = Client::new(plan.api);
    for k in 0..plan.devices {
        let a = setup
            .json(
                Method::POST,
                "/api/v1/devices",
                &plan.admin_token,
                Some(json!({"name": format!("bench-{k}")})),
            )
            .await?;
        if a.status != StatusCode::CREATED && a.status != StatusCode::CONFLICT {
            bail!("enrolling bench-{k} failed: {}", a.status);
        }
    }
    // A few panel sessions shared by the clients: the panel rate-limits password checks.
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let mut c = Client::new(plan.api);
        c.login(&plan.panel_user, &plan.panel_password).await?;
        sessions.push(c.cookies);
    }
    let stop = Instant::now() + plan.duration;
    let tallies = Arc::new(Mutex::new(BTreeMap::new()));
    let prober = tokio::spawn(probe(plan.clone(), stop));
    let mut clients = tokio::task::JoinSet::new();
    for id in 0..plan.clients {
        clients.spawn(client_loop(
            plan.clone(),
            id,
            sessions[id % sessions.len()].clone(),
            stop,
            tallies.clone(),
        ));
    }
    while let Some(done) = clients.join_next().await {
        done??;
    }
    let mut probes = prober.await??;
    let tallies = Arc::try_unwrap(tallies)
        .map_err(|_| anyhow::anyhow!("a client is still running"))?
        .into_inner();
    let mut all: Vec<f64> = Vec::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut errors = 0;
    let mut per_op = serde_json::Map::new();
    for (op, mut t) in tallies {
        all.extend(&t.latencies_ms);
        errors += t.errors;
        for (s, c) in &t.statuses {
            *statuses.entry(*s).or_default() += c;
        }
        let mut s = summary(&mut t.latencies_ms);
        s["statuses"] = json!(t.statuses);
        s["errors"] = json!(t.errors);
        per_op.insert(format!("{op:?}"), s);
    }
    let seconds = plan.duration.as_secs_f64();
    Ok(json!({
        "clients": plan.clients,
        "seconds": seconds,
        "requests_per_second": all.len() as f64 / seconds,
        "all": summary(&mut all),
        "statuses": statuses,
        "transport_errors": errors,
        "by_request": per_op,
        "enrolled_to_peer": summary(&mut probes.added),
        "revoked_to_gone": summary(&mut probes.removed),
        "prober_refused": probes.refused,
        "prober_not_followed_within_120s": probes.not_followed,
    }))
}
