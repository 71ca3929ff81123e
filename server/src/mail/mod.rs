//! Outgoing mail: what each message says (text and HTML parts from one template pair,
//! with the hosted pages' branding), and how it leaves (the [`Mailer`] seam: an SMTP
//! relay through lettre, or files in a directory for development).
//!
//! Nothing here queues or retries: a message is composed when the change that needs it
//! commits (into the outbox, with that change) and handed to a [`Mailer`] by the
//! delivery loop in `domain::mail`. A composed message holds a link that grants
//! something, so it never reaches a log: its `Debug` shows the recipient and subject.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use askama::Template;
use lettre::message::{Mailbox, MultiPart, header};
use serde::{Deserialize, Serialize};

use crate::config::{Mail as MailConfig, MailTransport, SmtpTls};

/// A message as composed: whom it is for and both of its parts.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Composed {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for Composed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composed").field("to", &self.to).field("subject", &self.subject).finish_non_exhaustive()
    }
}

/// Why a message was not handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// The relay refused it for good (5xx: no such mailbox, a malformed address): it is
    /// not retried.
    pub permanent: bool,
    /// What happened, for the audit and the log; never the message.
    pub reason: String,
}

impl SendError {
    fn transient(reason: impl Into<String>) -> Self {
        Self { permanent: false, reason: reason.into() }
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// Hands one message over for delivery. An `Ok` means the relay took it (or the file
/// was written): from there, delivery is the relay's.
pub trait Mailer: Send + Sync {
    fn send<'a>(&'a self, message: &'a lettre::Message) -> SendFuture<'a>;
}

/// The mailer `config` names. Reading the SMTP password file happens here, at start-up,
/// so a missing file stops the server instead of every message.
pub fn mailer(config: &MailConfig) -> Result<Box<dyn Mailer>, String> {
    let hello_name = config.host.as_str();
    match &config.transport {
        MailTransport::File { dir } => Ok(Box::new(FileMailer::new(dir.clone())?)),
        MailTransport::Smtp { host, port, tls, username, password_file } => {
            use lettre::transport::smtp::authentication::Credentials;
            use lettre::transport::smtp::extension::ClientId;
            use lettre::{AsyncSmtpTransport, Tokio1Executor};
            let builder = match tls {
                SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
                SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
                SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())),
            }
            .map_err(|e| format!("mail.smtp_url: {e}"))?;
            let mut builder = builder.port(*port).timeout(Some(config.timeout)).hello_name(
                match hello_name.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V4(ip)) => ClientId::Ipv4(ip),
                    Ok(std::net::IpAddr::V6(ip)) => ClientId::Ipv6(ip),
                    Err(_) => ClientId::Domain(hello_name.to_string()),
                },
            );
            if let (Some(user), Some(file)) = (username, password_file) {
                let password =
                    std::fs::read_to_string(file).map_err(|e| format!("mail.password_file {}: {e}", file.display()))?;
                builder = builder.credentials(Credentials::new(user.clone(), password.trim_end().to_string()));
            }
            Ok(Box::new(SmtpMailer { transport: builder.build(), timeout: config.timeout }))
        }
    }
}

struct SmtpMailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    timeout: Duration,
}

impl Mailer for SmtpMailer {
    fn send<'a>(&'a self, message: &'a lettre::Message) -> SendFuture<'a> {
        use lettre::AsyncTransport;
        Box::pin(async move {
            // The transport's own timeout bounds each command; this bounds the whole
            // conversation, so one slow relay never holds the loop for long.
            let sent = tokio::time::timeout(self.timeout * 3, self.transport.send(message.clone())).await;
            match sent {
                Err(_) => Err(SendError::transient(format!("no answer within {} s", (self.timeout * 3).as_secs()))),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => {
                    let code = e.status().map(|c| format!(" (SMTP {c})")).unwrap_or_default();
                    let reason = if e.is_permanent() {
                        format!("the relay refused it{code}")
                    } else if e.is_transient() {
                        format!("the relay deferred it{code}")
                    } else if e.is_timeout() {
                        "the relay timed out".to_string()
                    } else if e.is_tls() {
                        "TLS with the relay failed".to_string()
                    } else {
                        "could not talk to the relay".to_string()
                    };
                    Err(SendError { permanent: e.is_permanent(), reason })
                }
            }
        })
    }
}

