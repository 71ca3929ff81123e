//! The audit log's hash chain: every writer extends it, `verify` names the first event
//! that an edit, a deletion or an insertion made in SQL broke, a chain rebuilt after an
//! edit does not hold a head recorded before it, and the retention purge keeps what is
//! left verifiable.

use latchkey_migration::audit_chain::Content;
use latchkey_server::domain::audit::{Broken, Verified, verify};
use latchkey_server::domain::maintenance;
use latchkey_server::store::audit::{self, AuditRow, ChainBreak, ChainPoint, NewAuditEvent};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;

use crate::harness::{TestServer, backend, user_with_roles};

async fn append(server: &TestServer, count: usize, at: i64) {
    for i in 0..count {
        let event = NewAuditEvent::success(at, "test", "test.event", &format!("t{i}"));
        audit::record_alone(&server.state.db, event).await.unwrap();
    }
}

/// Links what awaits its link (PostgreSQL links after commit, about once a second; the
/// test does not wait for the server's tick).
async fn settle(server: &TestServer) {
    maintenance::link_audit_events(&server.state).await.unwrap();
}

async fn verified(server: &TestServer) -> Verified {
    match verify(&server.state.db, &[]).await.unwrap() {
        Ok(verified) => verified,
        Err(broken) => panic!("the chain is broken on {}: {broken}", backend()),
    }
}

async fn broken(server: &TestServer, known: &[ChainPoint]) -> Broken {
    match verify(&server.state.db, known).await.unwrap() {
        Ok(verified) => panic!("the chain verified on {}: {verified:?}", backend()),
        Err(broken) => broken,
    }
}

async fn sql(server: &TestServer, statement: &str) {
    server.state.db.execute_unprepared(statement).await.unwrap();
}

/// The link stored at `point`'s place, if an event is still there.
async fn at_place_hash(server: &TestServer, point: &ChainPoint) -> Option<String> {
    audit::chain_page(&server.state.db, point.seq - 1, 1)
        .await
        .unwrap()
        .into_iter()
        .find(|row| row.chain_seq == Some(point.seq))
        .and_then(|row| row.chain_hash)
}

async fn at_place(server: &TestServer, seq: i64) -> AuditRow {
    audit::chain_page(&server.state.db, seq - 1, 1).await.unwrap().remove(0)
}

/// A server whose chain holds its start-up events and five more.
async fn server_with_events() -> (TestServer, ChainPoint) {
    let server = TestServer::start().await;
    append(&server, 5, server.clock.now_secs()).await;
    settle(&server).await;
    let head = verified(&server).await.ends.head;
    assert!(head.seq >= 5);
    (server, head)
}

#[tokio::test]
async fn every_writer_extends_one_chain_that_verifies() {
    let server = TestServer::start().await;
    // Writers inside a change's transaction (registration, admin changes) and on their
    // own (logins), over HTTP.
    server.register("ada").await;
    server.login("ada").await;
    assert_eq!(server.login_status("ada", "wrong password").await, 401);
    let (_, admin) = user_with_roles(&server, "root", &["admin"]).await;
    append(&server, 3, server.clock.now_secs()).await;
    settle(&server).await;
    let verified = verified(&server).await;
    assert!(verified.events >= 7, "{verified:?}");
    assert_eq!(verified.events as i64, verified.ends.head.seq, "nothing purged: every place from 1 is here");
    let stored = audit::list_recent(&server.state.db, 1000).await.unwrap();
    assert_eq!(stored.len() as u64, verified.events);

    // The admin API gives the same ends, and each event's place and link.
    let chain: Value = server.get("/admin/audit/chain").bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(chain["head_seq"], verified.ends.head.seq);
    assert_eq!(chain["head_hash"], verified.ends.head.hash.as_str());
    assert_eq!((chain["anchor_seq"].as_i64(), chain["anchor_hash"].as_str()), (Some(0), Some(audit::GENESIS)));
    let page: Value =
        server.get("/admin/audit?page_size=1").bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["items"][0]["chain_seq"], verified.ends.head.seq, "{page}");
    assert_eq!(page["items"][0]["chain_hash"], verified.ends.head.hash.as_str());
    // Reading the chain takes the audit permission.
    let (user, _) = server.signed_in("bo").await;
    assert_eq!(server.get("/admin/audit/chain").bearer_auth(&user).send().await.unwrap().status(), 403);

    // A point recorded now is held by the chain later.
    append(&server, 2, server.clock.now_secs()).await;
    settle(&server).await;
    let later = verify(&server.state.db, std::slice::from_ref(&verified.ends.head)).await.unwrap().unwrap();
    assert_eq!(later.known_matched, 1);
    server.stop().await;
}

