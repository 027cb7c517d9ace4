//! What a storm did: time to a session per device, summarised overall and per group (devices
//! the server had a session with shortly before, and new ones), as JSON or text; the times of
//! every device in a file of their own, so that several generator processes that simulated
//! slices of one storm can be merged (`merge`) into the report one process would have given.

use crate::device::Outcome;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Duration;

/// One device's result, as the times file holds it.
#[derive(Clone, Copy)]
pub struct DeviceResult {
    /// Its number in the seed's list.
    pub number: u32,
    /// It connected before the storm (`--known-devices`).
    pub known: bool,
    pub outcome: Outcome,
}

/// The summary of a set of devices.
#[derive(Default)]
pub struct Group {
    pub devices: u32,
    /// Sorted times to a session.
    times: Vec<Duration>,
    pub cookies: u64,
    pub retries: u64,
    /// Devices that stopped trying as the clients do (after 20 initiations).
    pub gave_up: u32,
}

impl Group {
    fn of<'a>(results: impl Iterator<Item = &'a DeviceResult>) -> Group {
        let mut g = Group::default();
        for r in results {
            g.devices += 1;
            g.cookies += u64::from(r.outcome.cookies);
            g.retries += u64::from(r.outcome.retries);
            g.gave_up += u32::from(r.outcome.gave_up);
            g.times.extend(r.outcome.session_after);
        }
        g.times.sort();
        g
    }

    pub fn with_session(&self) -> u32 {
        self.times.len() as u32
    }

    pub fn failed(&self) -> u32 {
        self.devices - self.with_session()
    }

    /// The time by which a share `p` of the devices that got a session had it (nearest rank);
    /// 1.0 is the last of them.
    fn percentile(&self, p: f64) -> Option<Duration> {
        (!self.times.is_empty())
            .then(|| self.times[((self.times.len() - 1) as f64 * p).round() as usize])
    }

    fn to_json(&self) -> Value {
        json!({
            "devices": self.devices,
            "with_session": self.with_session(),
            "failed": self.failed(),
            "p50_s": secs(self.percentile(0.5)),
            "p90_s": secs(self.percentile(0.9)),
            "p100_s": secs(self.percentile(1.0)),
            "cookie_replies": self.cookies,
            "retries": self.retries,
            "gave_up": self.gave_up,
        })
    }

    fn to_text(&self, name: &str) -> String {
        format!(
            "{name} {}: {} with a session, {} failed; p50 {}, p90 {}, last {}; \
             cookie replies {}, retries {}\n",
            self.devices,
            self.with_session(),
            self.failed(),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.9)),
            ms(self.percentile(1.0)),
            self.cookies,
            self.retries,
        )
    }
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    })
}

/// The known devices' connection before the storm.
#[derive(Default, Clone, Copy)]
pub struct Warmup {
    pub devices: u32,
    pub with_session: u32,
    pub cookies: u64,
    pub retries: u64,
    pub seconds: f64,
}

impl Warmup {
    pub fn of(results: &[Outcome], seconds: f64) -> Warmup {
        Warmup {
            devices: results.len() as u32,
            with_session: results.iter().filter(|o| o.session_after.is_some()).count() as u32,
            cookies: results.iter().map(|o| u64::from(o.cookies)).sum(),
            retries: results.iter().map(|o| u64::from(o.retries)).sum(),
            seconds,
        }
    }
}

/// Everything a storm reports.
pub struct Report {
    pub model: &'static str,
    pub all: Group,
    pub known: Group,
    pub new: Group,
    /// Time spent making sockets, tunnels and first initiations before the start (the
    /// known devices' warm-up not included); the slowest process's when merged.
    pub prepare: Duration,
    /// Junk initiations sent, and refused by the generator's own sockets.
    pub flood: Option<(u64, u64)>,
    pub warmup: Option<Warmup>,
    /// Generator processes that simulated the storm.
    pub processes: u32,
}

impl Report {
    pub fn new(model: &'static str, results: &[DeviceResult]) -> Report {
        Report {
            model,
            all: Group::of(results.iter()),
            known: Group::of(results.iter().filter(|r| r.known)),
            new: Group::of(results.iter().filter(|r| !r.known)),
            prepare: Duration::ZERO,
            flood: None,
            warmup: None,
            processes: 1,
        }
    }

