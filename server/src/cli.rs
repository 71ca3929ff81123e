//! The `latchkey` command line: `serve` (default), `migrate`, `user create`,
//! `client create`, `keys list|rotate|import|revoke`, `audit verify` and `openapi`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::clock::{SystemClock, to_datetime};
use crate::config::Config;
use crate::domain::clients::NewClient;
use crate::domain::users::NewAccount;
use crate::security::Secret;
use crate::{StartupError, build_state, domain, open_database, store};

/// Prints a line to stdout; a reader that stops early (`latchkey … | head`) ends the
/// output quietly instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Debug, Parser)]
#[command(name = "latchkey", version, about = "Latchkey OAuth 2.0 token server")]
pub struct Cli {
    /// TOML configuration file (settings can also come from LATCHKEY_* variables).
    #[arg(long, short, env = "LATCHKEY_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply pending database migrations (or roll them all back with --down).
    Migrate {
        /// Roll back every migration (destroys all data).
        #[arg(long)]
        down: bool,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Inspect signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from a prompt, or from standard input when
    /// it is not a terminal; never from the command line.
    Create {
        #[arg(long)]
        username: String,
        /// Extra role (repeatable); every user also has `user`.
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// List users (id and username), or with --confusables only the groups of accounts
    /// whose names look alike.
    List {
        #[arg(long)]
        confusables: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client; a confidential client's secret is printed once.
    Create(ClientCreateArgs),
}

#[derive(Debug, Args)]
pub struct ClientCreateArgs {
    #[arg(long)]
    client_id: String,
    #[arg(long)]
    name: Option<String>,
    /// Confidential client (gets a secret); otherwise public.
    #[arg(long)]
    confidential: bool,
    /// Allowed grant type (repeatable): authorization_code, client_credentials, password,
    /// refresh_token.
    #[arg(long = "grant", required = true)]
    grants: Vec<String>,
    /// Allowed scope (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Role carried by client_credentials tokens (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Audience of this client's tokens (defaults to the server's for a first-party
    /// client, the client id for any other).
    #[arg(long)]
    audience: Option<String>,
    /// Where the code flow may send the user back to (repeatable; exact strings).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Where a sign-out may send the user back to (repeatable).
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// A browser origin that may call the token endpoint (repeatable).
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
    /// One of ours: skips consent, may carry Latchkey's audience and every role.
    #[arg(long)]
    first_party: bool,
    /// How it authenticates at the token endpoint: none (public), client_secret_basic or
    /// client_secret_post (confidential; by default either).
    #[arg(long = "auth-method")]
    token_endpoint_auth_method: Option<String>,
    /// Where a logout token is POSTed when a session of its user ends (OpenID Connect
    /// Back-Channel Logout).
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    /// Every logout token it gets must carry `sid`.
    #[arg(long)]
    backchannel_logout_session_required: bool,
    /// Refuse its token requests without a DPoP proof (RFC 9449), so its tokens are
    /// always bound to its key.
    #[arg(long = "dpop-bound")]
    dpop_bound_access_tokens: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys with their state.
    List,
    /// Start a rotation: a new key, published now, signing after the JWKS cache lifetime.
    Rotate,
    /// Bring your own RSA private key (PEM, PKCS#8 or PKCS#1) in as a pending key.
    Import {
        /// The PEM file.
        file: PathBuf,
    },
    /// Emergency: withdraw a compromised key from the JWKS at once.
    Revoke { kid: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit log's hash chain from its anchor to its head and report the first
    /// broken link (exit status 3), or print the head to record elsewhere (exit status 0).
    Verify {
        /// A point recorded earlier (`SEQ:HASH`, as printed here or by
        /// `GET /admin/audit/chain`) that the chain must still hold (repeatable).
        #[arg(long = "known", value_parser = parse_chain_point)]
        known: Vec<store::audit::ChainPoint>,
    },
}

fn parse_chain_point(text: &str) -> Result<store::audit::ChainPoint, String> {
    let (seq, hash) = text.split_once(':').ok_or("expected SEQ:HASH")?;
    let seq = seq.parse().map_err(|_| format!("{seq:?} is not a place in the chain"))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err("the hash is 64 lowercase hex digits".into());
    }
    Ok(store::audit::ChainPoint { seq, hash: hash.to_string() })
}

/// Exit status of `latchkey audit verify` when the chain is broken.
const CHAIN_BROKEN: u8 = 3;

async fn verify_audit(config: Config, known: Vec<store::audit::ChainPoint>) -> Result<ExitCode, StartupError> {
    let db = open_database(&config).await?;
    match domain::audit::verify(&db, &known).await.map_err(StartupError::Startup)? {
        Ok(verified) => {
            let ends = &verified.ends;
            out!(
                "audit chain intact: {} event(s), places {}..={}; {} recorded point(s) matched",
                verified.events,
                ends.anchor.seq + 1,
                ends.head.seq,
                verified.known_matched
            );
            if verified.known_purged > 0 {
                out!(
                    "{} recorded point(s) lie before the anchor (purged since) and were not checked",
                    verified.known_purged
                );
            }
            if verified.awaiting_link > 0 {
                out!("{} event(s) written in the last moments await their link", verified.awaiting_link);
            }
            out!("head {}:{}", ends.head.seq, ends.head.hash);
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            out!("audit chain broken: {broken}");
            Ok(ExitCode::from(CHAIN_BROKEN))
        }
    }
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    if let Some(Command::Openapi) = cli.command {
        let _ = std::io::stdout().write_all(crate::api::spec_json().as_bytes());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => return fail(&StartupError::Config(e)),
    };
    init_tracing(&config);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate { down } => migrate(config, down).await,
        Command::User(UserCommand::Create { username, roles, email }) => {
            create_user(config, username, roles, email).await
        }
        Command::User(UserCommand::List { confusables }) => list_users(config, confusables).await,
        Command::Client(ClientCommand::Create(args)) => create_client(config, args).await,
        Command::Keys(KeysCommand::List) => list_keys(config).await,
        Command::Keys(KeysCommand::Rotate) => keys_change(config, KeyChange::Rotate).await,
        Command::Keys(KeysCommand::Import { file }) => import_key(config, &file).await,
        Command::Keys(KeysCommand::Revoke { kid }) => keys_change(config, KeyChange::Revoke(kid)).await,
        Command::Audit(AuditCommand::Verify { known }) => verify_audit(config, known).await,
        Command::Openapi => Ok(ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| fail(&e))
}

fn fail(error: &StartupError) -> ExitCode {
    eprintln!("latchkey: {error}");
    ExitCode::from(error.exit_code())
}

/// Human-readable logs by default, JSON with `log_format = "json"`; `RUST_LOG` filters.
fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if config.log_json { builder.json().try_init() } else { builder.try_init() };
}

async fn list_users(config: Config, confusables: bool) -> Result<ExitCode, StartupError> {
    let state = build_state(config, Arc::new(SystemClock)).await?;
    let mut out = std::io::stdout().lock();
    if confusables {
        let groups = domain::users::confusable_groups(&state).await.map_err(StartupError::Startup)?;
        for group in &groups {
            let names: Vec<String> = group.users.iter().map(|(id, name)| format!("{name} ({id})")).collect();
            let _ = writeln!(out, "{}", names.join("  ~  "));
        }
        let _ = writeln!(out, "{} group(s) of look-alike usernames", groups.len());
    } else {
        for (id, username, _) in
            store::users::all_login_names(&state.db).await.map_err(|e| StartupError::Startup(e.into()))?
        {
            let _ = writeln!(out, "{id}  {username}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> Result<ExitCode, StartupError> {
    let listen = config.listen;
    let state = build_state(config, Arc::new(SystemClock)).await?;
    if !store::users::any_active_with_role(&state.db, "admin").await.unwrap_or(true) {
        tracing::warn!(
            "no admin account exists yet; create one with: latchkey user create --username admin --role admin"
        );
    }
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("latchkey: cannot listen on {listen}: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let grace = state.config.operations.shutdown_grace;
    match crate::serve(listener, state, shutdown_signal(), grace).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("latchkey: server error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}

async fn migrate(mut config: Config, down: bool) -> Result<ExitCode, StartupError> {
    config.run_migrations = false;
    let db = store::connect(&config).await.map_err(StartupError::Database)?;
    if down {
        store::migrate_down_all(&db).await.map_err(StartupError::Migration)?;
        out!("all migrations rolled back");
    } else {
        let pending = store::pending_migrations(&db).await.map_err(StartupError::Database)?;
        store::migrate_up(&db).await.map_err(StartupError::Migration)?;
        out!("applied {pending} migration(s); the database is up to date");
    }
    Ok(ExitCode::SUCCESS)
}

fn read_password() -> std::io::Result<Secret<String>> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            return Err(std::io::Error::other("the passwords do not match"));
        }
        return Ok(Secret::new(first));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(Secret::new(line.trim_end_matches(['\r', '\n']).to_string()))
}

async fn create_user(
    config: Config,
    username: String,
    roles: Vec<String>,
    email: Option<String>,
) -> Result<ExitCode, StartupError> {
    let password = match read_password() {
        Ok(password) => password,
        Err(e) => {
            eprintln!("latchkey: cannot read the password: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let state = build_state(config, Arc::new(SystemClock)).await?;
    let account = NewAccount { username, password, email, roles };
    match domain::users::create(&state, account, &domain::rbac::Grantor::operator("cli"), None).await {
        Ok(user) => {
            out!("created user {} ({}) with roles: {}", user.username, user.id, user.roles.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("latchkey: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn create_client(config: Config, args: ClientCreateArgs) -> Result<ExitCode, StartupError> {
    let state = build_state(config, Arc::new(SystemClock)).await?;
    let new = NewClient {
        name: args.name.unwrap_or_else(|| args.client_id.clone()),
        client_id: args.client_id,
        confidential: args.confidential,
        grant_types: args.grants,
        scopes: args.scopes,
        audience: args.audience,
        roles: args.roles,
        redirect_uris: args.redirect_uris,
        post_logout_redirect_uris: args.post_logout_redirect_uris,
        first_party: args.first_party,
        allowed_origins: args.allowed_origins,
        visible_roles: None,
        token_endpoint_auth_method: args.token_endpoint_auth_method,
        backchannel_logout_uri: args.backchannel_logout_uri,
        backchannel_logout_session_required: args.backchannel_logout_session_required,
        dpop_bound_access_tokens: args.dpop_bound_access_tokens,
    };
    match domain::clients::create(&state, new, &domain::rbac::Grantor::operator("cli")).await {
        Ok((client, secret)) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "created {} client {}", client.row.client_type, client.row.client_id);
            if let Some(secret) = secret {
                let _ = writeln!(out, "client_secret: {}", secret.expose());
                let _ = writeln!(out, "(shown once: store it now; only its hash is kept)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("latchkey: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn list_keys(config: Config) -> Result<ExitCode, StartupError> {
    let db = open_database(&config).await?;
    let keys =
        store::keys::list(&db).await.map_err(|e| StartupError::Database(sea_orm::DbErr::Custom(e.to_string())))?;
    out!("{:<45} {:<8} {:>5}  {:<20}  {:<20}", "KID", "STATE", "BITS", "CREATED", "ACTIVATED");
    for key in keys {
        let fmt =
            |t: Option<i64>| t.map(|t| to_datetime(t).format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
        out!(
            "{:<45} {:<8} {:>5}  {:<20}  {:<20}",
            key.kid,
            key.state,
            key.bits,
            fmt(Some(key.created_at)),
            fmt(key.activated_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

enum KeyChange {
    Rotate,
    Revoke(String),
}

async fn keys_change(config: Config, change: KeyChange) -> Result<ExitCode, StartupError> {
    let state = build_state(config, Arc::new(SystemClock)).await?;
    let result = match &change {
        KeyChange::Rotate => domain::keys::rotate(&state, "cli").await.map(|row| {
            let due = domain::keys::Lifecycle::of(&state.config).activation_due(row.created_at);
            out!("new key {} is published; it starts signing at {}", row.kid, to_datetime(due));
        }),
        KeyChange::Revoke(kid) => domain::keys::revoke(&state, kid, "cli").await.map(|()| {
            out!("key {kid} is revoked and no longer published; tokens it signed stop verifying");
        }),
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("latchkey: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn import_key(config: Config, file: &std::path::Path) -> Result<ExitCode, StartupError> {
    let pem = match std::fs::read_to_string(file) {
        Ok(pem) => zeroize::Zeroizing::new(pem),
        Err(e) => {
            eprintln!("latchkey: cannot read {}: {e}", file.display());
            return Ok(ExitCode::from(2));
        }
    };
    let state = build_state(config, Arc::new(SystemClock)).await?;
    match domain::keys::import_pem(&state.db, &state.master_key, &pem, state.now()).await {
        Ok(row) => {
            let due = domain::keys::Lifecycle::of(&state.config).activation_due(row.created_at);
            out!("imported key {} ({} bits) as pending; it starts signing at {}", row.kid, row.bits, to_datetime(due));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("latchkey: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
