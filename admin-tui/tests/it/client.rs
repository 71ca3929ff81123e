//! The typed client against the real server, started in-process on 127.0.0.1:0.

use std::sync::Arc;
use std::time::Duration;

use latchkey_admin::api::{ApiClient, ApiError, ErrorCode};
use latchkey_server::clock::ManualClock;
use latchkey_server::config::RawConfig;
use latchkey_server::domain::users::{self, NewAccount};
use latchkey_server::security::Secret;

const PASSWORD: &str = "operator password 1";

struct Server {
    base: String,
    clock: Arc<ManualClock>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

async fn start() -> (Server, latchkey_server::state::AppState) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut raw = RawConfig {
        public_url: format!("http://{addr}"),
        database_url: Some(format!("sqlite://{}?mode=rwc", dir.path().join("db.sqlite").display())),
        master_key_file: dir.path().join("master.key"),
        ..Default::default()
    };
    raw.passwords.argon2_memory_kib = 1024;
    raw.passwords.argon2_iterations = 1;
    let clock = ManualClock::starting_now();
    let state = latchkey_server::build_state(raw.validate().unwrap(), clock.clone()).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve_state = state.clone();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        latchkey_server::serve(listener, serve_state, shutdown, Duration::from_secs(2)).await.unwrap();
    });
    (Server { base: format!("http://{addr}"), clock, shutdown: Some(tx), _dir: dir }, state)
}

/// A server with one admin account, `operator`, whose password is [`PASSWORD`].
async fn start_with_operator() -> (Server, latchkey_server::state::AppState) {
    let (server, state) = start().await;
    let account = NewAccount {
        username: "operator".into(),
        password: Secret::new(PASSWORD.into()),
        email: None,
        roles: vec!["admin".into()],
    };
    users::create(&state, account, &latchkey_server::domain::rbac::Grantor::operator("test"), None).await.unwrap();
    (server, state)
}

fn code(uri: &str, unix_time: i64) -> String {
    totp_rs::Totp::from_url(uri).unwrap().generate(unix_time as u64).to_string()
}

