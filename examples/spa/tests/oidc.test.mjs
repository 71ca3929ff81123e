// The SPA's code-flow page (oidc.html, oidc-client-ts) in Debian's Chromium, driven by
// playwright-core, against the real Latchkey server on another site: the app is served
// from http://127.0.0.1:P1, Latchkey answers as http://localhost:P2. The app is a public
// client with a registered browser origin, so the token, userinfo and revocation calls
// are cross-origin for real; the server runs with a 3-second access-token lifetime so
// that renewals happen while the tests watch.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, extname, dirname, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium } from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const repo = join(root, "..", "..");
const serverBin = process.env.SERVER_BIN ?? join(repo, "target", "debug", "latchkey");
const artifacts = join(root, "artifacts");
const CLIENT_ID = "spa-oidc";
const USER = { username: "oidc-user", password: "code flow test password", email: "oidc-user@example.com" };

let issuer, spa, server, serverLog, statics, browser, context, page;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

/// Serves dist/ like any static host would, with this deployment's oidc-config.json.
function serveDist(port, config) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json" };
  const dist = join(root, "dist");
  const http = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/oidc-config.json") {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      return res.end(JSON.stringify(config));
    }
    const file = normalize(join(dist, path === "/" ? "index.html" : path));
    if (!file.startsWith(dist) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => http.listen(port, "127.0.0.1", () => resolve(http)));
}

