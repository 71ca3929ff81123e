// The reference SPA's cookie flow with DPoP (RFC 9449, src/dpop.ts), in Debian's Chromium
// driven by playwright-core, against the real Latchkey server on another origin. The
// server runs with a 2-second access-token lifetime and its default of requiring its own
// nonce in every proof. The app is served as http://localhost:S and Latchkey answers as
// http://localhost:P (same site, another origin: CORS with credentials for real; and a
// domain, which WebAuthn needs for the passkey test).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, createHmac, randomUUID, webcrypto } from "node:crypto";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, serveDist, eventually, waitReady, launchChromium } from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const repo = join(root, "..", "..");
const serverBin = process.env.SERVER_BIN ?? join(repo, "target", "debug", "latchkey");
const PASSWORD = "dpop browser test password";
/// Where src/dpop.ts keeps its key pair (KEY_STORE there).
const KEY_STORE = { database: "latchkey-dpop", store: "keys", entry: "dpop-key" };
const { subtle } = webcrypto;

let server, api, spa, browser, context;

async function register(username) {
  const reg = await fetch(`${api}/auth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password: PASSWORD }),
  });
  assert.equal(reg.status, 201);
}

before(async () => {
  assert.ok(existsSync(serverBin), `build the server first (${serverBin})`);
  assert.ok(existsSync(join(root, "dist", "index.html")), "build the app first (npm run build)");
  const [apiPort, spaPort] = [await freePort(), await freePort()];
  api = `http://localhost:${apiPort}`;
  spa = `http://localhost:${spaPort}`;
  const dir = mkdtempSync(join(tmpdir(), "latchkey-spa-dpop-"));
  const unlimited = "{per_minute=1000000,burst=100000}";
  server = spawn(serverBin, ["serve"], {
    env: {
      ...process.env,
      LATCHKEY_LISTEN: `127.0.0.1:${apiPort}`,
      LATCHKEY_PUBLIC_URL: api,
      LATCHKEY_DATABASE_URL: `sqlite://${join(dir, "db.sqlite")}?mode=rwc`,
      LATCHKEY_MASTER_KEY_FILE: join(dir, "master.key"),
      LATCHKEY_CORS_ALLOWED_ORIGINS: `["${spa}"]`,
      LATCHKEY_PASSKEYS__EXTRA_ORIGINS: `["${spa}"]`,
      LATCHKEY_TOKENS__ACCESS_TOKEN_TTL_SECS: "2",
      LATCHKEY_TOKENS__CLOCK_SKEW_SECS: "0",
      LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB: "4096",
      LATCHKEY_PASSWORDS__ARGON2_ITERATIONS: "1",
      LATCHKEY_RATE_LIMITS__LOGIN: unlimited,
      LATCHKEY_RATE_LIMITS__REFRESH: unlimited,
      LATCHKEY_RATE_LIMITS__USERNAME: unlimited,
      RUST_LOG: "warn",
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  await waitReady(api);
  await register("dpop-user");
  spa = { url: spa, http: await serveDist(spaPort) };
  browser = await launchChromium();
  context = await browser.newContext();
});

after(async () => {
  await browser?.close();
  spa?.http?.close();
  server?.kill();
});

const appUrl = () => `${spa.url}/?api=${encodeURIComponent(api)}`;
const isPost = (path) => (r) => r.url() === `${api}${path}` && r.request().method() === "POST";
const isGet = (path) => (r) => r.url() === `${api}${path}` && r.request().method() === "GET";

// --- JOSE, as much as the tests need -------------------------------------------------

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const decodePart = (part) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
/// A compact JWS's header and claims (its signature is the server's business).
const decodeJws = (jws) => {
  const [header, claims] = jws.split(".");
  return { header: decodePart(header), claims: decodePart(claims) };
};
/// RFC 7638 thumbprint of an EC public JWK.
const thumbprint = ({ crv, kty, x, y }) =>
  createHash("sha256").update(JSON.stringify({ crv, kty, x, y })).digest("base64url");
const ath = (token) => createHash("sha256").update(token).digest("base64url");

/// A DPoP key pair of Node's, not the browser's: an attacker's.
async function nodeKey() {
  const keys = await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
  const { kty, crv, x, y } = await subtle.exportKey("jwk", keys.publicKey);
  return { keys, jwk: { kty, crv, x, y }, nonce: undefined };
}

async function nodeProof(key, method, url, accessToken) {
  const claims = { jti: randomUUID(), htm: method, htu: url, iat: Math.floor(Date.now() / 1000) };
  if (key.nonce) claims.nonce = key.nonce;
  if (accessToken) claims.ath = ath(accessToken);
  const header = { typ: "dpop+jwt", alg: "ES256", jwk: key.jwk };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key.keys.privateKey, Buffer.from(input));
  return `${input}.${b64url(signature)}`;
}

/// A request from Node with a proof by `key`, made again once with the server's nonce
/// when it asks for one: the status and parsed body of the last answer.
async function fetchWithProof(key, method, url, { headers = {}, accessToken } = {}) {
  for (let attempt = 0; ; attempt++) {
    const proof = await nodeProof(key, method, url, accessToken);
    const r = await fetch(url, { method, headers: { ...headers, DPoP: proof } });
    const body = await r.json().catch(() => null);
    key.nonce = r.headers.get("dpop-nonce") ?? key.nonce;
    const challenge = r.headers.get("www-authenticate");
    const wantsNonce = body?.error === "use_dpop_nonce" || /use_dpop_nonce/.test(challenge ?? "");
    if (!wantsNonce || attempt === 1) return { status: r.status, body, challenge };
  }
}

/// What the page's IndexedDB holds for src/dpop.ts: the key pair's flags, its public JWK,
/// and what exporting the private key gives. Call it once the app has made its key (an
/// open of a missing database would make an empty one under the app's version).
const pageKey = (page) =>
  page.evaluate(async ({ database, store, entry }) => {
    const db = await new Promise((resolve, reject) => {
      const open = indexedDB.open(database);
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
    const keys = await new Promise((resolve, reject) => {
      const get = db.transaction(store).objectStore(store).get(entry);
      get.onsuccess = () => resolve(get.result);
      get.onerror = () => reject(get.error);
    });
    db.close();
    const tryExport = async (format) => {
      try {
        await crypto.subtle.exportKey(format, keys.privateKey);
        return "exported";
      } catch (e) {
        return e.name;
      }
    };
    return {
      privateType: keys.privateKey.type,
      extractable: keys.privateKey.extractable,
      algorithm: keys.privateKey.algorithm,
      usages: keys.privateKey.usages,
      jwkExport: await tryExport("jwk"),
      pkcs8Export: await tryExport("pkcs8"),
      publicJwk: await crypto.subtle.exportKey("jwk", keys.publicKey),
    };
  }, KEY_STORE);

/// Checks an answer of a DPoP sign-in or refresh and its request: the proof is ES256
/// for that endpoint by the page's key, and the access token is bound to that key.
async function assertBound(response, jkt) {
  assert.equal(response.status(), 200);
  const body = await response.json();
  assert.equal(body.token_type, "DPoP", JSON.stringify(body));
  const proof = decodeJws(await response.request().headerValue("dpop"));
  assert.equal(proof.header.typ, "dpop+jwt");
  assert.equal(proof.header.alg, "ES256");
  assert.deepEqual(Object.keys(proof.header.jwk).sort(), ["crv", "kty", "x", "y"], "the public key only");
  assert.equal(proof.claims.htm, "POST");
  assert.equal(proof.claims.htu, response.url());
  assert.equal(proof.claims.ath, undefined, "no access token, no ath");
  assert.equal(thumbprint(proof.header.jwk), jkt, "signed by the page's key");
  const claims = decodePart(body.access_token.split(".")[1]);
  assert.equal(claims.cnf?.jkt, jkt, "the access token is bound to the page's key");
  return { token: body.access_token, claims };
}

async function logIn(page, username = "dpop-user") {
  await page.fill("#username", username);
  await page.fill("#password", PASSWORD);
  await page.click("#login-button");
}

/// Closing a tab aborts its requests; let the app go quiet first, as a user would.
async function settleAndClose(page) {
  await page.waitForLoadState("networkidle");
  await page.close();
}

let jkt; // the thumbprint of the shared context's key, from the first test on

test("login with DPoP: the token is DPoP-bound to the page's key, and /auth/me answers it with a proof", async () => {
  const page = await context.newPage();
  await page.goto(appUrl());
  await page.waitForSelector("#login-form:not(.hidden)");
  const login = page.waitForResponse((r) => isPost("/auth/login")(r) && r.status() === 200);
  const me = page.waitForResponse((r) => isGet("/auth/me")(r) && r.status() === 200);
  await logIn(page);
  const answered = await login;
  jkt = thumbprint((await pageKey(page)).publicJwk);
  const { token } = await assertBound(answered, jkt); // signed by the key kept in IndexedDB
  // The token alone is worth nothing: not as a Bearer token, not with another key's
  // proof. (Tried at once: it lives 2 seconds.)
  const asBearer = await fetch(`${api}/auth/me`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(asBearer.status, 401, "a DPoP-bound token is refused as Bearer");
  const stolen = await fetchWithProof(await nodeKey(), "GET", `${api}/auth/me`, {
    headers: { authorization: `DPoP ${token}` },
    accessToken: token,
  });
  assert.equal(stolen.status, 401, `another key's proof is refused: ${JSON.stringify(stolen)}`);
  assert.doesNotMatch(stolen.challenge ?? "", /use_dpop_nonce/);

  await page.waitForSelector("#signed-in:not(.hidden)");
  assert.equal(await page.textContent("#who"), "dpop-user");

  const call = (await me).request();
  assert.equal(await call.headerValue("authorization"), `DPoP ${token}`);
  const proof = decodeJws(await call.headerValue("dpop"));
  assert.equal(proof.claims.htm, "GET");
  assert.equal(proof.claims.htu, `${api}/auth/me`);
  assert.equal(proof.claims.ath, ath(token), "ath is the token's hash");
  assert.equal(thumbprint(proof.header.jwk), jkt);
  assert.ok(proof.claims.nonce, "the proof carries the server's nonce");
  await settleAndClose(page);
});

test("the key survives a reload, and silent refresh past access-token expiry works with DPoP", async () => {
  const page = await context.newPage();
  const startup = page.waitForResponse((r) => isPost("/auth/refresh")(r) && r.status() === 200);
  await page.goto(appUrl());
  const { claims } = await assertBound(await startup, jkt); // the same key as the login's
  await page.waitForSelector("#signed-in:not(.hidden)");
  await page.waitForLoadState("networkidle");
  // A bound token cannot be tried from Node without the page's key; the server and this
  // test share the machine's clock (and the server allows no skew), so wait out `exp`.
  await eventually("the 2-second access token to expire", 10_000, async () => Date.now() / 1000 >= claims.exp + 1);
  // Every response awaited below is subscribed to before the click that causes it.
  const refreshed = page.waitForResponse((r) => isPost("/auth/refresh")(r) && r.status() === 200);
  const rejected = page.waitForResponse((r) => isGet("/auth/sessions")(r) && r.status() === 401);
  const retried = page.waitForResponse((r) => isGet("/auth/sessions")(r) && r.status() === 200);
  await page.click("#call-api");
  const refusal = await rejected;
  const challenge = (await refusal.headerValue("www-authenticate")) ?? "";
  assert.match(challenge, /^DPoP .*invalid_token/, "the expired token is refused");
  const { token } = await assertBound(await refreshed, jkt);
  const retry = (await retried).request();
  assert.equal(await retry.headerValue("authorization"), `DPoP ${token}`, "the call is retried with the new token");
  assert.equal(decodeJws(await retry.headerValue("dpop")).claims.ath, ath(token));
  assert.ok(await page.isVisible("#signed-in"), "still signed in");
  await settleAndClose(page);
});

test("the refresh cookie copied out of the browser is refused without the browser's key; the browser keeps refreshing", async () => {
  const page = await context.newPage();
  await page.goto(appUrl());
  await page.waitForSelector("#signed-in:not(.hidden)");
  // The app is idle (it refreshes only when a call is refused), so the cookie copied now
  // is the current one, not one it has just rotated.
  await page.waitForLoadState("networkidle");
  const [cookie] = (await context.cookies(`${api}/auth/refresh`)).filter((c) => c.name === "lk_refresh");
  assert.ok(cookie?.httpOnly, "the refresh cookie is there (and HttpOnly)");
  const headers = { cookie: `lk_refresh=${cookie.value}`, "x-requested-with": "latchkey" };

  const bare = await fetch(`${api}/auth/refresh`, { method: "POST", headers });
  const bareBody = await bare.json().catch(() => null);
  assert.equal(bare.status, 401, `no proof: ${JSON.stringify(bareBody)}`);
  assert.equal(bareBody?.error, "invalid_grant");

  const other = await fetchWithProof(await nodeKey(), "POST", `${api}/auth/refresh`, { headers });
  assert.equal(other.status, 401, `another key's proof: ${JSON.stringify(other)}`);
  assert.equal(other.body?.error, "invalid_grant");

  // Nothing was revoked: the browser, with its key, goes on.
  for (let round = 0; round < 2; round++) {
    const refreshed = page.waitForResponse((r) => isPost("/auth/refresh")(r) && r.status() !== 400);
    await page.click("#refresh-now");
    await assertBound(await refreshed, jkt);
    await page.waitForSelector("#signed-in:not(.hidden)");
    await page.waitForLoadState("networkidle");
  }
  const [rotated] = (await context.cookies(`${api}/auth/refresh`)).filter((c) => c.name === "lk_refresh");
  assert.notEqual(rotated.value, cookie.value, "the browser's refreshes rotated the cookie");
  const sessions = page.waitForResponse((r) => isGet("/auth/sessions")(r) && r.status() === 200);
  await page.click("#call-api");
  await sessions;
  assert.ok(await page.isVisible("#signed-in"), "still signed in");
  await settleAndClose(page);
});

test("the private key in IndexedDB cannot be exported, and no token is in web storage", async () => {
  const page = await context.newPage();
  await page.goto(appUrl());
  await page.waitForSelector("#signed-in:not(.hidden)");
  const key = await pageKey(page);
  assert.equal(key.privateType, "private");
  assert.equal(key.extractable, false);
  assert.deepEqual(key.algorithm, { name: "ECDSA", namedCurve: "P-256" });
  assert.deepEqual(key.usages, ["sign"]);
  assert.equal(key.jwkExport, "InvalidAccessError", "exporting the private key as a JWK throws");
  assert.equal(key.pkcs8Export, "InvalidAccessError", "exporting it as PKCS #8 throws");
  assert.equal(thumbprint(key.publicJwk), jkt, "the same key since the first login");
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  assert.ok(!stored.includes("eyJ"), "no token in web storage");
  await settleAndClose(page);
});

test("the nonce dance: a login without the server's nonce is asked for it, and so is an API call with a stale one", async () => {
  const fresh = await browser.newContext(); // no cookie, no key, no nonce yet
  try {
    const page = await fresh.newPage();
    // The start-up refresh never reaches the server: the page has no nonce at login.
    await page.route("**/auth/refresh", (route) => route.abort("connectionrefused"));
    await page.goto(appUrl());
    await page.waitForSelector("#login-form:not(.hidden)");
    assert.match(await page.textContent("#error"), /Cannot reach the server/);
    await page.unroute("**/auth/refresh");
    // The login's answer hands the page a nonce the server never issued (as an expired one
    // would be): the next API call is refused for it, and made again with a fresh one.
    // The proof without a nonce goes to the server untouched; the one with a nonce is
    // fetched by the test (the context's cookie jar takes its cookie) and answered to the
    // page with the nonce swapped, and with the CORS headers a fulfilled cross-origin
    // answer needs.
    await page.route("**/auth/login", async (route) => {
      const sent = await route.request().headerValue("dpop");
      if (!sent || !decodeJws(sent).claims.nonce) return route.continue();
      const response = await route.fetch();
      const headers = {
        ...response.headers(),
        "access-control-allow-origin": spa.url,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "DPoP-Nonce, WWW-Authenticate",
        "dpop-nonce": "stale-nonce",
      };
      for (const name of ["set-cookie", "content-encoding", "content-length"]) delete headers[name];
      await route.fulfill({ response, headers });
    });
    const seen = [];
    page.on("response", (r) => {
      if (isPost("/auth/login")(r) || isGet("/auth/me")(r)) seen.push(r);
    });
    await logIn(page);
    await page.waitForSelector("#signed-in:not(.hidden)");
    const nonceOf = async (r) => decodeJws(await r.request().headerValue("dpop")).claims.nonce;

    const logins = seen.filter(isPost("/auth/login"));
    assert.deepEqual(logins.map((r) => r.status()), [400, 200]);
    assert.equal(await nonceOf(logins[0]), undefined, "the first proof has no nonce");
    assert.equal((await logins[0].json()).error, "use_dpop_nonce");
    const issued = await logins[0].headerValue("dpop-nonce");
    assert.ok(issued, "the 400 carries a DPoP-Nonce");
    assert.equal(await nonceOf(logins[1]), issued, "the login is made again with it");
    assert.equal((await logins[1].json()).token_type, "DPoP");

    const mes = seen.filter(isGet("/auth/me"));
    assert.deepEqual(mes.map((r) => r.status()), [401, 200]);
    assert.equal(await nonceOf(mes[0]), "stale-nonce");
    assert.match((await mes[0].headerValue("www-authenticate")) ?? "", /^DPoP .*error="use_dpop_nonce"/);
    const fresher = await mes[0].headerValue("dpop-nonce");
    assert.ok(fresher, "the 401 carries a DPoP-Nonce");
    assert.equal(await nonceOf(mes[1]), fresher, "the call is made again with it");
    assert.equal(await page.textContent("#who"), "dpop-user");
    await page.unroute("**/auth/login");
    await settleAndClose(page);
  } finally {
    await fresh.close();
  }
});

// --- TOTP (RFC 6238) for the second-factor test ---------------------------------------

function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of text.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  return Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
}

/// The code of the 30-second (or `period`) step `step` for an otpauth:// URI.
function totpCode(uri, step) {
  const params = new URL(uri).searchParams;
  const digits = Number(params.get("digits") ?? 6);
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const algorithm = (params.get("algorithm") ?? "SHA1").toLowerCase();
  const mac = createHmac(algorithm, base32(params.get("secret"))).update(counter).digest();
  const at = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(at) & 0x7fffffff) % 10 ** digits;
  return String(value).padStart(digits, "0");
}

test("login with a second factor: /auth/login/mfa binds the session to the page's key", async () => {
  await register("dpop-mfa-user");
  const json = { "content-type": "application/json", "x-requested-with": "latchkey" };
  // Enrolment from Node, with plain Bearer tokens (each call logs in again: they live 2 s).
  const asUser = async (path, body) => {
    const plain = await fetch(`${api}/auth/login`, {
      method: "POST",
      headers: json,
      body: JSON.stringify({ username: "dpop-mfa-user", password: PASSWORD }),
    });
    const { access_token: bearer } = await plain.json();
    const headers = { ...json, authorization: `Bearer ${bearer}` };
    const r = await fetch(`${api}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
    assert.ok(r.ok, `${path}: ${r.status} ${await r.clone().text()}`);
    return r.json();
  };
  const { otpauth_uri: uri } = await asUser("/auth/totp/setup", { password: PASSWORD });
  const period = Number(new URL(uri).searchParams.get("period") ?? 30);
  const step = () => Math.floor(Date.now() / 1000 / period);
  // Each step is accepted once and only steps newer than the last: the enrolment takes
  // the previous step's code, the sign-in the current one.
  const confirmed = step() - 1;
  await asUser("/auth/totp/confirm", { code: totpCode(uri, confirmed) });

  const local = await browser.newContext();
  try {
    const page = await local.newPage();
    await page.goto(appUrl());
    await page.waitForSelector("#login-form:not(.hidden)");
    const challenged = page.waitForResponse((r) => isPost("/auth/login")(r) && r.status() === 200);
    await logIn(page, "dpop-mfa-user");
    assert.equal((await (await challenged).json()).mfa_required, true);
    await page.waitForSelector("#mfa-form:not(.hidden)");
    const finished = page.waitForResponse((r) => isPost("/auth/login/mfa")(r) && r.status() === 200);
    await page.fill("#code", totpCode(uri, Math.max(step(), confirmed + 1)));
    await page.click("#mfa-form button[type=submit]");
    const answered = await finished;
    await assertBound(answered, thumbprint((await pageKey(page)).publicJwk));
    await page.waitForSelector("#signed-in:not(.hidden)");
    assert.equal(await page.textContent("#who"), "dpop-mfa-user");
    await settleAndClose(page);
  } finally {
    await local.close();
  }
});

test("a passkey sign-in with DPoP: /auth/webauthn/login/finish binds the session to the page's key", async () => {
  await register("dpop-passkey-user");
  const local = await browser.newContext();
  try {
    const page = await local.newPage();
    const cdp = await local.newCDPSession(page);
    await cdp.send("WebAuthn.enable");
    const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: {
        protocol: "ctap2",
        transport: "internal",
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
    await page.goto(appUrl());
    await page.waitForSelector("#login-form:not(.hidden)");
    await logIn(page, "dpop-passkey-user");
    await page.waitForSelector("#signed-in:not(.hidden)");
    await page.fill("#passkey-password", PASSWORD);
    await page.click("#add-passkey");
    await eventually("the passkey is listed", 5_000, async () => (await page.textContent("#passkey-count")) === "1");
    const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
    assert.equal(credentials.length, 1);

    await page.click("#logout");
    await page.waitForSelector("#login-form:not(.hidden)");
    const finished = page.waitForResponse((r) => isPost("/auth/webauthn/login/finish")(r) && r.status() === 200);
    await page.click("#passkey-login");
    await assertBound(await finished, thumbprint((await pageKey(page)).publicJwk));
    await page.waitForSelector("#signed-in:not(.hidden)");
    assert.equal(await page.textContent("#who"), "dpop-passkey-user");
    // A cookie session like any, bound like any: a reload keeps it, with the same key.
    await page.reload();
    await page.waitForSelector("#signed-in:not(.hidden)");
    await settleAndClose(page);
  } finally {
    await local.close();
  }
});