    pub fn to_json(&self) -> String {
        let a = &self.all;
        let mut v = a.to_json();
        let mut set = |key: &str, value: Value| v[key] = value;
        set("model", json!(self.model));
        set("processes", json!(self.processes));
        let all_within = (a.failed() == 0).then(|| a.percentile(1.0)).flatten();
        set("all_within_s", json!(secs(all_within)));
        set("p99_s", json!(secs(a.percentile(0.99))));
        set("prepare_s", json!(self.prepare.as_secs_f64()));
        set("flood_sent", json!(self.flood.map(|f| f.0)));
        set("flood_refused_locally", json!(self.flood.map(|f| f.1)));
        set("known", self.known.to_json());
        set("new", self.new.to_json());
        set("warmup", Value::Null);
        if let Some(w) = self.warmup {
            v["warmup"] = json!({
                "devices": w.devices,
                "with_session": w.with_session,
                "cookie_replies": w.cookies,
                "retries": w.retries,
                "seconds": w.seconds,
            });
        }
        v.to_string()
    }

    pub fn to_text(&self) -> String {
        let a = &self.all;
        let mut t = format!(
            "devices {} ({} clients): {} with a session, {} failed\n\
             time to a session: p50 {}, p90 {}, p99 {}, last {}\n\
             cookie replies {}, retries {} (initiations prepared in {:.1} s before the start)\n",
            a.devices,
            self.model,
            a.with_session(),
            a.failed(),
            ms(a.percentile(0.5)),
            ms(a.percentile(0.9)),
            ms(a.percentile(0.99)),
            ms(a.percentile(1.0)),
            a.cookies,
            a.retries,
            self.prepare.as_secs_f64(),
        );
        if let Some(w) = self.warmup {
            t += &self.known.to_text("known devices");
            t += &self.new.to_text("new devices");
            let _ = writeln!(
                t,
                "before the storm, {} of {} known devices connected in {:.1} s \
                 (cookie replies {}, retries {})",
                w.with_session, w.devices, w.seconds, w.cookies, w.retries
            );
        }
        if let Some((sent, refused)) = self.flood {
            let _ = writeln!(t, "flood: {sent} sent, {refused} refused locally");
        }
        t
    }
}

/// The header of a times file.
const TIMES_HEADER: &str = "device\tgroup\tsession_us\tcookies\tretries\tgave_up";

/// Writes every device's result to `path`, one line each (tab-separated; the time to a session in
/// microseconds, `-` for none).
pub fn write_times(path: &std::path::Path, results: &[DeviceResult]) -> Result<()> {
    let mut s = format!("{TIMES_HEADER}\n");
    for r in results {
        let o = &r.outcome;
        let _ = writeln!(
            s,
            "{}\t{}\t{}\t{}\t{}\t{}",
            r.number,
            if r.known { "known" } else { "new" },
            o.session_after
                .map_or("-".to_string(), |d| d.as_micros().to_string()),
            o.cookies,
            o.retries,
            u8::from(o.gave_up),
        );
    }
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}

/// Reads a times file written by [`write_times`].
fn read_times(path: &std::path::Path) -> Result<Vec<DeviceResult>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    if lines.next() != Some(TIMES_HEADER) {
        bail!("{} is not a times file of heimweg-loadgen", path.display());
    }
    lines
        .enumerate()
        .map(|(n, line)| {
            parse_times_line(line)
                .with_context(|| format!("{} line {}: {line:?}", path.display(), n + 2))
        })
        .collect()
}

fn parse_times_line(line: &str) -> Result<DeviceResult> {
    let f: Vec<&str> = line.split('\t').collect();
    let [number, group, session, cookies, retries, gave_up] = f[..] else {
        bail!("expected 6 fields");
    };
    Ok(DeviceResult {
        number: number.parse()?,
        known: match group {
            "known" => true,
            "new" => false,
            _ => bail!("unknown group"),
        },
        outcome: Outcome {
            session_after: match session {
                "-" => None,
                us => Some(Duration::from_micros(us.parse()?)),
            },
            cookies: cookies.parse()?,
            retries: retries.parse()?,
            gave_up: gave_up == "1",
        },
    })
}