#[tokio::test]
async fn an_edited_event_is_named() {
    let (server, _) = server_with_events().await;
    let third = at_place(&server, 3).await;
    sql(&server, &format!("UPDATE audit_events SET details = '{{\"forged\":true}}' WHERE id = {}", third.id)).await;
    assert_eq!(broken(&server, &[]).await, Broken::Link(ChainBreak::Altered { id: third.id, seq: 3 }));
    server.stop().await;
}

#[tokio::test]
async fn a_deleted_event_is_named_by_its_place_and_the_event_after_it() {
    let (server, head) = server_with_events().await;
    let (third, fourth) = (at_place(&server, 3).await, at_place(&server, 4).await);
    sql(&server, &format!("DELETE FROM audit_events WHERE id = {}", third.id)).await;
    assert_eq!(broken(&server, &[]).await, Broken::Link(ChainBreak::Missing { seq: 3, next_id: Some(fourth.id) }));
    server.stop().await;

    // The newest event, deleted, leaves the chain short of its head.
    let (server, _) = server_with_events().await;
    sql(&server, &format!("DELETE FROM audit_events WHERE chain_seq = {}", head.seq)).await;
    assert!(matches!(broken(&server, &[]).await, Broken::Truncated { last, .. } if last.seq == head.seq - 1));
    server.stop().await;
}

#[tokio::test]
async fn an_inserted_event_is_named() {
    // Written without a place, as a plain INSERT does.
    let (server, _) = server_with_events().await;
    sql(
        &server,
        "INSERT INTO audit_events (occurred_at, actor, action, outcome, details) \
         VALUES (1, 'cli', 'user.create', 'success', '{}')",
    )
    .await;
    let inserted = audit::list_recent(&server.state.db, 1).await.unwrap().remove(0);
    if audit::links_after_commit(&server.state.db) {
        // PostgreSQL links events after their commit: until the linker runs, an event
        // inserted by hand cannot be told from one a server wrote; it awaits its link
        // like any other, and is then linked (the README says so). The server's own
        // linker may have run already.
        assert!(verified(&server).await.awaiting_link <= 1);
        settle(&server).await;
        let linked = audit::list_recent(&server.state.db, 1).await.unwrap().remove(0);
        assert_eq!((linked.id, linked.chain_seq.is_some()), (inserted.id, true));
        verified(&server).await;
    } else {
        assert_eq!(broken(&server, &[]).await, Broken::Outside { id: inserted.id, seq: None });
        // No maintenance pass links it (that would launder the insertion).
        maintenance::purge(&server.state).await.unwrap();
        settle(&server).await;
        assert_eq!(broken(&server, &[]).await, Broken::Outside { id: inserted.id, seq: None });
    }
    server.stop().await;

    // Linked correctly after the head, without moving it.
    let (server, head) = server_with_events().await;
    let content = Content {
        seq: head.seq + 1,
        occurred_at: 1,
        actor: "cli",
        action: "user.create",
        target: None,
        ip: None,
        outcome: "success",
        details: "{}",
    };
    sql(
        &server,
        &format!(
            "INSERT INTO audit_events (occurred_at, actor, action, outcome, details, chain_seq, chain_hash) \
             VALUES (1, 'cli', 'user.create', 'success', '{{}}', {}, '{}')",
            head.seq + 1,
            content.link(&head.hash)
        ),
    )
    .await;
    let inserted = audit::list_recent(&server.state.db, 1).await.unwrap().remove(0);
    assert_eq!(broken(&server, &[]).await, Broken::Outside { id: inserted.id, seq: Some(head.seq + 1) });
    server.stop().await;
}

/// Someone who can write the database can rebuild the chain after an edit; a head
/// recorded before the edit is what catches it.
#[tokio::test]
async fn a_rebuilt_chain_does_not_hold_a_head_recorded_before() {
    let (server, recorded) = server_with_events().await;
    sql(&server, "UPDATE audit_events SET actor = 'someone else' WHERE chain_seq = 2").await;
    let mut previous = at_place(&server, 1).await.chain_hash.unwrap();
    for seq in 2..=recorded.seq {
        let row = at_place(&server, seq).await;
        let link = audit::row_content(&row, seq).link(&previous);
        sql(&server, &format!("UPDATE audit_events SET chain_hash = '{link}' WHERE id = {}", row.id)).await;
        previous = link;
    }
    sql(&server, &format!("UPDATE audit_chain SET hash = '{previous}' WHERE name = 'head'")).await;
    verified(&server).await;
    let found = Some(previous);
    assert_eq!(broken(&server, std::slice::from_ref(&recorded)).await, Broken::Unknown { known: recorded, found });
    server.stop().await;
}

