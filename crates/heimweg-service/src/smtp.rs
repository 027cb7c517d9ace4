//! One SMTP session at a time, kept open between mails, on a socket with TCP_NODELAY.
//!
//! lettre's pooled transport opens its sockets with Nagle's algorithm on: it writes a message
//! and then the five bytes that end it, and Nagle holds those until the server acknowledges
//! the message, which a delayed ACK does after 40 ms. Every mail then costs 40 ms of waiting
//! (measured here: 45 ms a mail against aiosmtpd, 1.2 ms with Python's smtplib; lettre's own
//! fix, PR #1159, is not released). So the session's socket is made here and handed to
//! lettre's connection, which speaks the protocol. Implicit TLS (port 465) still goes through
//! lettre's own connect, which cannot take a socket made elsewhere.

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::time::{Duration, Instant};

/// The bound on connecting and on each mail: one attempt takes twice this at most.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// A session idle this long is closed and a new one opened: servers drop idle clients after
/// a few minutes, and a mail must not fail on a connection the server already closed.
const IDLE: Duration = Duration::from_secs(20);

/// How a mail server is reached.
pub(crate) enum Transport {
    /// STARTTLS, required.
    StartTls(TlsParameters),
    /// TLS from the first byte.
    Tls(TlsParameters),
    /// Plain text to a relay on this machine.
    Plain,
}

/// What became of one mail.
pub(crate) enum Outcome {
    Sent,
    /// A 5xx to the mail itself (its recipient, its content): never deliverable.
    Refused(String),
    /// A 4xx to the mail itself (a full or greylisting mailbox): later.
    Deferred(String),
    /// The server or the way to it failed, or refused this gateway's login: later, and the
    /// other mails too.
    ServerTrouble(String),
}

pub(crate) struct Client {
    host: String,
    port: u16,
    transport: Transport,
    credentials: Option<Credentials>,
    hello: ClientId,
    session: Option<(AsyncSmtpConnection, Instant)>,
}

impl Client {
    pub(crate) fn new(
        host: String,
        port: u16,
        transport: Transport,
        credentials: Option<Credentials>,
        hello: ClientId,
    ) -> Client {
        Client {
            host,
            port,
            transport,
            credentials,
            hello,
            session: None,
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, String> {
        let addr = (self.host.as_str(), self.port);
        let mut conn = match &self.transport {
            Transport::Tls(tls) => AsyncSmtpConnection::connect_tokio1(
                addr,
                Some(SMTP_TIMEOUT),
                &self.hello,
                Some(tls.clone()),
                None,
            )
            .await
            .map_err(|e| e.to_string())?,
            Transport::StartTls(_) | Transport::Plain => {
                let tcp = tokio::time::timeout(SMTP_TIMEOUT, tokio::net::TcpStream::connect(addr))
                    .await
                    .map_err(|_| format!("connecting to {}:{} timed out", self.host, self.port))?
                    .map_err(|e| format!("connecting to {}:{}: {e}", self.host, self.port))?;
                tcp.set_nodelay(true).map_err(|e| e.to_string())?;
                let mut conn =
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                        .await
                        .map_err(|e| e.to_string())?;
                if let Transport::StartTls(tls) = &self.transport {
                    conn.starttls(tls.clone(), &self.hello)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                conn
            }
        };
        if let Some(c) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], c)
                .await
                .map_err(|e| format!("logging in: {e}"))?;
        }
        Ok(conn)
    }

    /// Sends one mail, opening a session first if there is none (or it idled too long).
    pub(crate) async fn send(&mut self, envelope: &Envelope, message: &[u8]) -> Outcome {
        let reuse = self
            .session
            .take()
            .filter(|(c, last)| last.elapsed() < IDLE && !c.has_broken());
        let mut conn = match reuse {
            Some((c, _)) => c,
            None => match tokio::time::timeout(SMTP_TIMEOUT, self.connect()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Outcome::ServerTrouble(e),
                Err(_) => return Outcome::ServerTrouble("the mail server did not answer".into()),
            },
        };
        let sent = tokio::time::timeout(SMTP_TIMEOUT, conn.send(envelope, message)).await;
        let outcome = match sent {
            Ok(Ok(_)) => Outcome::Sent,
            Ok(Err(e)) => classify(&e),
            Err(_) => Outcome::ServerTrouble("the mail server did not answer in time".into()),
        };
        // A refusal of one mail leaves the session usable; anything else ends it.
        if matches!(
            outcome,
            Outcome::Sent | Outcome::Refused(_) | Outcome::Deferred(_)
        ) && !conn.has_broken()
        {
            self.session = Some((conn, Instant::now()));
        }
        outcome
    }

    /// Ends the session politely, if there is one.
    pub(crate) async fn close(&mut self) {
        if let Some((mut c, _)) = self.session.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.quit()).await;
        }
    }
}

fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    // Codes about the server or this gateway's login, not about the mail: 421 (closing), 454
    // and 530/534/535/538 (authentication, TLS).
    let server = e.status().is_some_and(|c| {
        ["421", "454", "530", "534", "535", "538"].contains(&c.to_string().as_str())
    });
    if server || !(e.is_permanent() || e.is_transient()) {
        Outcome::ServerTrouble(e.to_string())
    } else if e.is_permanent() {
        Outcome::Refused(e.to_string())
    } else {
        Outcome::Deferred(e.to_string())
    }
}