before(async () => {
  assert.ok(existsSync(serverBin), `build the server first (${serverBin}), or set SERVER_BIN`);
  assert.ok(existsSync(join(root, "dist", "oidc.html")), "build the app first (npm run build)");
  mkdirSync(artifacts, { recursive: true });
  const [serverPort, spaPort] = [await freePort(), await freePort()];
  issuer = `http://localhost:${serverPort}`;
  spa = `http://127.0.0.1:${spaPort}`;
  const dir = mkdtempSync(join(tmpdir(), "latchkey-spa-oidc-"));
  const unlimited = "{per_minute=1000000,burst=100000}";
  const env = {
    ...process.env,
    LATCHKEY_LISTEN: `127.0.0.1:${serverPort}`,
    LATCHKEY_PUBLIC_URL: issuer,
    LATCHKEY_DATABASE_URL: `sqlite://${join(dir, "db.sqlite")}?mode=rwc`,
    LATCHKEY_MASTER_KEY_FILE: join(dir, "master.key"),
    LATCHKEY_COOKIE__SECURE: "false",
    LATCHKEY_TOKENS__ACCESS_TOKEN_TTL_SECS: "3",
    LATCHKEY_TOKENS__CLOCK_SKEW_SECS: "0",
    LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB: "4096",
    LATCHKEY_PASSWORDS__ARGON2_ITERATIONS: "1",
    LATCHKEY_RATE_LIMITS__LOGIN: unlimited,
    LATCHKEY_RATE_LIMITS__TOKEN: unlimited,
    LATCHKEY_RATE_LIMITS__REFRESH: unlimited,
    LATCHKEY_RATE_LIMITS__USERNAME: unlimited,
    RUST_LOG: "warn",
  };
  const cli = (args, input) => execFileSync(serverBin, args, { env, input, encoding: "utf8", stdio: "pipe" });
  cli(["user", "create", "--username", USER.username, "--role", "user", "--email", USER.email], `${USER.password}\n`);
  const client = ["client", "create", "--client-id", CLIENT_ID, "--name", "Reference SPA"];
  for (const grant of ["authorization_code", "refresh_token"]) client.push("--grant", grant);
  for (const scope of ["openid", "profile", "email", "roles", "offline_access"]) client.push("--scope", scope);
  client.push("--redirect-uri", `${spa}/oidc.html`, "--allowed-origin", spa);
  assert.match(cli(client), /public client/);

  serverLog = [];
  server = spawn(serverBin, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  for (const stream of [server.stdout, server.stderr]) stream.on("data", (chunk) => serverLog.push(String(chunk)));
  let ready = false;
  for (let i = 0; i < 200 && !ready && server.exitCode === null; i++) {
    try {
      ready = (await fetch(`${issuer}/readyz`)).ok;
    } catch {}
    if (!ready) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(ready, `latchkey was not ready within 20 s:\n${serverLog.join("")}`);

  statics = await serveDist(spaPort, { issuer, client_id: CLIENT_ID });
  browser = await launchChromium();
  // One browser profile for every test: Latchkey's SSO cookie lives here.
  context = await browser.newContext();
  context.setDefaultTimeout(10_000);
  page = await openTab();
});

after(async () => {
  await browser?.close();
  statics?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGTERM");
    await exited;
  }
});

const isToken = (url) => url === `${issuer}/oauth2/token`;
const form = (request) => new URLSearchParams(request.postData() ?? "");

/// The tab the tests share. It keeps every document it was shown (redirect hops too),
/// every token-endpoint exchange with its answer, and every problem: a console error
/// (a CORS refusal or the library's own errors show up there), an uncaught exception,
/// a failed load other than a favicon.
async function openTab() {
  const tab = await context.newPage();
  tab.hops = [];
  tab.problems = [];
  tab.exchanges = []; // { grant, form, status, headers, body }
  tab.on("response", async (r) => {
    const request = r.request();
    if (request.resourceType() === "document") tab.hops.push(`${r.status()} ${r.url()}`);
    if (r.status() >= 400 && new URL(r.url()).pathname !== "/favicon.ico") tab.problems.push(`${r.status()} ${r.url()}`);
    if (isToken(r.url()) && request.method() === "POST") {
      const sent = form(request);
      const exchange = { grant: sent.get("grant_type"), form: sent, status: r.status(), headers: r.headers() };
      exchange.body = await r.json().catch(() => null);
      tab.exchanges.push(exchange);
    }
  });
  tab.on("console", (m) => {
    const favicon = /Failed to load resource/.test(m.text()) && /\/favicon\.ico$/.test(m.location()?.url ?? "");
    if (m.type() === "error" && !favicon) tab.problems.push(`console: ${m.text()}`);
  });
  tab.on("pageerror", (e) => tab.problems.push(`page error: ${e.message}`));
  tab.on("requestfailed", (r) => tab.problems.push(`failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  return tab;
}

function noProblems(tab) {
  assert.deepEqual(tab.problems, [], "no console errors, page errors or failed loads");
}

const onLatchkey = (path) => (url) => url.origin === issuer && url.pathname === path;
const shown = (tab, path) =>
  tab.hops.filter((h) => h.startsWith("200 ") && onLatchkey(path)(new URL(h.split(" ")[1]))).length;

/// Waits for the token endpoint's next answer to a refresh (a renewal), after `since`
/// exchanges; returns it.
async function nextRefresh(tab, since = tab.exchanges.length, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = tab.exchanges.slice(since).find((e) => e.grant === "refresh_token" && e.body !== undefined);
    if (found) return found;
    if (Date.now() > deadline) {
      const exchanges = tab.exchanges.map((e) => `${e.grant} ${e.status}`).join(", ");
      const status = await tab.locator("#status").textContent();
      const problems = tab.problems.join("\n");
      throw new Error(`no refresh within ${ms} ms; page says "${status}"; exchanges: ${exchanges}; problems:\n${problems}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/// Waits until the page has taken in its next renewal: the token endpoint has answered
/// and the library has checked the answer (it calls userinfo too) and stored the user.
/// The renewal after it is a second or more away.
async function renewedInPage(tab) {
  const count = Number(await tab.locator("#renewals").textContent());
  await tab.waitForFunction((n) => Number(document.getElementById("renewals").textContent) > n, count);
}

/// Everything a script on the app's origin can read without the app's help.
const readableStorage = (tab) =>
  tab.evaluate(() =>
    JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage }, cookies: document.cookie }),
  );

function assertNoTokenIn(stored, tokens) {
  for (const token of tokens) assert.ok(!stored.includes(token), `a token is readable in web storage: ${stored}`);
  assert.ok(!stored.includes("eyJ") && !stored.includes("lk_rt_"), `no token-like value in web storage: ${stored}`);
}

const tokensSeen = (tab) =>
  tab.exchanges.flatMap((e) => [e.body?.access_token, e.body?.id_token, e.body?.refresh_token]).filter(Boolean);

async function signInOnLatchkey(tab) {
  await tab.waitForURL(onLatchkey("/ui/signin"));
  await tab.getByLabel("Username", { exact: true }).fill(USER.username);
  await tab.getByLabel("Password", { exact: true }).fill(USER.password);
  await tab.getByRole("button", { name: "Sign in", exact: true }).click();
}

async function backSignedIn(tab) {
  await tab.locator("#signed-in").waitFor().catch((err) => {
    throw new Error(`not signed in at ${tab.url()}: ${err.message}\nhops:\n${tab.hops.join("\n")}\nproblems: ${tab.problems}`);
  });
}

/// The tests are steps of one user's story in one tab: after a failed one, the rest skip.
let failed = null;
function step(name, fn) {
  test(name, async (t) => {
    if (failed) return t.skip(`"${failed}" failed`);
    try {
      await fn();
    } catch (err) {
      failed = name;
      throw err;
    }
  });
}

step("sign in through Latchkey's hosted pages with PKCE; tokens in memory only", async () => {
  await page.goto(`${spa}/oidc.html`);
  await page.locator("#signed-out").waitFor();
  const authorize = page.waitForRequest((r) => onLatchkey("/oauth2/authorize")(new URL(r.url())));
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  const asked = new URL(
    (
      await authorize.catch((err) => {
        const problems = page.problems.join("\n");
        throw new Error(`the app never went to Latchkey (${err.message}); problems in the tab:\n${problems}`);
      })
    ).url(),
  ).searchParams;
  assert.equal(asked.get("response_type"), "code");
  assert.equal(asked.get("client_id"), CLIENT_ID);
  assert.equal(asked.get("redirect_uri"), `${spa}/oidc.html`);
  assert.equal(asked.get("code_challenge_method"), "S256");
  assert.match(asked.get("code_challenge") ?? "", /^[A-Za-z0-9_-]{43}$/);
  assert.ok(asked.get("state"), "a state is sent (oidc-client-ts sends no nonce unless asked: PKCE binds the code)");
  assert.deepEqual(asked.get("scope").split(" ").sort(), ["email", "openid", "profile", "roles"]);

  await signInOnLatchkey(page);
  // A third-party client: the user is asked once.
  await page.getByRole("heading", { name: "Allow access?" }).waitFor();
  await page.getByRole("button", { name: "Allow", exact: true }).click();
  await backSignedIn(page);

  assert.equal(new URL(page.url()).search, "", "the code and state are gone from the address bar");
  assert.equal(await page.locator("#who").textContent(), USER.username);
  const profile = JSON.parse(await page.locator("#profile").textContent());
  assert.equal(profile.iss, issuer);
  assert.equal(profile.aud, CLIENT_ID);
  assert.equal(profile.email, USER.email, "userinfo's claims are merged into the profile");
  await page.locator("#userinfo").filter({ hasText: "preferred_username" }).waitFor();
  const userinfo = JSON.parse(await page.locator("#userinfo").textContent());
  assert.equal(userinfo.sub, profile.sub);
  assert.equal(userinfo.preferred_username, USER.username);

  const [code] = page.exchanges;
  assert.equal(code.grant, "authorization_code");
  assert.equal(code.status, 200);
  assert.equal(code.form.get("client_id"), CLIENT_ID);
  assert.match(code.form.get("code_verifier") ?? "", /^[A-Za-z0-9._~-]{43,128}$/, "PKCE verifier sent");
  assert.ok(!code.form.has("client_secret"), "a public client has no secret");
  assert.equal(code.headers["access-control-allow-origin"], spa, "the token endpoint answers the app's origin");
  assert.equal(code.headers["access-control-allow-credentials"], undefined, "without credentials");
  for (const field of ["access_token", "id_token", "refresh_token"]) assert.ok(code.body[field], `${field} issued`);

  const stored = await readableStorage(page);
  assertNoTokenIn(stored, tokensSeen(page));
  const leftOver = Object.keys(JSON.parse(stored).session).filter((key) => key.startsWith("oidc."));
  assert.deepEqual(leftOver, [], "the sign-in state is gone from sessionStorage once used");
  await page.screenshot({ path: join(artifacts, "oidc-signed-in.png"), fullPage: true });
  noProblems(page);
});

step("the access token renews silently by refresh-token rotation", async () => {
  const before = page.exchanges.length;
  const held = page.exchanges.at(-1).body;
  const renewal = await nextRefresh(page, before);
  assert.equal(renewal.status, 200, JSON.stringify(renewal.body));
  assert.equal(renewal.form.get("refresh_token"), held.refresh_token, "the latest refresh token is presented");
  assert.equal(renewal.form.get("client_id"), CLIENT_ID);
  assert.notEqual(renewal.body.access_token, held.access_token, "a new access token");
  assert.ok(renewal.body.refresh_token, "a new refresh token");
  assert.notEqual(renewal.body.refresh_token, held.refresh_token, "rotated");
  assert.equal(renewal.headers["access-control-allow-origin"], spa);
  // And again: each renewal presents the token the last one returned.
  const second = await nextRefresh(page, page.exchanges.indexOf(renewal) + 1);
  assert.equal(second.status, 200, JSON.stringify(second.body));
  assert.equal(second.form.get("refresh_token"), renewal.body.refresh_token);
  // The page has the answer a moment after the network does.
  await page.waitForFunction(() => Number(document.getElementById("renewals").textContent) >= 2);

  // The page calls userinfo with the token it holds now, a renewed one.
  const call = page.waitForRequest((r) => r.url() === `${issuer}/oauth2/userinfo` && r.method() === "GET");
  const answer = page.waitForResponse((r) => r.url() === `${issuer}/oauth2/userinfo` && r.request().method() === "GET");
  await page.getByRole("button", { name: "Call userinfo" }).click();
  const bearer = (await call).headers().authorization?.replace(/^Bearer /, "");
  const renewedTokens = page.exchanges.slice(before).map((e) => e.body?.access_token);
  assert.ok(renewedTokens.includes(bearer), "userinfo is called with a renewed access token");
  assert.equal((await answer).status(), 200);
  assert.equal((await answer).headers()["access-control-allow-origin"], spa);
  assert.ok(await page.locator("#signed-in").isVisible(), "still signed in");

  assertNoTokenIn(await readableStorage(page), tokensSeen(page));
  noProblems(page);
});

step("a reload forgets the tokens; signing in again needs no password, thanks to Latchkey's browser session", async () => {
  // Between two renewals, so that none is cut off by the reload.
  await renewedInPage(page);
  const signinPages = shown(page, "/ui/signin");
  const consentPages = shown(page, "/ui/consent");
  await page.reload();
  await page.locator("#signed-out").waitFor();
  assert.equal(await page.locator("#status").textContent(), "Not signed in.");
  assertNoTokenIn(await readableStorage(page), tokensSeen(page));

  const exchanges = page.exchanges.length;
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await backSignedIn(page);
  assert.equal(shown(page, "/ui/signin"), signinPages, "no password page shown");
  assert.equal(shown(page, "/ui/consent"), consentPages, "no consent asked again");
  assert.equal(await page.locator("#who").textContent(), USER.username);
  assert.equal(page.exchanges[exchanges]?.grant, "authorization_code", "a new code was exchanged");
  assertNoTokenIn(await readableStorage(page), tokensSeen(page));
  noProblems(page);
});

step("sign-out revokes the refresh token: a later refresh by it fails", async () => {
  await renewedInPage(page); // the page holds a rotated token, not the first one
  const revoked = page.waitForRequest((r) => r.url() === `${issuer}/oauth2/revoke`);
  const revokedAnswer = page.waitForResponse((r) => r.url() === `${issuer}/oauth2/revoke`);
  await page.getByRole("button", { name: "Sign out" }).click();
  const sent = form(await revoked);
  assert.equal(sent.get("token_type_hint"), "refresh_token");
  assert.equal(sent.get("client_id"), CLIENT_ID);
  assert.match(sent.get("token") ?? "", /^lk_rt_/);
  const answer = await revokedAnswer;
  assert.equal(answer.status(), 200);
  assert.equal(answer.headers()["access-control-allow-origin"], spa);
  await page.locator("#signed-out").waitFor();
  assert.equal(await page.locator("#status").textContent(), "Signed out.");
  assert.equal(await page.locator("#error").textContent(), "");

  // No more renewals from the page (the token lifetime is 3 s).
  const after = page.exchanges.length;
  await new Promise((r) => setTimeout(r, 4000));
  assert.deepEqual(page.exchanges.slice(after).map((e) => e.grant), [], "no token requests after sign-out");

  // The revoked token, and the last one the page was given (the same, unless a renewal
  // crossed the sign-out), are refused: the session is over.
  const { refresh_token: last, access_token: lastAccess } = page.exchanges.at(-1).body;
  const userinfo = await fetch(`${issuer}/oauth2/userinfo`, { headers: { authorization: `Bearer ${lastAccess}` } });
  assert.equal(userinfo.status, 401, "Latchkey refuses the session's access tokens at once");
  for (const token of new Set([sent.get("token"), last])) {
    const r = await fetch(`${issuer}/oauth2/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: token, client_id: CLIENT_ID }),
    });
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error, "invalid_grant");
  }
  noProblems(page);
});

step("a session ended elsewhere: the next renewal is refused and the page says the session has ended", async () => {
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await backSignedIn(page);
  // Between two renewals: the page holds the refresh token of the last one.
  await renewedInPage(page);
  const since = page.exchanges.length;
  const held = page.exchanges.findLast((e) => e.grant === "refresh_token").body.refresh_token;
  // Revoked by another party (as an admin or the account page would end it).
  const revoked = await fetch(`${issuer}/oauth2/revoke`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: held, token_type_hint: "refresh_token", client_id: CLIENT_ID }),
  });
  assert.equal(revoked.status, 200);
  // The first renewal after it is refused. On a loaded machine the page may have renewed
  // once more before the revocation landed: the session is revoked all the same (RFC
  // 7009 revokes the grant), so the refused renewal sent `held` or a token rotated from it.
  let refused;
  for (let from = since; ; ) {
    refused = await nextRefresh(page, from);
    if (refused.status !== 200) break;
    from = page.exchanges.indexOf(refused) + 1;
  }
  const rotatedSince = page.exchanges
    .slice(since)
    .filter((e) => e.grant === "refresh_token" && e.status === 200)
    .map((e) => e.body.refresh_token);
  assert.ok(
    [held, ...rotatedSince].includes(refused.form.get("refresh_token")),
    "the refused renewal carried the revoked session's token",
  );
  assert.equal(refused.status, 400);
  assert.equal(refused.body?.error, "invalid_grant", "the refusal is readable by the app (CORS on errors too)");
  assert.equal(refused.headers["access-control-allow-origin"], spa);
  await page.locator("#signed-out").waitFor();
  assert.equal(await page.locator("#status").textContent(), "Your session has ended. Please sign in again.");
  // What that refusal shows in the console, and nothing else.
  const expected = [
    `400 ${issuer}/oauth2/token`,
    "console: Failed to load resource: the server responded with a status of 400 (Bad Request)",
    "console: [JsonService] postForm: Error from server: {error: invalid_grant, ",
    "console: [SilentRenewService] _tokenExpiring: Error from signinSilent: ErrorResponse: ",
  ];
  const unexpected = page.problems.filter((p) => !expected.some((start) => p.startsWith(start)));
  assert.deepEqual(unexpected, [], "no other problem");
});
