//! The contract of the token paths' storage seam (`store::TokenStore`), run against
//! the engine of this pass: SQLite here, PostgreSQL when `TEST_DATABASE_URL` is set.
//! Every method, and the outcomes the refresh rule relies on: the three rotate
//! outcomes, one winner among concurrent rotations, revocation racing rotation, and a
//! session that ended on either deadline.

use latchkey_server::security::sha256_hex;
use latchkey_server::store::audit::NewAuditEvent;
use latchkey_server::store::entities::TokenState;
use latchkey_server::store::sessions::{self, NewRefreshToken, NewSession};
use latchkey_server::store::{RefreshAttempt, RotateOutcome, Rotation, TokenStore};

use crate::harness::{TestServer, backend, user_with_roles};

const IDLE: i64 = 600;
const ABSOLUTE: i64 = 3600;

/// A new session of `user_id` at `now` with one active token `first` (its hash is
/// stored); returns the session id.
/// A user to own the sessions under test, and the clock's reading.
async fn ada_now(server: &TestServer) -> (String, i64) {
    let (user_id, _) = user_with_roles(server, "ada", &[]).await;
    (user_id, server.clock.now_secs())
}

/// [`ada_now`] with a session whose first refresh token is `first`.
async fn ada_with_session(server: &TestServer, first: &str) -> (String, i64, String) {
    let (user_id, now) = ada_now(server).await;
    let session_id = new_session(server, &user_id, first, now).await;
    (user_id, now, session_id)
}

async fn new_session(server: &TestServer, user_id: &str, first: &str, now: i64) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    sessions::create(
        &server.state.db,
        NewSession {
            id: id.clone(),
            user_id: user_id.into(),
            client_id: "spa".into(),
            now,
            idle_expires_at: now + IDLE,
            absolute_expires_at: now + ABSOLUTE,
            ip: None,
            user_agent: None,
            amr: "pwd".into(),
            auth_time: now,
            scope: "openid".into(),
            sso_session_id: None,
            dpop_jkt: None,
        },
        NewRefreshToken {
            id: format!("{first}-id"),
            parent_id: None,
            token_hash: sha256_hex(first),
            expires_at: now + IDLE,
        },
        NewAuditEvent {
            occurred_at: now,
            actor: user_id.into(),
            action: "login",
            target: Some(id.clone()),
            ip: None,
            outcome: "success",
            details: serde_json::json!({}),
        },
    )
    .await
    .unwrap();
    id
}

fn rotation(parent: &str, session_id: &str, child: &str, now: i64) -> Rotation {
    Rotation {
        token_id: format!("{parent}-id"),
        session_id: session_id.into(),
        now,
        idle_expires_at: now + IDLE,
        child_id: format!("{child}-id"),
        child_hash: sha256_hex(child),
        child_expires_at: now + IDLE,
        child_sealed: format!("sealed-{child}"),
        binds_dpop_jkt: None,
    }
}

async fn token_state(server: &TestServer, token: &str) -> TokenState {
    let (row, _) = server.state.tokens.token_with_session(&sha256_hex(token)).await.unwrap().expect("the token exists");
    row.state
}