/// The report of one storm simulated by several processes: percentiles over every device of
/// `times` (the processes' times files), the rest summed (the flood, the warm-up) or the
/// largest (preparation, warm-up time) from `reports` (their JSON reports).
pub fn merge(reports: &[std::path::PathBuf], times: &[std::path::PathBuf]) -> Result<Report> {
    let mut results = Vec::new();
    for path in times {
        results.extend(read_times(path)?);
    }
    let parts = reports
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)?;
            serde_json::from_str::<Value>(&text)
                .with_context(|| format!("{} is not JSON", p.display()))
        })
        .collect::<Result<Vec<Value>>>()?;
    let model = match parts.first().and_then(|v| v["model"].as_str()) {
        Some("resend-on-cookie") => "resend-on-cookie",
        _ => "stock",
    };
    let mut report = Report::new(model, &results);
    report.processes = parts.len() as u32;
    let f64_of = |v: &Value| v.as_f64().unwrap_or(0.0);
    let u64_of = |v: &Value| v.as_u64().unwrap_or(0);
    let max_of = |key: &str| parts.iter().map(|v| f64_of(&v[key])).fold(0.0, f64::max);
    report.prepare = Duration::from_secs_f64(max_of("prepare_s"));
    if parts.iter().any(|v| !v["flood_sent"].is_null()) {
        let sum = |key: &str| parts.iter().map(|v| u64_of(&v[key])).sum();
        report.flood = Some((sum("flood_sent"), sum("flood_refused_locally")));
    }
    let warmups: Vec<&Value> = parts
        .iter()
        .map(|v| &v["warmup"])
        .filter(|w| !w.is_null())
        .collect();
    if !warmups.is_empty() {
        let sum = |key: &str| warmups.iter().map(|w| u64_of(&w[key])).sum::<u64>();
        report.warmup = Some(Warmup {
            devices: sum("devices") as u32,
            with_session: sum("with_session") as u32,
            cookies: sum("cookie_replies"),
            retries: sum("retries"),
            seconds: warmups
                .iter()
                .map(|w| f64_of(&w["seconds"]))
                .fold(0.0, f64::max),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(number: u32, known: bool, session_ms: Option<u64>) -> DeviceResult {
        DeviceResult {
            number,
            known,
            outcome: Outcome {
                session_after: session_ms.map(Duration::from_millis),
                retries: u32::from(session_ms.is_none()),
                cookies: 1,
                gave_up: false,
            },
        }
    }

    #[test]
    fn groups_count_known_and_new_devices_apart_and_together() {
        let results: Vec<DeviceResult> = (0..10)
            .map(|i| result(i, i < 4, (i != 9).then_some(u64::from(i) * 100)))
            .collect();
        let r = Report::new("stock", &results);
        assert_eq!(
            (r.all.devices, r.all.with_session(), r.all.failed()),
            (10, 9, 1)
        );
        assert_eq!((r.known.devices, r.known.failed()), (4, 0));
        assert_eq!((r.new.devices, r.new.failed(), r.new.retries), (6, 1, 1));
        assert_eq!(r.all.percentile(1.0), Some(Duration::from_millis(800)));
        assert_eq!(r.known.percentile(1.0), Some(Duration::from_millis(300)));
        assert_eq!(r.new.percentile(0.5), Some(Duration::from_millis(600)));
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["p100_s"], json!(0.8));
        assert_eq!(v["all_within_s"], Value::Null);
        assert_eq!(v["known"]["devices"], json!(4));
    }

    #[test]
    fn merging_slices_gives_the_percentiles_of_the_whole_storm() {
        let dir = std::env::temp_dir().join(format!("loadgen-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let all: Vec<DeviceResult> = (0..100)
            .map(|i| result(i, i < 30, Some(u64::from(i * 37 % 100) * 10)))
            .collect();
        let (mut reports, mut times) = (Vec::new(), Vec::new());
        for (k, slice) in all.chunks(60).enumerate() {
            let mut part = Report::new("stock", slice);
            part.flood = Some((1000, 1));
            part.prepare = Duration::from_millis(100 * k as u64 + 100);
            reports.push(dir.join(format!("r{k}")));
            times.push(dir.join(format!("t{k}")));
            std::fs::write(&reports[k], part.to_json()).unwrap();
            write_times(&times[k], slice).unwrap();
        }
        let merged = merge(&reports, &times).unwrap();
        let whole = Report::new("stock", &all);
        for p in [0.5, 0.9, 1.0] {
            assert_eq!(merged.all.percentile(p), whole.all.percentile(p));
            assert_eq!(merged.known.percentile(p), whole.known.percentile(p));
        }
        assert_eq!(merged.flood, Some((2000, 2)));
        assert_eq!(merged.prepare, Duration::from_millis(200));
        assert_eq!(merged.processes, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
