//! DPoP (RFC 9449) storage: a proof is accepted once across every node.

use super::harness::{TestServer, backend};

#[tokio::test]
async fn a_proof_is_seen_once_across_nodes_and_purged_after_its_window() {
    let first = TestServer::start().await;
    let second = first.second_node().await;
    let key = latchkey_server::security::sha256_hex("jkt.jti-1");
    let now = first.clock.now_secs();
    let seen = |server: &TestServer| {
        let (db, key) = (server.state.db.clone(), key.clone());
        async move { latchkey_server::store::dpop::first_use(&db, &key, now + 300).await.unwrap() }
    };
    assert!(seen(&first).await, "first use on {}", backend());
    assert!(!seen(&first).await, "the same proof again on the same node");
    assert!(!seen(&second).await, "the same proof on the other node");
    // Both at once on two nodes: exactly one wins.
    let other = latchkey_server::security::sha256_hex("jkt.jti-2");
    let (a, b) = tokio::join!(
        latchkey_server::store::dpop::first_use(&first.state.db, &other, now + 300),
        latchkey_server::store::dpop::first_use(&second.state.db, &other, now + 300),
    );
    assert_eq!(u8::from(a.unwrap()) + u8::from(b.unwrap()), 1);
    first.clock.advance(301);
    let purged =
        latchkey_server::store::purge::expired_dpop_proofs(&first.state.db, first.clock.now_secs(), 100).await.unwrap();
    assert_eq!(purged, 2, "a proof past its window is no longer kept");
    assert!(seen(&first).await, "(and a row gone is a first use again — its iat check refuses it anyway)");
}
