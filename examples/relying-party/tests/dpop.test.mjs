// DPoP (RFC 9449) against a real Latchkey, judged by libraries it did not write: panva's
// openid-client (v6) as the client — `randomDPoPKeyPair`, `getDPoPHandle` and the `DPoP`
// option, which answer the server's `use_dpop_nonce` by retrying once with its nonce —
// and oauth4webapi's `validateJwtAccessToken(…, { requireDPoP: true })` as a resource
// server would use it. Latchkey runs as it ships, nonces required. Every request the
// library makes is recorded (its `customFetch`), so the nonce dance is seen, not assumed.
// The code flow signs in through the hosted page in Debian's Chromium, as
// relying-party.test.mjs does; the other tests need no browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createHash, randomUUID } from "node:crypto";
import * as client from "openid-client";
import * as oauth from "oauth4webapi";
import { SignJWT, calculateJwkThumbprint, decodeJwt, decodeProtectedHeader } from "jose";
import { Latchkey, freePort, launchChromium } from "./latchkey.mjs";

const ALGS = ["ES256", "EdDSA", "Ed25519", "RS256", "PS256"];
/// The audience of Latchkey's access tokens when nothing else is configured.
const AUDIENCE = "latchkey";
const admin = { username: "admin", password: "the admin's long password", roles: ["admin"] };
const dora = { username: "dora", password: "dora's long password", email: "dora@example.com" };

let latchkey, adminToken, callback, browser;
const secrets = {};

before(async () => {
  latchkey = await new Latchkey().init();
  latchkey.createUser(admin);
  latchkey.createUser(dora);
  // Where the browser lands after sign-in: a loopback page that only remembers the URL.
  const callbackPort = await freePort();
  const landed = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${callbackPort}`);
    if (url.pathname !== "/callback") return res.writeHead(404).end(); // the browser's /favicon.ico
    landed.push(url);
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end("<!DOCTYPE html><title>back</title><p>back");
  });
  await new Promise((resolve) => server.listen(callbackPort, "127.0.0.1", resolve));
  callback = { server, landed, uri: `http://127.0.0.1:${callbackPort}/callback` };
  // First-party code-flow clients (no consent page): a public one and a confidential one.
  latchkey.createClient({ clientId: "dpop-public", name: "DPoP Public", firstParty: true, redirectUris: [callback.uri] });
  secrets["dpop-confidential"] = latchkey.createClient({
    clientId: "dpop-confidential",
    name: "DPoP Confidential",
    confidential: true,
    firstParty: true,
    redirectUris: [callback.uri],
  });
  await latchkey.start();
  adminToken = await latchkey.adminToken(admin);
  // Services (client_credentials), made through the admin API.
  for (const clientId of ["dpop-service", "dpop-strict"]) {
    const made = await latchkey.request("POST", "/admin/clients", {
      token: adminToken,
      body: { client_id: clientId, name: clientId, confidential: true, grant_types: ["client_credentials"], first_party: true },
    });
    assert.equal(made.status, 201, `POST /admin/clients ${clientId}: ${made.text}`);
    secrets[clientId] = made.body.client_secret;
  }
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => (callback ? callback.server.close(resolve) : resolve()));
  await latchkey?.stop();
});

/// openid-client's Configuration for one of our clients, every request it makes recorded
/// in `config.calls`: path, the proof's claims and alg (if one went), the status, and the
/// DPoP-Nonce and WWW-Authenticate that came back.
async function discover(clientId) {
  const secret = secrets[clientId];
  const auth = secret ? client.ClientSecretBasic(secret) : client.None();
  const config = await client.discovery(new URL(latchkey.issuer), clientId, secret ? { client_secret: secret } : {}, auth, {
    execute: [client.allowInsecureRequests], // plain http on loopback, for this test only
  });
  config.calls = [];
  config[client.customFetch] = async (url, options) => {
    const response = await fetch(url, options);
    const proof = new Headers(options.headers).get("dpop");
    config.calls.push({
      path: new URL(url).pathname,
      proof: proof ? decodeJwt(proof) : null,
      alg: proof ? decodeProtectedHeader(proof).alg : null,
      status: response.status,
      nonce: response.headers.get("dpop-nonce"),
      challenge: response.headers.get("www-authenticate"),
      body: await response.clone().text(),
    });
    return response;
  };
  return config;
}

/// The RFC 7638 thumbprint of a key pair's public key, as jose computes it.
async function thumbprint(keyPair) {
  return calculateJwkThumbprint(await crypto.subtle.exportKey("jwk", keyPair.publicKey));
}

const bodyOf = (call) => {
  try {
    return JSON.parse(call.body);
  } catch {
    return call.body;
  }
};