#[tokio::test]
async fn reads_find_what_was_written_and_nothing_else() {
    let server = TestServer::start().await;
    let (user_id, _) = user_with_roles(&server, "ada", &["admin"]).await;
    let now = server.clock.now_secs();
    let session_id = new_session(&server, &user_id, "reads-a", now).await;
    let tokens = &server.state.tokens;

    let (session, user) = tokens.session_with_user(&session_id).await.unwrap().expect("the session");
    assert_eq!((session.id.as_str(), session.user_id.as_str()), (session_id.as_str(), user_id.as_str()));
    assert_eq!(session.idle_expires_at, now + IDLE, "{}", backend());
    assert_eq!(user.expect("its user").username, "ada");
    assert!(tokens.session_with_user("no-such-session").await.unwrap().is_none());

    let read = tokens.token_for_refresh(&sha256_hex("reads-a")).await.unwrap().expect("the token");
    assert_eq!((read.token.state, read.token.parent_id.as_deref()), (TokenState::Active, None));
    assert_eq!(read.session, session);
    assert_eq!(read.user.as_ref().map(|u| u.id.as_str()), Some(user_id.as_str()));
    assert_eq!(read.roles, ["admin", "user"], "roles sorted on {}", backend());
    assert!(tokens.token_for_refresh(&sha256_hex("unknown")).await.unwrap().is_none());

    let (token, with) = tokens.token_with_session(&sha256_hex("reads-a")).await.unwrap().expect("the token");
    assert_eq!((token, with), (read.token.clone(), session));
    assert!(tokens.token_with_session(&sha256_hex("unknown")).await.unwrap().is_none());

    assert_eq!(tokens.user_role_names(&user_id).await.unwrap(), ["admin", "user"]);
    assert!(tokens.user_role_names("no-such-user").await.unwrap().is_empty());

    let spa = tokens.client("spa").await.unwrap().expect("the seeded first-party client");
    assert_eq!((spa.client_id.as_str(), spa.client_type.as_str()), ("spa", "public"));
    assert!(tokens.client("no-such-client").await.unwrap().is_none());
    assert!(tokens.client_role_names("spa").await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn client_role_names_are_the_clients_sorted() {
    let server = TestServer::start().await;
    server.create_client("svc", true, &["client_credentials"], &["user", "admin"]).await;
    assert_eq!(server.state.tokens.client_role_names("svc").await.unwrap(), ["admin", "user"], "{}", backend());
    server.stop().await;
}

#[tokio::test]
async fn rotation_swaps_the_token_touches_the_session_and_inserts_the_child() {
    let server = TestServer::start().await;
    let (_, now, session_id) = ada_with_session(&server, "rot-a").await;
    let tokens = &server.state.tokens;
    let later = now + 30;

    assert_eq!(tokens.rotate(&rotation("rot-a", &session_id, "rot-b", later)).await.unwrap(), RotateOutcome::Rotated);
    let parent = tokens.token_for_refresh(&sha256_hex("rot-a")).await.unwrap().unwrap();
    assert_eq!((parent.token.state, parent.token.used_at), (TokenState::Rotated, Some(later)));
    assert_eq!((parent.session.last_used_at, parent.session.idle_expires_at), (later, later + IDLE));
    assert_eq!(parent.token.child_sealed.as_deref(), Some("sealed-rot-b"), "the parent keeps its child sealed");
    let child = tokens.token_for_refresh(&sha256_hex("rot-b")).await.unwrap().unwrap();
    assert_eq!(child.token.state, TokenState::Active);
    assert_eq!(tokens.child_of("rot-a-id").await.unwrap().as_ref(), Some(&child.token), "found by its parent");
    assert_eq!(child.token.child_sealed, None);
    assert!(tokens.child_of("rot-b-id").await.unwrap().is_none(), "an active token has no child");
    assert_eq!(child.token.parent_id.as_deref(), Some("rot-a-id"));
    assert_eq!((child.token.created_at, child.token.expires_at), (later, later + IDLE));

    // The same token again: it is no longer active, and nothing changes.
    let again = tokens.rotate(&rotation("rot-a", &session_id, "rot-c", later + 1)).await.unwrap();
    assert_eq!(again, RotateOutcome::TokenNotActive, "{}", backend());
    assert!(tokens.token_for_refresh(&sha256_hex("rot-c")).await.unwrap().is_none(), "no second child");
    let session = tokens.session_with_user(&session_id).await.unwrap().unwrap().0;
    assert_eq!(session.last_used_at, later, "a lost swap touches nothing");
    server.stop().await;
}

fn attempt(client_id: &str, child: &str, now: i64, proof_jkt: Option<&str>) -> RefreshAttempt {
    RefreshAttempt {
        client_id: client_id.into(),
        now,
        idle_timeout_secs: IDLE,
        child_id: format!("{child}-id"),
        child_hash: sha256_hex(child),
        child_sealed: format!("sealed-{child}"),
        proof_jkt: proof_jkt.map(str::to_string),
        binds_dpop_jkt: None,
        mfa_roles: Vec::new(),
        strong_amr: vec!["mfa".into()],
    }
}

/// PostgreSQL reads and rotates in one statement when the read passes the refresh
/// rule, and only reads otherwise; SQLite only reads (and the domain rotates).
#[tokio::test]
async fn read_and_rotate_rotates_in_one_go_only_what_the_rule_allows() {
    let server = TestServer::start().await;
    let (_, now, session_id) = ada_with_session(&server, "rr-a").await;
    let tokens = &server.state.tokens;
    let one_go = backend() == "postgres";

    // Another client's: read, never rotated.
    let (read, rotated) =
        tokens.read_and_rotate(&sha256_hex("rr-a"), &attempt("svc", "rr-x", now, None)).await.unwrap().unwrap();
    assert!(!rotated, "another client's token on {}", backend());
    assert_eq!(read.token.state, TokenState::Active);
    // A user whose roles need a second factor, in a password-only session: not rotated.
    assert!(!read.roles.is_empty(), "ada holds the default role");
    let mut strict = attempt("spa", "rr-x", now, None);
    strict.mfa_roles = read.roles.clone();
    assert!(!tokens.read_and_rotate(&sha256_hex("rr-a"), &strict).await.unwrap().unwrap().1);
    assert_eq!(token_state(&server, "rr-a").await, TokenState::Active, "nothing was spent");

    let (read, rotated) =
        tokens.read_and_rotate(&sha256_hex("rr-a"), &attempt("spa", "rr-b", now + 5, None)).await.unwrap().unwrap();
    assert_eq!(rotated, one_go, "{}", backend());
    assert_eq!((read.session.id.as_str(), read.token.state), (session_id.as_str(), TokenState::Active), "the read");
    if one_go {
        assert_eq!(token_state(&server, "rr-a").await, TokenState::Rotated);
        let child = tokens.token_for_refresh(&sha256_hex("rr-b")).await.unwrap().expect("the child");
        assert_eq!(child.token.parent_id.as_deref(), Some("rr-a-id"));
        assert_eq!((child.session.last_used_at, child.session.idle_expires_at), (now + 5, now + 5 + IDLE));
        // The same token again: read as rotated, nothing more happens.
        let (again, rotated) =
            tokens.read_and_rotate(&sha256_hex("rr-a"), &attempt("spa", "rr-c", now + 6, None)).await.unwrap().unwrap();
        assert!(!rotated);
        assert_eq!(again.token.state, TokenState::Rotated);
        assert!(tokens.token_for_refresh(&sha256_hex("rr-c")).await.unwrap().is_none());
    } else {
        assert_eq!(token_state(&server, "rr-a").await, TokenState::Active, "SQLite only reads");
    }
    assert!(
        tokens.read_and_rotate(&sha256_hex("unknown"), &attempt("spa", "rr-d", now, None)).await.unwrap().is_none()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_session_that_ended_rotates_nothing() {
    let server = TestServer::start().await;
    let (user_id, now) = ada_now(&server).await;
    let tokens = &server.state.tokens;
    // Past the idle deadline (but inside the absolute one), past the absolute one
    // (its idle deadline pushed out by hand), and revoked.
    let idle = new_session(&server, &user_id, "idle-a", now).await;
    let absolute = new_session(&server, &user_id, "abs-a", now).await;
    let revoked = new_session(&server, &user_id, "rev-a", now).await;
    use sea_orm::ConnectionTrait;
    let db = &server.state.db;
    db.execute_unprepared(&format!(
        "UPDATE sessions SET idle_expires_at = {} WHERE id = '{absolute}'",
        now + 2 * ABSOLUTE
    ))
    .await
    .unwrap();
    assert!(sessions::revoke(db, &revoked, "test", now, sessions::Notify::RelyingParty, None).await.unwrap());

    let cases = [
        ("idle", &idle, "idle-a", now + IDLE),
        ("absolute", &absolute, "abs-a", now + ABSOLUTE),
        ("revoked", &revoked, "rev-a", now + 1),
    ];
    for (what, session_id, token, at) in cases {
        let outcome = tokens.rotate(&rotation(token, session_id, &format!("{token}-child"), at)).await.unwrap();
        let expected = if what == "revoked" { RotateOutcome::TokenNotActive } else { RotateOutcome::SessionNotActive };
        assert_eq!(outcome, expected, "{what} on {}", backend());
        let state = token_state(&server, token).await;
        assert_eq!(
            state,
            if what == "revoked" { TokenState::Revoked } else { TokenState::Active },
            "{what}: rolled back"
        );
        assert!(tokens.token_for_refresh(&sha256_hex(&format!("{token}-child"))).await.unwrap().is_none(), "{what}");
    }
    // One second before the idle deadline it still rotates.
    let fresh = new_session(&server, &user_id, "edge-a", now).await;
    let outcome = tokens.rotate(&rotation("edge-a", &fresh, "edge-b", now + IDLE - 1)).await.unwrap();
    assert_eq!(outcome, RotateOutcome::Rotated);
    server.stop().await;
}

#[tokio::test]
async fn of_concurrent_rotations_of_one_token_exactly_one_wins() {
    let server = TestServer::start().await;
    let (_, now, session_id) = ada_with_session(&server, "race-a").await;
    let attempts: Vec<_> = (0..24)
        .map(|i| {
            let state = server.state.clone();
            let rotation = rotation("race-a", &session_id, &format!("race-child-{i}"), now + 1);
            tokio::spawn(async move { state.tokens.rotate(&rotation).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(attempt.await.unwrap());
    }
    let won = outcomes.iter().filter(|o| **o == RotateOutcome::Rotated).count();
    let lost = outcomes.iter().filter(|o| **o == RotateOutcome::TokenNotActive).count();
    assert_eq!((won, lost), (1, 23), "{outcomes:?} on {}", backend());
    let mut children = 0;
    for i in 0..24 {
        children +=
            server.state.tokens.token_with_session(&sha256_hex(&format!("race-child-{i}"))).await.unwrap().is_some()
                as usize;
    }
    assert_eq!(children, 1, "one child exists");
    server.stop().await;
}

#[tokio::test]
async fn revocation_racing_rotation_leaves_no_live_token_in_a_revoked_session() {
    let server = TestServer::start().await;
    let (user_id, now) = ada_now(&server).await;
    let mut rotated_first = 0;
    for round in 0..12 {
        let first = format!("rr-{round}-a");
        let child = format!("rr-{round}-b");
        let session_id = new_session(&server, &user_id, &first, now).await;
        let rotate = {
            let state = server.state.clone();
            let rotation = rotation(&first, &session_id, &child, now + 1);
            tokio::spawn(async move { state.tokens.rotate(&rotation).await.unwrap() })
        };
        let revoke = {
            let db = server.state.db.clone();
            let session_id = session_id.clone();
            tokio::spawn(async move {
                sessions::revoke(&db, &session_id, "test", now + 1, sessions::Notify::RelyingParty, None).await.unwrap()
            })
        };
        let (outcome, revoked) = (rotate.await.unwrap(), revoke.await.unwrap());
        assert!(revoked, "the revocation always lands (round {round})");
        rotated_first += (outcome == RotateOutcome::Rotated) as usize;
        // Whichever came first, every token of the session is dead now.
        assert_ne!(token_state(&server, &first).await, TokenState::Active, "round {round} on {}", backend());
        if outcome == RotateOutcome::Rotated {
            assert_eq!(token_state(&server, &child).await, TokenState::Revoked, "round {round}: the child died too");
            let (parent, _) = server.state.tokens.token_with_session(&sha256_hex(&first)).await.unwrap().unwrap();
            assert_eq!(parent.child_sealed, None, "round {round}: revocation erases the sealed child");
        } else {
            assert!(server.state.tokens.token_with_session(&sha256_hex(&child)).await.unwrap().is_none());
        }
    }
    eprintln!("revoke vs rotate on {}: rotation first in {rotated_first} of 12 rounds", backend());
    server.stop().await;
}

// The code flow's methods: issuing a code (finishing its interaction, touching the
// login session) and redeeming it exactly once.

use latchkey_server::store::authorization::{
    self as codes, CodeIssue, CodeRow, Grant, InteractionRow, Redemption, SsoSessionRow, SsoTouch,
};

fn code_row(code: &str, user_id: &str, sso_session_id: Option<&str>, now: i64) -> CodeRow {
    CodeRow {
        code_hash: sha256_hex(code),
        client_id: "spa".into(),
        user_id: user_id.into(),
        sso_session_id: sso_session_id.map(str::to_string),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "challenge".into(),
        scope: "openid profile".into(),
        nonce: Some("n-0".into()),
        auth_time: now - 5,
        amr: "pwd otp".into(),
        created_at: now,
        expires_at: now + 60,
        used_at: None,
        session_id: None,
        dpop_jkt: None,
    }
}

fn issue(code: CodeRow, finishes: Option<&str>, touch: Option<SsoTouch>) -> CodeIssue {
    let event = NewAuditEvent::success(code.created_at, &code.user_id, "authorization.granted", &code.client_id);
    CodeIssue { code, finishes: finishes.map(str::to_string), touch, event }
}

fn grant_for(row: &CodeRow, now: i64, refresh: Option<&str>) -> Grant {
    Grant {
        session: NewSession {
            id: "ignored: the redemption names the session".into(),
            user_id: row.user_id.clone(),
            client_id: row.client_id.clone(),
            now,
            idle_expires_at: now + IDLE,
            absolute_expires_at: now + ABSOLUTE,
            ip: Some("127.0.0.1".into()),
            user_agent: None,
            amr: row.amr.clone(),
            auth_time: row.auth_time,
            scope: row.scope.clone(),
            sso_session_id: row.sso_session_id.clone(),
            dpop_jkt: None,
        },
        refresh_token: refresh.map(|token| NewRefreshToken {
            id: format!("{token}-id"),
            parent_id: None,
            token_hash: sha256_hex(token),
            expires_at: now + IDLE,
        }),
        event: NewAuditEvent::success(now, &row.user_id, "token.code_exchange", "s"),
    }
}

async fn sso_session_of(server: &TestServer, user_id: &str, cookie: &str, now: i64) -> SsoSessionRow {
    let row = SsoSessionRow {
        id: uuid::Uuid::now_v7().to_string(),
        token_hash: sha256_hex(cookie),
        user_id: user_id.into(),
        created_at: now - 120,
        last_seen_at: now - 120,
        idle_expires_at: now + 100,
        absolute_expires_at: now + 1000,
        auth_time: now - 120,
        amr: "pwd".into(),
        ip: None,
        user_agent: Some("test".into()),
        revoked_at: None,
        revoked_reason: None,
    };
    let event = NewAuditEvent::success(now, user_id, "login", &row.id);
    codes::create_sso_session(&server.state.db, row.clone(), None, event).await.unwrap();
    row
}

#[tokio::test]
async fn user_with_roles_and_sso_session_read_what_was_written() {
    let server = TestServer::start().await;
    let (user_id, _) = user_with_roles(&server, "ada", &["admin"]).await;
    let now = server.clock.now_secs();
    let tokens = &server.state.tokens;
    let (user, roles) = tokens.user_with_roles(&user_id).await.unwrap().expect("the user");
    assert_eq!((user.username.as_str(), roles), ("ada", vec!["admin".to_string(), "user".to_string()]));
    assert!(tokens.user_with_roles("no-such-user").await.unwrap().is_none());

    let written = sso_session_of(&server, &user_id, "cookie-a", now).await;
    let (read, user) = tokens.sso_session(&sha256_hex("cookie-a")).await.unwrap().expect("the login session");
    assert_eq!(read, written, "{}", backend());
    assert_eq!(user.map(|u| u.id), Some(user_id));
    assert!(tokens.sso_session(&sha256_hex("cookie-b")).await.unwrap().is_none());
    server.stop().await;
}

#[tokio::test]
async fn issuing_a_code_finishes_its_interaction_once_and_touches_the_login_session() {
    let server = TestServer::start().await;
    let (user_id, now) = ada_now(&server).await;
    let tokens = &server.state.tokens;
    let sso = sso_session_of(&server, &user_id, "cookie-a", now).await;
    let interaction = InteractionRow {
        id: "interaction-1".into(),
        browser_hash: sha256_hex("browser"),
        client_id: "spa".into(),
        params: "{}".into(),
        user_id: None,
        amr: None,
        auth_time: None,
        stage: "sign_in".into(),
        notice: None,
        created_at: now,
        expires_at: now + 600,
    };
    codes::create_interaction(&server.state.db, interaction.clone()).await.unwrap();
    assert_eq!(tokens.interaction("interaction-1").await.unwrap(), Some(interaction), "{}", backend());
    assert!(tokens.interaction("interaction-2").await.unwrap().is_none());
    let touch = SsoTouch { id: sso.id.clone(), now, idle_expires_at: now + 500 };
    assert!(
        tokens
            .issue_code(issue(code_row("code-1", &user_id, Some(&sso.id), now), Some("interaction-1"), Some(touch)))
            .await
            .unwrap()
    );
    assert!(tokens.interaction("interaction-1").await.unwrap().is_none(), "finished");
    let (touched, _) = tokens.sso_session(&sha256_hex("cookie-a")).await.unwrap().unwrap();
    assert_eq!((touched.last_seen_at, touched.idle_expires_at), (now, now + 500), "{}", backend());

    // A second finish of the same interaction issues nothing.
    let again = issue(code_row("code-2", &user_id, Some(&sso.id), now), Some("interaction-1"), None);
    assert!(!tokens.issue_code(again).await.unwrap());
    let unknown = tokens.redeem_code(&sha256_hex("code-2"), now, "session-x", |_| None).await.unwrap();
    assert!(matches!(unknown, Redemption::Unknown), "{unknown:?}");

    // The issued code is stored whole: what the redemption judges is what was issued.
    let mut judged = None;
    let redeemed = tokens
        .redeem_code(&sha256_hex("code-1"), now + 1, "session-1", |row| {
            judged = Some(row.clone());
            Some(grant_for(row, now + 1, Some("code-refresh")))
        })
        .await
        .unwrap();
    let expected = CodeRow {
        used_at: Some(now + 1),
        session_id: Some("session-1".into()),
        ..code_row("code-1", &user_id, Some(&sso.id), now)
    };
    assert_eq!(judged.as_ref(), Some(&expected), "{}", backend());
    assert!(matches!(&redeemed, Redemption::Redeemed(row) if *row == expected), "{redeemed:?}");
    let (session, _) = tokens.session_with_user("session-1").await.unwrap().expect("the granted session");
    assert_eq!(
        (session.amr.as_str(), session.auth_time, session.scope.as_str()),
        ("pwd otp", now - 5, "openid profile")
    );
    assert_eq!(session.sso_session_id.as_ref(), Some(&sso.id), "it remembers the login session it came through");
    let (token, _) = tokens.token_with_session(&sha256_hex("code-refresh")).await.unwrap().expect("its refresh token");
    assert_eq!((token.session_id.as_str(), token.state), ("session-1", TokenState::Active));

    // Each wrote its audit event in its transaction, bounded like any other.
    let events = latchkey_server::store::audit::list_recent(&server.state.db, 2).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["token.code_exchange", "authorization.granted"], "{}", backend());
    let mut long = issue(code_row("code-3", &user_id, None, now), None, None);
    long.event = long.event.details(serde_json::json!({ "scope": "x".repeat(10_000) })).ip(Some("9".repeat(1000)));
    assert!(tokens.issue_code(long).await.unwrap());
    let event = latchkey_server::store::audit::list_recent(&server.state.db, 1).await.unwrap().remove(0);
    assert!(event.details.contains("\"truncated\":true"), "{}", event.details);
    assert_eq!(event.ip.map(|ip| ip.chars().count()), Some(latchkey_server::store::audit::FIELD_MAX_CHARS + 1));
    // The engine's own writers extend the same hash chain as every other.
    latchkey_server::domain::maintenance::link_audit_events(&server.state).await.unwrap();
    let head = latchkey_server::domain::audit::verify(&server.state.db, &[]).await.unwrap().expect("intact").ends.head;
    let event = latchkey_server::store::audit::list_recent(&server.state.db, 1).await.unwrap().remove(0);
    assert_eq!((head.seq, head.hash), (event.chain_seq.unwrap(), event.chain_hash.unwrap()));
    server.stop().await;
}

#[tokio::test]
async fn a_refused_redemption_spends_the_code_and_grants_nothing() {
    let server = TestServer::start().await;
    let (user_id, now) = ada_now(&server).await;
    let tokens = &server.state.tokens;
    assert!(tokens.issue_code(issue(code_row("code-r", &user_id, None, now), None, None)).await.unwrap());
    let refused = tokens.redeem_code(&sha256_hex("code-r"), now, "session-r", |_| None).await.unwrap();
    assert!(
        matches!(&refused, Redemption::Refused(row) if row.session_id.is_none() && row.used_at == Some(now)),
        "{refused:?}"
    );
    assert!(tokens.session_with_user("session-r").await.unwrap().is_none());
    // Presented again, it is reused, with no session to revoke.
    let again =
        tokens.redeem_code(&sha256_hex("code-r"), now, "session-r2", |_| panic!("not judged twice")).await.unwrap();
    assert!(matches!(&again, Redemption::Reused(row) if row.session_id.is_none()), "{again:?}");
    server.stop().await;
}

#[tokio::test]
async fn of_concurrent_redemptions_of_one_code_exactly_one_grants_and_the_rest_name_its_session() {
    let server = TestServer::start().await;
    let (user_id, now) = ada_now(&server).await;
    assert!(server.state.tokens.issue_code(issue(code_row("code-c", &user_id, None, now), None, None)).await.unwrap());
    let attempts: Vec<_> = (0..16)
        .map(|i| {
            let state = server.state.clone();
            tokio::spawn(async move {
                let session_id = format!("session-{i}");
                let redemption = state
                    .tokens
                    .redeem_code(&sha256_hex("code-c"), now, &session_id, |row| Some(grant_for(row, now, None)))
                    .await
                    .unwrap();
                (session_id, redemption)
            })
        })
        .collect();
    let mut results = Vec::new();
    for attempt in attempts {
        results.push(attempt.await.unwrap());
    }
    let winners: Vec<&String> =
        results.iter().filter(|(_, r)| matches!(r, Redemption::Redeemed(_))).map(|(id, _)| id).collect();
    assert_eq!(winners.len(), 1, "{} {results:?}", backend());
    for (_, redemption) in &results {
        if let Redemption::Reused(row) = redemption {
            assert_eq!(row.session_id.as_ref(), Some(winners[0]), "a loser finds the winner's session to revoke");
        }
    }
    assert!(server.state.tokens.session_with_user(winners[0]).await.unwrap().is_some());
    latchkey_server::domain::audit::verify(&server.state.db, &[]).await.unwrap().expect("the audit chain is intact");
    server.stop().await;
}