/// Development only (allowed with a loopback `public_url`): each message is a file
/// `<message id>.eml` in `dir`, readable by this user only, never written to the log.
struct FileMailer {
    dir: PathBuf,
}

impl FileMailer {
    fn new(dir: PathBuf) -> Result<Self, String> {
        crate::security::create_private_dir(&dir).map_err(|e| format!("mail.dir {}: {e}", dir.display()))?;
        Ok(Self { dir })
    }
}

impl Mailer for FileMailer {
    fn send<'a>(&'a self, message: &'a lettre::Message) -> SendFuture<'a> {
        Box::pin(async move {
            let id = message
                .headers()
                .get_raw("Message-ID")
                .map(|id| id.trim_matches(['<', '>']).replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"))
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let path = self.dir.join(format!("{id}.eml"));
            let bytes = message.formatted();
            tokio::task::spawn_blocking(move || write_private(&path, &bytes))
                .await
                .map_err(|_| SendError::transient("the writer task failed"))?
                .map_err(|e| SendError::transient(format!("could not write the file: {}", e.kind())))
        })
    }
}

/// Writes `bytes` to `path` created with mode 0600 (replacing an earlier attempt's).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The message `composed` becomes, from `from`, with the Message-ID `<{id}@{host}>`:
/// the same on every attempt, so a message delivered twice (at least once, after a
/// crash between the relay's answer and our record of it) is recognisably one.
pub fn message(from: &Mailbox, host: &str, id: &str, composed: &Composed) -> Result<lettre::Message, SendError> {
    let permanent = |reason: String| SendError { permanent: true, reason };
    let to: Mailbox = composed.to.parse().map_err(|_| permanent("the recipient's address is not valid".into()))?;
    lettre::Message::builder()
        .from(from.clone())
        .to(to)
        .subject(composed.subject.clone())
        .message_id(Some(format!("<{id}@{host}>")))
        .header(header::MIME_VERSION_1_0)
        .multipart(MultiPart::alternative_plain_html(composed.text.clone(), composed.html.clone()))
        .map_err(|e| permanent(format!("the message could not be built: {e}")))
}

/// What every message shows of the operator's brand.
#[derive(Debug, Clone)]
pub struct Brand {
    pub product_name: String,
    pub logo_url: Option<String>,
}

/// One message's words: a greeting, paragraphs, an optional button (the link), and a
/// closing note. Both parts render from it, so they never say different things.
struct Body<'a> {
    brand: &'a Brand,
    greeting: String,
    paragraphs: Vec<String>,
    action: Option<(&'a str, &'a str)>,
    footnote: String,
}

#[derive(Template)]
#[template(path = "body.txt", escape = "none")]
struct TextPart<'a> {
    body: &'a Body<'a>,
}

#[derive(Template)]
#[template(path = "body.html")]
struct HtmlPart<'a> {
    body: &'a Body<'a>,
}

fn compose(to: &str, subject: String, body: &Body<'_>) -> Composed {
    // Rendering cannot fail for these templates (no fallible filters); an error would be
    // a bug, shown as an empty part rather than a panic in the request.
    let text = TextPart { body }.render().unwrap_or_default();
    let html = HtmlPart { body }.render().unwrap_or_default();
    Composed { to: to.to_string(), subject, text, html }
}

/// The password reset link, valid for `minutes`.
pub fn password_reset(brand: &Brand, to: &str, username: &str, link: &str, minutes: u64) -> Composed {
    let body = Body {
        brand,
        greeting: format!("Hello {username},"),
        paragraphs: vec![
            format!("Someone asked to reset the password of your {} account.", brand.product_name),
            format!("To choose a new password, open this link within {minutes} minutes. It works once."),
        ],
        action: Some(("Choose a new password", link)),
        footnote: "If you did not ask for this, ignore this message: your password stays as it is.".into(),
    };
    compose(to, format!("Reset your {} password", brand.product_name), &body)
}