/// The calls at `path`, from the library's first attempt on: a proof without a nonce,
/// refused with `use_dpop_nonce` and a DPoP-Nonce; then the same request again with that
/// nonce in its proof, accepted. `status` is what the refusal must be (400 at the token
/// endpoint, 401 at a protected resource). Returns the accepted call.
function assertNonceDance(config, path, status) {
  const calls = config.calls.filter((c) => c.path === path);
  const seen = JSON.stringify(calls.map(({ body, ...c }) => ({ ...c, body: body.slice(0, 200) })), null, 2);
  assert.equal(calls.length, 2, `two requests to ${path}, the second with the nonce:\n${seen}`);
  const [first, second] = calls;
  assert.ok(first.proof && second.proof, `both carried a proof:\n${seen}`);
  assert.equal(first.proof.nonce, undefined, "the first proof had no nonce to give");
  assert.equal(first.status, status, `the first is refused:\n${seen}`);
  if (status === 400) assert.equal(bodyOf(first).error, "use_dpop_nonce", seen);
  else assert.match(first.challenge ?? "", /^DPoP\b.*error="use_dpop_nonce"/, seen);
  assert.ok(first.nonce, `the refusal carries a DPoP-Nonce:\n${seen}`);
  assert.equal(second.proof.nonce, first.nonce, "the retry's proof carries that nonce");
  assert.notEqual(second.proof.jti, first.proof.jti, "a new proof, not the same one again");
  assert.equal(second.status, 200, `the retry is accepted:\n${seen}`);
  return second;
}

/// A token response the library accepted for a proof by `keyPair`: type DPoP (RFC 9449
/// §5, as the server sent it, and as the library read it) and an access token bound to
/// that key by cnf.jkt (§6.1).
async function assertBound(config, tokens, keyPair) {
  const sent = config.calls.filter((c) => c.path === "/oauth2/token").at(-1);
  assert.equal(bodyOf(sent).token_type, "DPoP", "the server names the token type DPoP");
  assert.equal(tokens.token_type, "dpop", "the library took it as a DPoP token");
  const claims = decodeJwt(tokens.access_token);
  assert.equal(decodeProtectedHeader(tokens.access_token).typ, "at+jwt");
  assert.deepEqual(claims.cnf, { jkt: await thumbprint(keyPair) }, "cnf.jkt is the proof key's thumbprint");
  return claims;
}

/// The client's error for a refused token request: `error` and the HTTP status.
const refused = (error, status = 400) => (err) => {
  assert.ok(err instanceof client.ResponseBodyError, `a ResponseBodyError, not ${err?.name}: ${err?.message}`);
  assert.deepEqual([err.error, err.status], [error, status], `${err.error}: ${err.error_description}`);
  return true;
};

test("client_credentials with DPoP: discovery names the algs, the nonce dance, token_type DPoP, cnf.jkt", async () => {
  const config = await discover("dpop-service");
  assert.deepEqual(config.serverMetadata().dpop_signing_alg_values_supported, ALGS);
  const keyPair = await client.randomDPoPKeyPair("ES256");
  const DPoP = client.getDPoPHandle(config, keyPair);
  const tokens = await client.clientCredentialsGrant(config, {}, { DPoP });
  const accepted = assertNonceDance(config, "/oauth2/token", 400);
  assert.equal(accepted.proof.htu, `${latchkey.issuer}/oauth2/token`);
  assert.equal(accepted.proof.htm, "POST");
  assert.ok(accepted.nonce, "a response to a request with a proof carries a DPoP-Nonce too");
  const claims = await assertBound(config, tokens, keyPair);
  assert.equal(claims.sub, "dpop-service");
  assert.equal(claims.client_id, "dpop-service");

  // The handle now holds the nonce: the next grant needs no second round trip.
  config.calls.length = 0;
  await assertBound(config, await client.clientCredentialsGrant(config, {}, { DPoP }), keyPair);
  assert.deepEqual(config.calls.map((c) => c.status), [200], "the kept nonce is accepted at once");
});

test("a client with dpop_bound_access_tokens (PATCH /admin/clients) refuses a token request without a proof", async () => {
  const config = await discover("dpop-strict");
  const unbound = await client.clientCredentialsGrant(config);
  assert.equal(unbound.token_type, "bearer", "until then a request without a proof gets a Bearer token");
  assert.equal(decodeJwt(unbound.access_token).cnf, undefined, "which is bound to nothing");

  const patched = await latchkey.request("PATCH", "/admin/clients/dpop-strict", {
    token: adminToken,
    body: { dpop_bound_access_tokens: true },
  });
  assert.ok(patched.status >= 200 && patched.status < 300, `PATCH /admin/clients/dpop-strict: ${patched.status} ${patched.text}`);
  await assert.rejects(client.clientCredentialsGrant(config), refused("invalid_dpop_proof"));

  const keyPair = await client.randomDPoPKeyPair("ES256");
  const tokens = await client.clientCredentialsGrant(config, {}, { DPoP: client.getDPoPHandle(config, keyPair) });
  await assertBound(config, tokens, keyPair);
});

