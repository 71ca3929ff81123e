//! The Rust `openidconnect` crate, unmodified, as a relying party: discovery, the code
//! flow with PKCE, state and nonce, id_token validation (signature by JWKS, issuer,
//! audience, nonce, at_hash) and userinfo.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};

use crate::code_flow::{Browser, REDIRECT, Rp, at_client, authorize_url, register_rp, sign_in_at};
use crate::harness::{TestServer, backend, user_with_roles};

/// The library's HTTP client: our reqwest, with redirects off as the library expects.
async fn http(request: openidconnect::HttpRequest) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let response = client.execute(reqwest::Request::try_from(request)?).await?;
    let mut answer = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    Ok(answer.body(response.bytes().await?.to_vec()).expect("a response rebuilt from a valid one"))
}

#[tokio::test]
async fn the_openidconnect_crate_signs_a_user_in() {
    let server = TestServer::start().await;
    let (user_id, _) = user_with_roles(&server, "nia", &["user"]).await;
    let rp: Rp = register_rp(&server, "rust-rp", false, true).await;

    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(server.base.clone()).unwrap(), &http)
        .await
        .unwrap_or_else(|e| panic!("discovery on {}: {e:?}", backend()));
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(rp.client_id.clone()),
        Some(ClientSecret::new(rp.secret.clone().unwrap())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();

    let mut browser = Browser::new();
    let page = authorize_url(&server, &mut browser, url.as_str()).await;
    let params = at_client(sign_in_at(&server, &mut browser, &page, "nia", true).await);
    assert_eq!(&params["state"], state.secret());

    let token = client
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("code exchange: {e:?}"));
    let id_token = token.id_token().expect("an id_token");
    let id_verifier = client.id_token_verifier();
    let claims = id_token.claims(&id_verifier, &nonce).unwrap_or_else(|e| panic!("id_token: {e:?}"));
    assert_eq!(claims.subject().as_str(), user_id);
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("nia"));
    let expected = claims.access_token_hash().expect("at_hash");
    let actual = AccessTokenHash::from_token(
        token.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&id_verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(&actual, expected);

    let info: CoreUserInfoClaims = client
        .user_info(token.access_token().clone(), Some(claims.subject().clone()))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("userinfo: {e:?}"));
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("nia"));
    server.stop().await;
}
