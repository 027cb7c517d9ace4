//! A people list of 5,000 rows as Excel writes it in Germany (byte-order mark, semicolons,
//! CRLF, umlauts, an empty row every 250, a repeated device every 100 and a broken address
//! every 500), imported through the service on SQLite and, when `HEIMWEG_TEST_POSTGRES` names
//! a server, PostgreSQL: the parse alone, the check (dry run), the import, and the same file
//! again. During the import a revocation every 20 ms measures how long a writer waits behind
//! the import's batches (each batch holds the one write lock). Five runs on fresh databases;
//! medians and the slowest revocation. Prints a Markdown table for BENCHMARKS.md.
//! Run: `cargo bench --bench import`.

use heimweg_control::import::parse_people;
use heimweg_control::{LinkHours, Name, PrivateKey};
use heimweg_service::{Backend, Caller, EnrollRequest, ImportOptions, Service};
use heimweg_store::testing::Scratch;
use std::time::{Duration, Instant};

const ROWS: usize = 5_000;
const RUNS: usize = 5;

fn list() -> String {
    let mut s = String::from("\u{feff}Benutzer;E-Mail;Gruppe;Gerät\r\n");
    for i in 0..ROWS {
        if i % 250 == 0 {
            s.push_str(";;;\r\n");
        }
        let email = if i % 500 == 7 {
            "kein-mail".to_string()
        } else {
            format!("m.müller{i}@stadt.example")
        };
        let device = if i % 100 == 99 { i - 1 } else { i };
        s.push_str(&format!(
            "Jürgen Weiß-Müller {i};{email};default;Dienst-iPad Büro {device}\r\n"
        ));
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn service(db: &Scratch) -> Service {
    let service = Service::connect(db.url())
        .await
        .unwrap()
        .with_gateway_key(PrivateKey::generate().public_key());
    service.init_defaults([1, 2, 3, 4, 5]).await.unwrap();
    service
        .set_endpoint(&Caller::system(), "vpn.example:51820".parse().unwrap())
        .await
        .unwrap();
    service
}

fn options(dry_run: bool) -> ImportOptions {
    ImportOptions {
        dry_run,
        link_hours: LinkHours::new(168).unwrap(),
        mail: false,
    }
}

/// Revokes one enrolled device every 20 ms until `stop`, returning each revocation's time.
async fn revoking(service: Service, stop: tokio::sync::watch::Receiver<bool>) -> Vec<Duration> {
    let admin = Caller::system();
    let mut times = Vec::new();
    let mut i = 0;
    while !*stop.borrow() {
        let name = Name::new(&format!("revoke-me-{i}")).unwrap();
        let start = Instant::now();
        service.revoke(&admin, &name).await.unwrap();
        times.push(start.elapsed());
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    times
}

async fn run(backend: Backend, file: &[u8]) -> Option<[Duration; 5]> {
    let (mut check, mut import, mut again, mut worst) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let db = Scratch::new(backend, "bench_import").await?;
        let service = service(&db).await;
        let admin = Caller::system();
        for i in 0..2_000 {
            let req = EnrollRequest {
                name: Name::new(&format!("revoke-me-{i}")).unwrap(),
                group: Name::new("default").unwrap(),
                owner: None,
                public_key: None,
                expires_in: None,
            };
            service.enroll(&admin, req).await.unwrap();
        }
        let start = Instant::now();
        let dry = service
            .import_people(&admin, file, options(true))
            .await
            .unwrap();
        check.push(start.elapsed());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let revoker = tokio::spawn(revoking(service.clone(), rx));
        let start = Instant::now();
        let done = service
            .import_people(&admin, file, options(false))
            .await
            .unwrap();
        import.push(start.elapsed());
        tx.send(true).unwrap();
        let revocations = revoker.await.unwrap();
        worst.push(revocations.into_iter().max().unwrap_or_default());
        assert_eq!(dry.counts(), done.counts());
        let start = Instant::now();
        let re = service
            .import_people(&admin, file, options(false))
            .await
            .unwrap();
        again.push(start.elapsed());
        assert_eq!(re.counts().users_created + re.counts().invited, 0);
    }
    Some([
        Duration::ZERO,
        median(check),
        median(import),
        median(again),
        median(worst),
    ])
}

fn main() {
    let file = list();
    let parsed = parse_people(file.as_bytes()).unwrap();
    println!(
        "{ROWS} rows ({} KB): {} accepted, {} refused",
        file.len() / 1024,
        parsed.rows.len(),
        parsed.refused.len()
    );
    let parse = median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                parse_people(file.as_bytes()).unwrap();
                start.elapsed()
            })
            .collect(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("\n| backend | parse | check (dry run) | import | same file again | slowest revocation during the import |");
    println!("|---|---|---|---|---|---|");
    rt.block_on(async {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            if let Some(t) = run(backend, file.as_bytes()).await {
                println!(
                    "| {backend:?} | {} | {} | {} | {} | {} |",
                    ms(parse),
                    ms(t[1]),
                    ms(t[2]),
                    ms(t[3]),
                    ms(t[4])
                );
            }
        }
    });
}