/// A DPoP proof made by hand with jose (RFC 9449 §4.2), as a client sends one to a
/// resource server: ES256, the public key in `jwk`, `ath` the hash of the access token.
async function proofFor(keyPair, htm, htu, accessToken) {
  const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", keyPair.publicKey);
  return new SignJWT({ htm, htu, ath: createHash("sha256").update(accessToken).digest("base64url") })
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: { kty, crv, x, y } })
    .setIssuedAt()
    .setJti(randomUUID())
    .sign(keyPair.privateKey);
}

test("oauth4webapi's validateJwtAccessToken (requireDPoP) as a resource server: a proof for its URL, not Bearer or another URL or key", async () => {
  const config = await discover("dpop-service");
  const keyPair = await client.randomDPoPKeyPair("ES256");
  const DPoP = client.getDPoPHandle(config, keyPair);
  const { access_token: token } = await client.clientCredentialsGrant(config, {}, { DPoP });
  const as = config.serverMetadata(); // issuer and jwks_uri: all a resource server needs
  const resource = "http://127.0.0.1:8443/reports";
  const request = (scheme, proof) =>
    new Request(`${resource}?year=2025`, { headers: { authorization: `${scheme} ${token}`, ...(proof ? { dpop: proof } : {}) } });
  const validate = (req) =>
    oauth.validateJwtAccessToken(as, req, AUDIENCE, { requireDPoP: true, [oauth.allowInsecureRequests]: true });

  const claims = await validate(request("DPoP", await proofFor(keyPair, "GET", resource, token)));
  assert.equal(claims.iss, latchkey.issuer);
  assert.equal(claims.client_id, "dpop-service");
  assert.deepEqual(claims.cnf, { jkt: await thumbprint(keyPair) });

  const fails = (pattern) => (err) => {
    assert.ok(err instanceof oauth.OperationProcessingError, `${err?.name}: ${err?.message}`);
    assert.match(err.message, pattern);
    return true;
  };
  await assert.rejects(validate(request("Bearer")), fails(/no DPoP HTTP Header/), "the bound token as a bearer token");
  await assert.rejects(
    validate(request("Bearer", await proofFor(keyPair, "GET", resource, token))),
    fails(/scheme is not DPoP/),
    "Bearer even with a proof beside it",
  );
  await assert.rejects(
    oauth.validateJwtAccessToken(as, request("Bearer"), AUDIENCE, { [oauth.allowInsecureRequests]: true }),
    fails(/DPoP/),
    "without requireDPoP, the token's cnf.jkt alone demands a proof",
  );
  await assert.rejects(
    validate(request("DPoP", await proofFor(keyPair, "GET", "http://127.0.0.1:8443/admin", token))),
    fails(/htu mismatch/),
    "a proof for another URL",
  );
  await assert.rejects(validate(request("DPoP", await proofFor(keyPair, "POST", resource, token))), fails(/htm mismatch/));
  await assert.rejects(
    validate(request("DPoP", await proofFor(await client.randomDPoPKeyPair("ES256"), "GET", resource, token))),
    fails(/confirmation mismatch/),
    "a proof by another key",
  );
});

/// Debian's Chromium, started on first use, as relying-party.test.mjs starts it.
async function newContext() {
  browser ??= await launchChromium();
  const context = await browser.newContext();
  context.setDefaultTimeout(10_000);
  return context;
}

/// The code flow's front channel in `page`: PKCE S256, state and nonce; the hosted
/// sign-in when `user` is given (else the browser session signs in silently, as a
/// first-party client asks no consent); returns the callback URL the browser landed on
/// and the checks for `authorizationCodeGrant`.
async function authorize(config, page, user) {
  const checks = {
    pkceCodeVerifier: client.randomPKCECodeVerifier(),
    expectedState: client.randomState(),
    expectedNonce: client.randomNonce(),
    idTokenExpected: true,
  };
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: callback.uri,
    scope: "openid profile email",
    code_challenge: await client.calculatePKCECodeChallenge(checks.pkceCodeVerifier),
    code_challenge_method: "S256",
    state: checks.expectedState,
    nonce: checks.expectedNonce,
  });
  const landed = callback.landed.length;
  await page.goto(url.href);
  if (user) {
    await page.waitForURL((u) => u.origin === latchkey.issuer && u.pathname === "/ui/signin");
    await page.getByLabel("Username", { exact: true }).fill(user.username);
    await page.getByLabel("Password", { exact: true }).fill(user.password);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
  }
  await page.waitForURL((u) => u.href.startsWith(`${callback.uri}?`)).catch(() => {
    throw new Error(`never came back to ${callback.uri}; at ${page.url()}`);
  });
  assert.equal(callback.landed.length, landed + 1, "the callback was loaded once");
  return { callbackUrl: callback.landed.at(-1), checks };
}

