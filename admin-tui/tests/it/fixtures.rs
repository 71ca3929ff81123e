//! Fixed data for snapshots and state tests (fixed ids and times, so no filters needed).

use chrono::{DateTime, FixedOffset};
use latchkey_admin::api::*;
use latchkey_admin::app::{Action, App};
use latchkey_admin::request::Loaded;

/// The console's clock in every test: shortly after the fixtures' times, so tables show
/// "3m ago" and "yesterday 14:02" rather than dates that change with the day.
pub fn now() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2026-11-23T12:48:00+00:00").unwrap()
}

pub fn user(n: usize, name: &str, status: &str, roles: &[&str]) -> User {
    User {
        id: format!("01a20862-0000-7000-8000-00000000000{n}"),
        username: name.into(),
        email: Some(format!("{name}@example.com")),
        email_verified: n == 1,
        status: status.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        created_at: "2026-11-23T12:30:03+00:00".into(),
        totp_enabled: n == 1,
        failed_logins: 0,
        locked_until: None,
    }
}

pub fn users() -> Page<User> {
    Page {
        items: vec![
            user(1, "alice", "active", &["admin", "user"]),
            user(2, "bob", "disabled", &["user"]),
            user(3, "carol", "active", &["billing-reader", "user"]),
        ],
        total: 3,
        page: 1,
        page_size: 50,
    }
}

pub fn roles() -> Vec<Role> {
    let role = |name: &str, builtin: bool, perms: &[&str], users: u64| Role {
        name: name.into(),
        description: format!("{name} role"),
        builtin,
        permissions: perms.iter().map(|p| p.to_string()).collect(),
        user_count: users,
        created_at: "2026-11-23T12:30:03+00:00".into(),
    };
    vec![
        role("admin", true, &["users:read"], 1),
        role("billing-reader", false, &["billing:read"], 1),
        role("user", true, &[], 3),
    ]
}

pub fn sessions() -> Page<Session> {
    Page {
        items: vec![Session {
            id: "01a20862-1111-7000-8000-000000000001".into(),
            user_id: "01a20862-0000-7000-8000-000000000001".into(),
            username: "alice".into(),
            client_id: "spa".into(),
            created_at: "2026-11-23T12:30:03+00:00".into(),
            last_used_at: "2026-11-23T12:45:00+00:00".into(),
            idle_expires_at: "2026-12-07T12:45:00+00:00".into(),
            absolute_expires_at: "2026-12-23T12:30:03+00:00".into(),
            ip: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0".into()),
        }],
        total: 1,
        page: 1,
        page_size: 50,
    }
}

pub fn backchannel() -> BackchannelDelivery {
    BackchannelDelivery {
        client_id: "wiki".into(),
        backchannel_logout_uri: Some("https://wiki.example/backchannel".into()),
        backchannel_logout_session_required: true,
        pending: 1,
        failing: 1,
        delivered: 3,
        dead: 1,
        last_delivered_at: Some("2026-11-23T12:40:00+00:00".into()),
        recent: vec![OutboxMessage {
            id: "7d0c6a5e-5f4b-4b7e-9d8c-2f1e0a9b8c7d".into(),
            state: "pending".into(),
            attempts: 2,
            created_at: "2026-11-23T12:30:03+00:00".into(),
            next_attempt_at: Some("2026-11-23T12:31:00+00:00".into()),
            finished_at: None,
            last_error: Some("answered HTTP 503".into()),
        }],
    }
}

pub fn clients() -> Page<Client> {
    let client = |id: &str, kind: &str, grants: &[&str]| Client {
        client_id: id.into(),
        name: id.into(),
        client_type: kind.into(),
        grant_types: grants.iter().map(|g| g.to_string()).collect(),
        scopes: vec!["openid".into()],
        audience: None,
        roles: vec![],
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        first_party: id != "billing-svc",
        allowed_origins: vec![],
        visible_roles: None,
        token_endpoint_auth_method: None,
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        dpop_bound_access_tokens: id == "billing-svc",
        created_at: "2026-11-23T12:30:03+00:00".into(),
        updated_at: "2026-11-23T12:30:03+00:00".into(),
    };
    Page {
        items: vec![
            client("latchkey-admin", "public", &["password", "refresh_token"]),
            client("spa", "public", &["refresh_token"]),
            client("billing-svc", "confidential", &["client_credentials"]),
        ],
        total: 3,
        page: 1,
        page_size: 50,
    }
}

pub fn keys() -> Vec<SigningKey> {
    vec![SigningKey {
        kid: "hmxG2ndk_YYeL3WYe71ZBc7im7ayv7OHcb6DASbU9BY".into(),
        algorithm: "RS256".into(),
        bits: 2048,
        state: "active".into(),
        created_at: "2026-11-23T12:30:00+00:00".into(),
        activated_at: Some("2026-11-23T12:30:00+00:00".into()),
        retired_at: None,
        published: true,
        activates_at: None,
        unpublished_at: None,
    }]
}

/// Newest first. The first event is as an older server sends it (ids only); the second
/// has the names and the chain link newer servers add.
pub fn audit() -> Page<AuditEvent> {
    Page {
        items: vec![
            AuditEvent {
                id: 7,
                occurred_at: "2026-11-23T12:31:00+00:00".into(),
                actor: "01a20862-0000-7000-8000-000000000001".into(),
                action: "user.create".into(),
                target: Some("01a20862-0000-7000-8000-000000000003".into()),
                ip: None,
                outcome: "success".into(),
                details: serde_json::json!({"username": "carol"}),
                actor_name: None,
                target_name: None,
                chain_seq: None,
                chain_hash: None,
            },
            AuditEvent {
                id: 6,
                occurred_at: "2026-11-22T14:02:00+00:00".into(),
                actor: "01a20862-0000-7000-8000-000000000001".into(),
                action: "user.disable".into(),
                target: Some("01a20862-0000-7000-8000-000000000002".into()),
                ip: Some("203.0.113.7".into()),
                outcome: "success".into(),
                details: serde_json::json!({"status": "disabled", "sessions_revoked": 2}),
                actor_name: Some("alice".into()),
                target_name: Some("bob".into()),
                chain_seq: Some(6),
                chain_hash: Some("5efc85953011568fca6d385695e3bd30442eeebe228f06f7ae0c8235d16b2f29".into()),
            },
        ],
        total: 2,
        page: 1,
        page_size: 50,
    }
}

/// A logged-in console with every list loaded.
pub fn loaded_app() -> App {
    let mut app = App::new("http://127.0.0.1:8080", now());
    app.apply(Action::Loaded(Loaded::LoggedIn));
    app.status = None;
    app.apply(Action::Loaded(Loaded::Users(users())));
    app.apply(Action::Loaded(Loaded::Roles(roles())));
    app.apply(Action::Loaded(Loaded::Sessions(sessions())));
    app.apply(Action::Loaded(Loaded::Clients(clients())));
    app.apply(Action::Loaded(Loaded::Keys(keys())));
    app.apply(Action::Loaded(Loaded::Audit(audit())));
    app
}