#[tokio::test]
async fn console_operations_against_the_real_server() {
    let (mut server, _) = start_with_operator().await;

    let api = ApiClient::new(&server.base);
    assert!(matches!(api.login("operator", "wrong password", None).await, Err(ApiError::Server { status: 400, .. })));
    api.login("operator", PASSWORD, None).await.unwrap();

    // Enrol TOTP from the console, then log in with it.
    let setup = api.totp_setup(PASSWORD).await.unwrap();
    let codes = api.totp_confirm(&code(&setup.otpauth_uri, server.clock.now_secs())).await.unwrap();
    assert_eq!(codes.recovery_codes.len(), 10);
    api.logout();
    assert_eq!(api.login("operator", PASSWORD, None).await, Err(ApiError::MfaRequired));
    server.clock.advance(30);
    api.login("operator", PASSWORD, Some(&code(&setup.otpauth_uri, server.clock.now_secs()))).await.unwrap();

    // Users: create (one-time password), disable, set roles.
    let created = api.create_user("dana", Some("dana@example.com"), None).await.unwrap();
    let one_time = created.one_time_password.clone().expect("a generated password");
    let disabled = api.set_user_status(&created.user.id, "disabled").await.unwrap();
    assert_eq!(disabled.status, "disabled");
    api.set_user_status(&created.user.id, "active").await.unwrap();
    api.create_role("billing-reader", "Reads invoices", &["billing:read".into()]).await.unwrap();
    let with_roles = api.set_user_roles(&created.user.id, &["billing-reader".into(), "user".into()]).await.unwrap();
    assert_eq!(with_roles.roles, vec!["billing-reader", "user"]);
    let page = api.users("dan", 1, 50).await.unwrap();
    assert_eq!(page.total, 1);
    assert!(!page.items[0].email_verified);
    let verified = api.set_email_verified(&created.user.id, true).await.unwrap();
    assert!(verified.email_verified, "the admin's word verifies the address");
    // This server sends no mail: the console shows the server's refusal.
    let refused = api.send_user_link(&created.user.id, true).await.unwrap_err();
    assert!(matches!(&refused, ApiError::Server { status: 403, .. }), "{refused:?}");

    // Sessions: dana logs in through the browser flow; the console revokes it.
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{}/auth/login", server.base))
        .header("x-requested-with", "latchkey")
        .json(&serde_json::json!({"username": "dana", "password": one_time}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let sessions = api.sessions(Some(&created.user.id), 1, 50).await.unwrap();
    assert_eq!(sessions.total, 1);
    api.revoke_session(&sessions.items[0].id).await.unwrap();
    assert_eq!(api.sessions(Some(&created.user.id), 1, 50).await.unwrap().total, 0);
    assert_eq!(api.user_browser_sessions(&created.user.id).await.unwrap(), vec![], "no hosted sign-in yet");

    // Server errors come back with the server's message.
    let err = api.delete_role("admin").await.unwrap_err();
    match err {
        ApiError::Server { status, code, message } => {
            assert_eq!((status, code), (409, Some(ErrorCode::BuiltinRole)));
            assert!(message.contains("built-in"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!api.keys().await.unwrap().is_empty());
    assert!(api.audit(Some("user.create"), 1, 50).await.unwrap().total >= 2);

    // An expired access token is refreshed transparently.
    server.clock.advance(16 * 60);
    assert_eq!(api.users("", 1, 50).await.unwrap().total, 2);
    let _ = server.shutdown.take().map(|tx| tx.send(()));
}

/// An operator with narrow write permissions cannot escalate through the console either:
/// each grant past what it holds comes back as the server's 403 `insufficient_permissions`.
#[tokio::test]
async fn a_narrow_operator_cannot_escalate_through_the_console() {
    let (mut server, state) = start().await;
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    let everything: Vec<String> =
        ["users:read", "users:write", "roles:read", "roles:write", "clients:read", "clients:write"]
            .iter()
            .map(|p| p.to_string())
            .collect();
    latchkey_server::domain::rbac::create_role(&state, "helpdesk", "", &everything, &operator).await.unwrap();
    let account = NewAccount {
        username: "helper".into(),
        password: Secret::new(PASSWORD.into()),
        email: None,
        roles: vec!["helpdesk".into()],
    };
    let helper = users::create(&state, account, &operator, None).await.unwrap();
    let api = ApiClient::new(&server.base);
    api.login("helper", PASSWORD, None).await.unwrap();
    let refused = |result: Result<(), ApiError>| match result {
        Err(ApiError::Server { status, code, .. }) => {
            assert_eq!((status, code), (403, Some(ErrorCode::InsufficientPermissions)))
        }
        other => panic!("{other:?}"),
    };
    refused(api.set_user_roles(&helper.id, &["user".into(), "admin".into()]).await.map(|_| ()));
    refused(api.update_role("user", None, Some(&["keys:rotate".into()])).await.map(|_| ()));
    refused(api.create_role("keys", "", &["keys:rotate".into()]).await.map(|_| ()));
    // A client it makes is third-party: its tokens carry their own audience, not ours.
    let created = api.create_client("svc", true, &["client_credentials".into()], &[]).await.unwrap();
    assert!(!created.client.first_party);
    // Redirect URIs it may set; making a client first-party is a full admin's call.
    let uris = vec!["https://svc.example/cb".to_string()];
    assert_eq!(api.set_client_redirect_uris("svc", &uris).await.unwrap().redirect_uris, uris);
    refused(api.set_client_first_party("svc", true).await.map(|_| ()));
    assert_eq!(api.set_user_roles(&helper.id, &["helpdesk".into()]).await.unwrap().roles, vec!["helpdesk"]);
    let _ = server.shutdown.take().map(|tx| tx.send(()));
}

#[tokio::test]
async fn a_users_passkeys_are_listed_and_deleted() {
    let (_server, state) = start_with_operator().await;
    let api = ApiClient::new(&_server.base);
    api.login("operator", PASSWORD, None).await.unwrap();
    let created = api.create_user("pia", None, Some("pia's long password")).await.unwrap();
    let user_id = created.user.id.clone();
    assert!(api.user_passkeys(&user_id).await.unwrap().is_empty());
    // A passkey row as a registration leaves it (the console reads and deletes rows).
    let id = uuid::Uuid::now_v7().to_string();
    let row = latchkey_server::store::passkeys::PasskeyRow {
        id: id.clone(),
        user_id: user_id.clone(),
        credential_id: "cred-1".into(),
        name: "Phone".into(),
        credential: "{}".into(),
        sign_count: 3,
        backup_eligible: false,
        backup_state: false,
        created_at: 1_700_000_000,
        last_used_at: None,
    };
    let event = latchkey_server::store::audit::NewAuditEvent::success(0, &user_id, "fixture", &user_id);
    latchkey_server::store::passkeys::insert(&state.db, row, 25, event).await.unwrap();
    let listed = api.user_passkeys(&user_id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].sign_count, listed[0].backup_state), ("Phone", 3, false));
    api.delete_user_passkey(&user_id, &id).await.unwrap();
    assert!(api.user_passkeys(&user_id).await.unwrap().is_empty());
    assert!(matches!(api.delete_user_passkey(&user_id, &id).await, Err(ApiError::Server { status: 404, .. })));
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_connection_error() {
    let api = ApiClient::new("http://127.0.0.1:9");
    assert!(matches!(api.login("x", "y", None).await, Err(ApiError::Connection(_))));
}

/// A proxy in front of `upstream` that relays each request on its own connection, but
/// swallows the answer to the first refresh-token grant after the server has handled
/// it (a lost answer: the connection just closes). Returns its base URL and a count of
/// refresh grants it has seen.
async fn lossy_proxy(upstream: String) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let refreshes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = refreshes.clone();
    let upstream = upstream.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (seen, upstream) = (seen.clone(), upstream.clone());
            tokio::spawn(async move {
                // Headers, then as much body as Content-Length says.
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let header_end = loop {
                    let n = client.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..header_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while request.len() < header_end + length {
                    let n = client.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                }
                // One request per upstream connection, closed after the answer.
                let head = String::from_utf8_lossy(&request[..header_end])
                    .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
                let mut forwarded = head.into_bytes();
                forwarded.extend_from_slice(&request[header_end..]);
                let mut server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                server.write_all(&forwarded).await.unwrap();
                let mut answer = Vec::new();
                server.read_to_end(&mut answer).await.unwrap();
                let body = String::from_utf8_lossy(&request[header_end..]);
                if body.contains("grant_type=refresh_token")
                    && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
                {
                    return; // the server answered; the console never hears it
                }
                client.write_all(&answer).await.unwrap();
            });
        }
    });
    (base, refreshes)
}

/// "The console retries a refresh once with the same token on a network error": the
/// first refresh's answer is lost after the server rotated the token; the retry gets
/// the child the server committed, and the session goes on.
#[tokio::test]
async fn a_refresh_whose_answer_is_lost_is_retried_once_and_the_session_goes_on() {
    let (mut server, state) = start_with_operator().await;
    let (proxy, refreshes) = lossy_proxy(server.base.clone()).await;
    let api = ApiClient::new(&proxy);
    api.login("operator", PASSWORD, None).await.unwrap();
    api.refresh().await.expect("the retry after the lost answer succeeds");
    assert_eq!(refreshes.load(std::sync::atomic::Ordering::SeqCst), 2, "one lost answer, one retry");
    assert!(api.users("", 1, 50).await.is_ok(), "the access token from the retry works");
    api.refresh().await.expect("and the session goes on rotating");
    assert_eq!(state.metrics.refresh_replayed.get(), 1, "the retry was answered with the committed child");
    let _ = server.shutdown.take().map(|tx| tx.send(()));
}