test("code flow with DPoP, public client: code and refresh bound to its key; userinfo with a proof, not as Bearer", async () => {
  const context = await newContext();
  const page = await context.newPage();
  const config = await discover("dpop-public");
  const keyPair = await client.randomDPoPKeyPair("ES256");
  const DPoP = client.getDPoPHandle(config, keyPair);
  const { callbackUrl, checks } = await authorize(config, page, dora);
  const tokens = await client.authorizationCodeGrant(config, callbackUrl, checks, undefined, { DPoP });
  assertNonceDance(config, "/oauth2/token", 400);
  const claims = await assertBound(config, tokens, keyPair);
  const sub = tokens.claims().sub;
  assert.equal(claims.sub, sub);
  assert.equal(typeof tokens.refresh_token, "string", "a refresh token for a client with the refresh_token grant");

  // userinfo with a handle of the same key that has no nonce yet: refused with
  // `DPoP error="use_dpop_nonce"`, then answered (§9).
  config.calls.length = 0;
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, sub, { DPoP: client.getDPoPHandle(config, keyPair) });
  assert.equal(userinfo.preferred_username, "dora");
  const answered = assertNonceDance(config, "/oauth2/userinfo", 401);
  assert.equal(answered.proof.ath, createHash("sha256").update(tokens.access_token).digest("base64url"));
  assert.equal(answered.proof.htu, `${latchkey.issuer}/oauth2/userinfo`);

  // The same token as a bearer token: 401 invalid_token, the challenge naming both schemes.
  await assert.rejects(client.fetchUserInfo(config, tokens.access_token, sub), (err) => {
    assert.ok(err instanceof client.WWWAuthenticateChallengeError, `${err?.name}: ${err?.message}`);
    assert.equal(err.status, 401);
    const bearer = err.cause.find((c) => c.scheme === "bearer");
    const dpop = err.cause.find((c) => c.scheme === "dpop");
    assert.equal(bearer?.parameters.error, "invalid_token", JSON.stringify(err.cause));
    assert.equal(dpop?.parameters.algs, ALGS.join(" "), JSON.stringify(err.cause));
    return true;
  });

  // Refresh with the same handle: the new access token is bound to the same key.
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP });
  await assertBound(config, refreshed, keyPair);
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token, "the refresh token rotated");
  // The public client's refresh token is bound to that key: another key's proof, or
  // none, is invalid_grant (the library did the nonce dance for the new key first).
  const otherKey = client.getDPoPHandle(config, await client.randomDPoPKeyPair("ES256"));
  await assert.rejects(
    client.refreshTokenGrant(config, refreshed.refresh_token, undefined, { DPoP: otherKey }),
    refused("invalid_grant"),
  );
  await assert.rejects(client.refreshTokenGrant(config, refreshed.refresh_token), refused("invalid_grant"));
  await context.close();
});

test("code flow with DPoP, confidential client: a refresh with another key (Ed25519) binds the new access token to it", async () => {
  const context = await newContext();
  const page = await context.newPage();
  const config = await discover("dpop-confidential");
  const first = await client.randomDPoPKeyPair("ES256");
  const { callbackUrl, checks } = await authorize(config, page, dora);
  const tokens = await client.authorizationCodeGrant(config, callbackUrl, checks, undefined, {
    DPoP: client.getDPoPHandle(config, first),
  });
  await assertBound(config, tokens, first);

  // oauth4webapi names an Ed25519 proof's alg `Ed25519` (RFC 9864's fully specified
  // name), which Latchkey takes beside RFC 8037's `EdDSA`: the library as it is.
  const second = await client.randomDPoPKeyPair("EdDSA");
  const DPoP = client.getDPoPHandle(config, second);
  config.calls.length = 0;
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP });
  const claims = await assertBound(config, refreshed, second);
  assert.notEqual(claims.cnf.jkt, await thumbprint(first));
  const userinfo = await client.fetchUserInfo(config, refreshed.access_token, claims.sub, { DPoP });
  assert.equal(userinfo.preferred_username, "dora", "an Ed25519 proof is taken at userinfo too");
  assert.deepEqual([...new Set(config.calls.map((c) => c.alg))], ["Ed25519"], "every proof of that key said Ed25519");
  await context.close();
});