/// The link that proves `to` is the user's address.
pub fn verify_address(brand: &Brand, to: &str, username: &str, link: &str, hours: u64) -> Composed {
    let body = Body {
        brand,
        greeting: format!("Hello {username},"),
        paragraphs: vec![
            format!("Please confirm that {to} is the email address of your {} account.", brand.product_name),
            format!("Open this link within {hours} hours to confirm it."),
        ],
        action: Some(("Confirm this address", link)),
        footnote: "If you did not ask for this, ignore this message: nothing changes.".into(),
    };
    compose(to, format!("Confirm your email address for {}", brand.product_name), &body)
}

/// Tells the address being replaced that a change was asked for.
pub fn address_change_notice(brand: &Brand, to: &str, username: &str, new_address: &str) -> Composed {
    let body = Body {
        brand,
        greeting: format!("Hello {username},"),
        paragraphs: vec![
            format!(
                "Someone asked to change the email address of your {} account from this address to {}.",
                brand.product_name,
                mask(new_address)
            ),
            "The change takes effect only once the new address is confirmed from a link sent to it.".into(),
        ],
        action: None,
        footnote: "If this was not you, sign in and change your password, or tell your administrator.".into(),
    };
    compose(to, format!("Your {} email address is being changed", brand.product_name), &body)
}

/// An address with most of its local part hidden (`a***@example.com`): enough for the
/// owner to recognise it, not enough to hand it to whoever reads the old mailbox.
pub fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brand() -> Brand {
        Brand { product_name: "Acme <ID>".into(), logo_url: None }
    }

    #[test]
    fn both_parts_carry_the_link_and_the_html_part_escapes() {
        let link = "https://id.example.com/ui/password-reset?token=lk_pr_abc&x=1";
        let mail = password_reset(&brand(), "ada@example.com", "ada<script>", link, 30);
        assert_eq!(mail.subject, "Reset your Acme <ID> password");
        assert!(mail.text.contains(link), "{}", mail.text);
        assert!(mail.text.contains("Hello ada<script>,"), "the text part is not HTML: {}", mail.text);
        assert!(
            mail.html.contains("https://id.example.com/ui/password-reset?token=lk_pr_abc&#38;x=1"),
            "{}",
            mail.html
        );
        assert!(mail.html.contains("ada&#60;script&#62;"), "{}", mail.html);
        assert!(!mail.html.contains("<script>"));
        assert!(!format!("{mail:?}").contains("lk_pr_abc"), "Debug never shows the link");
    }

    #[test]
    fn a_message_has_a_stable_id_and_both_parts() {
        let from: Mailbox = "Latchkey <no-reply@example.com>".parse().unwrap();
        let mail = verify_address(&brand(), "ada@example.com", "ada", "https://id.example.com/v?t=1", 24);
        let message = message(&from, "id.example.com", "0f5c", &mail).unwrap();
        assert_eq!(message.headers().get_raw("Message-ID"), Some("<0f5c@id.example.com>"));
        let wire = String::from_utf8(message.formatted()).unwrap();
        assert!(wire.contains("multipart/alternative"), "{wire}");
        assert!(wire.contains("text/plain") && wire.contains("text/html"), "{wire}");
        let bad = Composed { to: "not an address".into(), ..mail };
        assert!(super::message(&from, "h", "1", &bad).unwrap_err().permanent);
    }

    #[test]
    fn the_notice_masks_the_new_address() {
        assert_eq!(mask("grace@example.org"), "g***@example.org");
        let mail = address_change_notice(&brand(), "old@example.com", "ada", "grace@example.org");
        assert!(mail.text.contains("g***@example.org") && !mail.text.contains("grace@"), "{}", mail.text);
    }
}