#[tokio::test]
async fn the_retention_purge_keeps_the_chain_verifiable_and_stops_at_a_broken_link() {
    // No scheduled key rotation: the clock jumps years, and its events would interleave.
    let server = TestServer::start_with(|raw| raw.keys.rotation_interval_days = 0).await;
    let day = 24 * 3600;
    append(&server, 4, server.clock.now_secs()).await;
    settle(&server).await;
    let old = verified(&server).await.ends.head;
    // A year and more later (retention is 365 days): newer events, then one stamped as
    // old placed after them, which waits for them (only a prefix of the chain goes).
    server.clock.advance(400 * day);
    append(&server, 3, server.clock.now_secs()).await;
    append(&server, 1, server.clock.now_secs() - 500 * day).await;
    settle(&server).await;
    // The server's own purge may run first (its loop reads the same clock): what is
    // checked is the state, whoever purged.
    maintenance::purge(&server.state).await.unwrap();
    let after = verified(&server).await;
    // Every event before the newer ones: ours, and any the server's start-up wrote (its
    // first key maintenance may land after `old` was read).
    assert!(after.ends.anchor.seq >= old.seq, "on {}", backend());
    let old = after.ends.anchor.clone();
    let last_deleted_link = at_place_hash(&server, &old).await;
    assert_eq!(last_deleted_link, None, "the anchor is the last event deleted");
    let purged_point = ChainPoint { seq: 1, hash: audit::GENESIS.into() };
    let checked = verify(&server.state.db, &[purged_point]).await.unwrap().unwrap();
    assert_eq!((checked.known_matched, checked.known_purged), (0, 1), "a purged point is reported unchecked");
    assert_eq!(after.events, 4);
    assert_eq!(audit::list_recent(&server.state.db, 100).await.unwrap().len(), 4);

    // Everything is old now; an edit two places after the anchor stops the purge there.
    server.clock.advance(400 * day);
    let edited = at_place(&server, old.seq + 2).await;
    sql(&server, &format!("UPDATE audit_events SET outcome = 'failure' WHERE id = {}", edited.id)).await;
    maintenance::purge(&server.state).await.unwrap();
    let ends = audit::chain_ends(&server.state.db).await.unwrap();
    assert_eq!(ends.anchor.seq, old.seq + 1, "only the event before the edit went");
    assert_eq!(broken(&server, &[]).await, Broken::Link(ChainBreak::Altered { id: edited.id, seq: old.seq + 2 }));
    server.stop().await;
}

/// Concurrent writers each get their own place and none fails: SQLite's queue on its
/// one writer, PostgreSQL's linked after their commit by linkers running at once (as
/// every node runs one), while verification runs beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_each_get_a_place() {
    let server = TestServer::start().await;
    settle(&server).await;
    let before = verified(&server).await.ends.head.seq;
    let now = server.clock.now_secs();
    let writers = (0..32).map(|i| {
        let db = server.state.db.clone();
        tokio::spawn(async move {
            audit::record_alone(&db, NewAuditEvent::success(now, "test", "test.concurrent", &i.to_string())).await
        })
    });
    let linkers = (0..3).map(|_| {
        let state = server.state.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                maintenance::link_audit_events(&state).await.unwrap();
                let verified = verify(&state.db, &[]).await.unwrap();
                assert!(verified.is_ok(), "{verified:?}");
                tokio::task::yield_now().await;
            }
        })
    });
    let linkers: Vec<_> = linkers.collect();
    for writer in futures_util::future::join_all(writers).await {
        writer.unwrap().unwrap();
    }
    for linker in futures_util::future::join_all(linkers).await {
        linker.unwrap();
    }
    settle(&server).await;
    let after = verified(&server).await;
    assert_eq!(after.ends.head.seq, before + 32, "on {}", backend());
    server.stop().await;
}

/// The migration that brought the chain linked the events already stored.
#[tokio::test]
async fn events_written_before_the_chain_existed_are_linked_by_its_migration() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::harness::fresh_database_url(dir.path()).await;
    let config = crate::harness::test_config(dir.path(), url).validate().unwrap();
    let db = latchkey_server::store::connect(&config).await.unwrap();
    latchkey_server::store::migrate_up_first(&db, 7).await.unwrap();
    for (i, detail) in ["{}", "{\"naïve\":\"ünïcode\"}", "{}"].iter().enumerate() {
        let insert = Statement::from_string(
            db.get_database_backend(),
            format!(
                "INSERT INTO audit_events (occurred_at, actor, action, target, outcome, details) \
                 VALUES ({i}, 'cli', 'user.create', 'u{i}', 'success', '{detail}')"
            ),
        );
        db.execute_raw(insert).await.unwrap();
    }
    latchkey_server::store::migrate_up(&db).await.unwrap();
    let verified = verify(&db, &[]).await.unwrap().expect("intact");
    assert_eq!((verified.events, verified.ends.head.seq), (3, 3));
    let first = audit::chain_page(&db, 0, 1).await.unwrap().remove(0);
    assert_eq!(first.target.as_deref(), Some("u0"), "linked in the order of their ids");
}
