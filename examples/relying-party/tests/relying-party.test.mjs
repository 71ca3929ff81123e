// Third-party relying parties signing in through Latchkey's hosted pages in Debian's
// Chromium: two openid-client apps on http://127.0.0.1 (another site than Latchkey's
// http://localhost, so SameSite=Lax is what carries the browser session), the real
// server, no mocks. Each sign-in is a user's: labels, buttons, and the keyboard. The
// server's mail goes to a real SMTP server on 127.0.0.1 (inbox.mjs), read as a mail
// client would: its links are what the browser opens.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import * as OTPAuth from "otpauth";
import { Latchkey, freePort, launchChromium } from "./latchkey.mjs";
import { startInbox } from "./inbox.mjs";
import { startRelyingParty } from "../rp.mjs";

const require = createRequire(import.meta.url);
const axePath = require.resolve("axe-core");
const artifacts = join(dirname(fileURLToPath(import.meta.url)), "..", "artifacts");

const users = {
  alice: { username: "alice", password: "alice's long password", email: "alice@example.com" },
  tess: { username: "tess", password: "tess's long password" }, // TOTP
  kim: { username: "kim", password: "kim's long password" }, // keyboard only
  axel: { username: "axel", password: "axel's long password" }, // TOTP; the accessibility pass
  lena: { username: "lena", password: "lena's long password" }, // signs out
  mona: { username: "mona", password: "mona's long password" }, // the account page
  pia: { username: "pia", password: "pia's long password" }, // passkeys
};
/// Holds the `admin` role: makes rita through the admin API.
const admin = { username: "admin", password: "the admin's long password", roles: ["admin"] };

let latchkey, photos, wiki, browser, inbox;
const totp = {};

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  inbox = await startInbox();
  latchkey = await new Latchkey().init({ mail: { port: inbox.port } });
  const [photosPort, wikiPort] = [await freePort(), await freePort()];
  for (const user of Object.values(users)) latchkey.createUser(user);
  latchkey.createUser(admin);
  // A third party (consent asked, client_secret_basic) and one of ours (no consent,
  // client_secret_post): two relying parties on two origins sharing one browser session.
  const photosSecret = latchkey.createClient({
    clientId: "photo-gallery",
    name: "Photo Gallery",
    confidential: true,
    redirectUris: [`http://127.0.0.1:${photosPort}/callback`],
    postLogoutRedirectUris: [`http://127.0.0.1:${photosPort}/signed-out`],
    backchannelLogoutUri: `http://127.0.0.1:${photosPort}/backchannel-logout`,
  });
  const wikiSecret = latchkey.createClient({
    clientId: "team-wiki",
    name: "Team Wiki",
    confidential: true,
    firstParty: true,
    redirectUris: [`http://127.0.0.1:${wikiPort}/callback`],
    postLogoutRedirectUris: [`http://127.0.0.1:${wikiPort}/signed-out`],
    backchannelLogoutUri: `http://127.0.0.1:${wikiPort}/backchannel-logout`,
  });
  await latchkey.start();
  totp.tess = await latchkey.enrolTotp(users.tess);
  totp.axel = await latchkey.enrolTotp(users.axel);
  const issuer = latchkey.issuer;
  photos = await startRelyingParty({
    name: "Photo Gallery",
    issuer,
    clientId: "photo-gallery",
    clientSecret: photosSecret,
    port: photosPort,
    auth: "basic",
  });
  wiki = await startRelyingParty({
    name: "Team Wiki",
    issuer,
    clientId: "team-wiki",
    clientSecret: wikiSecret,
    port: wikiPort,
    auth: "post",
  });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await photos?.close();
  await wiki?.close();
  await latchkey?.stop();
  await inbox?.close();
});

/// A browser context whose waits give up after 10 s (every step here takes well under 1 s).
async function newContext(options = {}) {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(10_000);
  return context;
}

/// A tab that keeps what happened in it: every document response (redirect hops too),
/// and every console error or page error (a CSP refusal shows up there).
async function openTab(context) {
  const page = await context.newPage();
  page.hops = [];
  page.problems = [];
  page.on("response", (r) => {
    if (r.request().resourceType() === "document") page.hops.push(`${r.status()} ${r.url()}`);
  });
  // A browser asks every origin for /favicon.ico; neither Latchkey nor the test apps has
  // one, and that 404 is no problem. Any other failed load is, with its URL.
  page.on("response", (r) => {
    if (r.status() >= 400 && r.request().resourceType() !== "document" && new URL(r.url()).pathname !== "/favicon.ico") {
      page.problems.push(`${r.status()} ${r.url()}`);
    }
  });
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) page.problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  return page;
}

const onLatchkey = (path) => (url) => url.origin === latchkey.issuer && url.pathname === path;
/// How many times a page at `path` was shown (answered 200), redirects and POSTs aside.
const shown = (page, path) =>
  page.hops.filter((h) => h.startsWith("200 ") && new URL(h.split(" ")[1]).pathname === path).length;

async function signIn(page, { username, password }) {
  await page.waitForURL(onLatchkey("/ui/signin"));
  await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
  await page.getByLabel("Username", { exact: true }).fill(username);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
}

async function enterCode(page, code) {
  await page.getByRole("heading", { name: "Two-step verification" }).waitFor();
  const form = page.locator("form", { has: page.getByLabel("Code", { exact: true }) });
  await form.getByLabel("Code", { exact: true }).fill(code);
  await form.getByRole("button", { name: "Verify", exact: true }).click();
}

async function consent(page, decision = "Allow") {
  await page.getByRole("heading", { name: "Allow access?" }).waitFor();
  await page.getByRole("button", { name: decision, exact: true }).click();
}

/// What the relying party's callback page says: its result, or a failure with what it shows.
async function outcome(page, rp) {
  const where = (u) => u.origin === rp.base && u.pathname === "/callback";
  await page.waitForURL(where).catch(() => {
    throw new Error(`never reached ${rp.name}'s callback; at ${page.url()}; hops:\n${page.hops.join("\n")}`);
  });
  const error = page.locator("#error");
  if ((await error.count()) > 0) return { error: JSON.parse(await error.textContent()) };
  return { result: JSON.parse(await page.locator("#result").textContent()) };
}

async function signedIn(page, rp) {
  const { result, error } = await outcome(page, rp);
  assert.ok(result, `${rp.name} could not sign in: ${JSON.stringify(error, null, 2)}\nhops:\n${page.hops.join("\n")}`);
  return result;
}

function noProblems(page) {
  assert.deepEqual(page.problems, [], "no console errors (CSP refusals included) on the way");
}

const sleepUntil = async (ms) => {
  while (Date.now() < ms) await new Promise((r) => setTimeout(r, Math.min(100, ms - Date.now())));
};

// The browser session shared by the first three tests: alice's.
let alice;

test("a third party signs alice in: password, consent, code with PKCE, userinfo, refresh", async () => {
  const context = await newContext();
  const page = await openTab(context);
  const signinPage = page.waitForResponse((r) => onLatchkey("/ui/signin")(new URL(r.url())) && r.status() === 200);
  await page.goto(`${photos.base}/login`);
  const csp = (await signinPage).headers()["content-security-policy"];
  assert.match(csp ?? "", /default-src 'none'/, "the sign-in page carries the strict CSP");
  assert.match(await page.locator("main").textContent(), /Photo Gallery/, "the sign-in page names the client");
  await signIn(page, users.alice);

  await page.getByRole("heading", { name: "Allow access?" }).waitFor();
  const card = await page.locator("main").textContent();
  assert.match(card, /Photo Gallery/);
  assert.match(card, /alice/);
  assert.equal(await page.locator("ul.scopes li").count(), 4, "openid, profile, email and roles are listed");
  await page.screenshot({ path: join(artifacts, "consent.png"), fullPage: true });
  await page.getByRole("button", { name: "Allow", exact: true }).click();

  const r = await signedIn(page, photos);
  const c = r.id_token_claims;
  assert.equal(r.id_token_header.alg, "RS256");
  assert.equal(r.id_token_header.typ, "JWT");
  assert.equal(c.iss, latchkey.issuer);
  assert.deepEqual([c.aud].flat(), ["photo-gallery"], "the id_token is for this client alone");
  assert.equal(c.nonce, r.sent_nonce, "the nonce came back (the library checked it too)");
  assert.equal(r.userinfo.sub, c.sub, "userinfo is about the id_token's subject");
  assert.equal(r.userinfo.preferred_username, "alice");
  assert.equal(r.userinfo.email, "alice@example.com");
  assert.equal(typeof r.userinfo.email_verified, "boolean");
  assert.ok(Array.isArray(r.userinfo.roles), `roles in userinfo: ${JSON.stringify(r.userinfo)}`);
  assert.deepEqual(c.amr, ["pwd"]);
  assert.equal(typeof c.sid, "string");
  assert.equal(typeof c.at_hash, "string");
  assert.ok(Math.abs(c.auth_time - Date.now() / 1000) < 60, `auth_time ${c.auth_time} is now`);
  assert.equal(r.token_type.toLowerCase(), "bearer");
  assert.deepEqual(r.scope.split(" ").sort(), ["email", "openid", "profile", "roles"]);
  assert.ok(r.has_refresh_token, "a refresh token for a client with the refresh_token grant");
  assert.ok(r.refresh.rotated && r.refresh.rotated_again, "each refresh rotates the refresh token");
  assert.ok(r.refresh.new_access_token);
  assert.equal(r.refresh.userinfo.sub, c.sub, "the refreshed access token still reads userinfo");
  if (r.refresh.id_token_claims) {
    // OpenID Connect Core 12.2: a refreshed id_token keeps sub, aud and the original auth_time.
    const again = r.refresh.id_token_claims;
    assert.deepEqual([again.sub, again.aud, again.auth_time], [c.sub, c.aud, c.auth_time]);
  }

  const sso = (await context.cookies(latchkey.issuer)).find((k) => k.name === "lk_sso");
  assert.ok(sso, "a browser session cookie was set");
  assert.equal(sso.httpOnly, true);
  assert.equal(sso.sameSite, "Lax");
  noProblems(page);
  alice = { context, claims: c };
  await page.close();
});

test("a second relying party (first-party) signs alice in with no prompt at all: SSO over SameSite=Lax", async () => {
  assert.ok(alice, "needs the browser session of the first test");
  const page = await openTab(alice.context);
  await page.goto(`${wiki.base}/login`);
  const r = await signedIn(page, wiki);
  assert.equal(shown(page, "/ui/signin"), 0, `no sign-in page; hops:\n${page.hops.join("\n")}`);
  assert.equal(shown(page, "/ui/consent"), 0, "no consent for a first-party client");
  const c = r.id_token_claims;
  assert.equal(c.sub, alice.claims.sub, "the same person");
  assert.deepEqual([c.aud].flat(), ["team-wiki"]);
  assert.equal(c.auth_time, alice.claims.auth_time, "no new authentication happened");
  assert.equal(c.sid, alice.claims.sid, "one browser session at the provider, one sid");
  assert.equal(r.userinfo.preferred_username, "alice");

  // prompt=none with a session: silently signed in.
  await page.goto(`${wiki.base}/login?prompt=none`);
  const silent = await signedIn(page, wiki);
  assert.equal(silent.id_token_claims.sub, alice.claims.sub);
  // max_age that the session still meets: no prompt either (the library checks auth_time).
  await page.goto(`${wiki.base}/login?max_age=3600`);
  const recent = await signedIn(page, wiki);
  assert.equal(recent.id_token_claims.auth_time, alice.claims.auth_time);
  assert.equal(shown(page, "/ui/signin"), 0, `still no sign-in page; hops:\n${page.hops.join("\n")}`);
  noProblems(page);
  await page.close();
});

test("prompt=login and a max_age the session no longer meets ask for the password again", async () => {
  assert.ok(alice, "needs the browser session of the first test");
  const page = await openTab(alice.context);
  // auth_time has one-second resolution: let a second pass so a new sign-in is visible.
  await sleepUntil((alice.claims.auth_time + 1) * 1000 + 100);
  await page.goto(`${wiki.base}/login?prompt=login`);
  await signIn(page, users.alice);
  const again = await signedIn(page, wiki);
  assert.equal(shown(page, "/ui/signin"), 1, `the sign-in page was shown; hops:\n${page.hops.join("\n")}`);
  assert.equal(again.id_token_claims.sub, alice.claims.sub);
  assert.ok(again.id_token_claims.auth_time > alice.claims.auth_time, "a new authentication time");

  await sleepUntil((again.id_token_claims.auth_time + 2) * 1000 + 100);
  await page.goto(`${wiki.base}/login?max_age=1`);
  await signIn(page, users.alice);
  const fresh = await signedIn(page, wiki);
  assert.equal(shown(page, "/ui/signin"), 2, `the sign-in page was shown again; hops:\n${page.hops.join("\n")}`);
  assert.ok(fresh.id_token_claims.auth_time > again.id_token_claims.auth_time);
  noProblems(page);
  await page.close();
  await alice.context.close();
});

test("prompt=none without a browser session: login_required comes back to the relying party", async () => {
  const context = await newContext();
  const page = await openTab(context);
  await page.goto(`${photos.base}/login?prompt=none`);
  const { result, error } = await outcome(page, photos);
  assert.equal(result, undefined, "no sign-in without a session");
  assert.equal(error.error, "login_required", JSON.stringify(error));
  assert.equal(shown(page, "/ui/signin"), 0);
  await context.close();
});

test("an account with TOTP signs in with its code, then consents", async () => {
  const context = await newContext();
  const page = await openTab(context);
  await page.goto(`${photos.base}/login`);
  await signIn(page, users.tess);
  await enterCode(page, await totp.tess.next());
  await consent(page, "Allow");
  const r = await signedIn(page, photos);
  assert.equal(r.userinfo.preferred_username, "tess");
  assert.deepEqual([...r.id_token_claims.amr].sort(), ["otp", "pwd"]);
  assert.equal(r.userinfo.email, undefined, "tess has no email address");
  noProblems(page);
  await context.close();
});

test("keyboard only: Tab, typing and Enter through sign-in and consent", async () => {
  const context = await newContext();
  const page = await openTab(context);
  await page.goto(`${photos.base}/login`);
  await page.waitForURL(onLatchkey("/ui/signin"));
  const focused = () => page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
  assert.equal(await focused(), "username", "the username field has the focus on arrival");
  await page.keyboard.type(users.kim.username);
  await page.keyboard.press("Tab");
  assert.equal(await focused(), "password");
  await page.keyboard.type(users.kim.password);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Allow access?" }).waitFor();
  await page.keyboard.press("Tab");
  const button = await page.evaluate(() => [document.activeElement?.tagName, document.activeElement?.textContent]);
  assert.deepEqual(button, ["BUTTON", "Allow"], "the first Tab reaches Allow");
  await page.keyboard.press("Enter");
  const r = await signedIn(page, photos);
  assert.equal(r.userinfo.preferred_username, "kim");
  noProblems(page);
  await context.close();
});

/// axe-core on the page as it is, in the light and the dark colour scheme. Prints every
/// violation and every check axe could not decide; returns the serious and critical ones.
async function axe(page, label) {
  await page.addScriptTag({ path: axePath });
  const bad = [];
  for (const colorScheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme });
    const { violations, passes, incomplete } = await page.evaluate(() => window.axe.run(document));
    const where = (v) => v.nodes.map((n) => `${n.target.join(" ")}: ${n.failureSummary?.replace(/\s+/g, " ")}`).join("; ");
    console.log(`axe: ${label} (${colorScheme}): ${violations.length} violations, ${passes.length} rules passed`);
    for (const v of incomplete) console.log(`axe: ${label} (${colorScheme}): undecided ${v.id}: ${where(v)}`);
    for (const v of violations) {
      const line = `${label} (${colorScheme}): ${v.impact} ${v.id}: ${v.help} — ${where(v)}`;
      console.log(`axe: ${line}`);
      if (v.impact === "serious" || v.impact === "critical") bad.push(line);
    }
    const ran = [...violations, ...passes, ...incomplete].map((v) => v.id);
    assert.ok(ran.includes("color-contrast"), `axe checked the contrast on ${label} (${colorScheme})`);
  }
  await page.emulateMedia({ colorScheme: null });
  return bad;
}

async function openRecovery(page) {
  const details = page.locator("details", { hasText: "Use a recovery code instead" });
  if (!(await details.evaluate((d) => d.open))) await page.getByText("Use a recovery code instead").click();
}

test("axe-core: sign-in, its error notice, second factor, recovery code, consent and error pages", async () => {
  // Our CSP forbids injected scripts, so this context alone bypasses it to run axe.
  const context = await newContext({ bypassCSP: true });
  const page = await openTab(context);
  const bad = [];
  await page.goto(`${photos.base}/login`);
  await page.waitForURL(onLatchkey("/ui/signin"));
  await page.screenshot({ path: join(artifacts, "signin.png"), fullPage: true });
  bad.push(...(await axe(page, "sign-in")));

  await signIn(page, { username: users.axel.username, password: "not the password" });
  await page.getByRole("alert").waitFor();
  bad.push(...(await axe(page, "sign-in with a notice")));

  await signIn(page, users.axel);
  await page.getByRole("heading", { name: "Two-step verification" }).waitFor();
  await page.screenshot({ path: join(artifacts, "second-factor.png"), fullPage: true });
  bad.push(...(await axe(page, "second factor")));
  await openRecovery(page);
  bad.push(...(await axe(page, "second factor, recovery code open")));
  const recovery = page.locator("form", { has: page.getByLabel("Recovery code", { exact: true }) });
  await recovery.getByLabel("Recovery code", { exact: true }).fill("not-a-code");
  await recovery.getByRole("button", { name: "Verify", exact: true }).click();
  await page.getByRole("alert").waitFor();
  bad.push(...(await axe(page, "second factor with a notice")));

  await openRecovery(page);
  await recovery.getByLabel("Recovery code", { exact: true }).fill(totp.axel.recoveryCodes[0]);
  await recovery.getByRole("button", { name: "Verify", exact: true }).click();
  await page.getByRole("heading", { name: "Allow access?" }).waitFor();
  bad.push(...(await axe(page, "consent")));
  await consent(page, "Deny");
  const { result, error } = await outcome(page, photos);
  assert.equal(result, undefined, "a denial signs no one in");
  assert.equal(error.error, "access_denied", JSON.stringify(error));

  // axel's browser is signed in at the provider: a sign-out without a hint asks first.
  await page.goto(`${latchkey.issuer}/oauth2/logout`);
  await page.getByRole("heading", { name: "Sign out?" }).waitFor();
  await page.screenshot({ path: join(artifacts, "logout-confirm.png"), fullPage: true });
  bad.push(...(await axe(page, "sign-out confirmation")));
  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await page.getByRole("heading", { name: "You are signed out" }).waitFor();
  bad.push(...(await axe(page, "signed out")));

  const missing = await page.goto(`${latchkey.issuer}/ui/signin?interaction=no-such-interaction`);
  assert.ok(missing.status() >= 400, `an unknown interaction is refused (${missing.status()})`);
  await page.getByRole("heading", { name: "Something went wrong" }).waitFor();
  bad.push(...(await axe(page, "error page")));
  await context.close();
  assert.deepEqual(bad, [], "no serious or critical accessibility violations");
});

/// Waits until `rp` has received a logout token for `sid` (verified with jose); its claims.
async function logoutTokenFor(rp, sid) {
  for (let i = 0; i < 200; i++) {
    const got = rp.logouts.find((l) => l.ok && l.claims.sid === sid);
    if (got) return got.claims;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${rp.name} got no logout token for sid ${sid}: ${JSON.stringify(rp.logouts)}`);
}

test("signing out at one relying party (buildEndSessionUrl) signs the browser out, and both are told by back-channel", async () => {
  const context = await newContext();
  const page = await openTab(context);
  await page.goto(`${photos.base}/login`);
  await signIn(page, users.lena);
  await consent(page);
  const atPhotos = await signedIn(page, photos);
  await page.goto(`${wiki.base}/login`);
  const atWiki = await signedIn(page, wiki);
  const sid = atPhotos.id_token_claims.sid;
  assert.equal(atWiki.id_token_claims.sid, sid, "one browser session");
  await page.goto(`${photos.base}/whoami`);
  await page.getByRole("heading", { name: "Photo Gallery: signed in" }).waitFor();

  // The hint names this browser's session: no question asked, straight back to the wiki.
  await page.goto(`${wiki.base}/logout`);
  await page.waitForURL((u) => u.origin === wiki.base && u.pathname === "/signed-out");
  await page.getByRole("heading", { name: "Signed out of Team Wiki" }).waitFor();
  assert.ok(
    page.hops.some((h) => h.startsWith("303 ") && new URL(h.split(" ")[1]).pathname === "/oauth2/logout"),
    `through the end_session_endpoint; hops:\n${page.hops.join("\n")}`,
  );

  // Both relying parties got a logout token that jose verified, for this sid and user.
  for (const rp of [photos, wiki]) {
    const claims = await logoutTokenFor(rp, sid);
    assert.equal(claims.sub, atPhotos.id_token_claims.sub);
    assert.equal(claims.aud, rp.clientId);
    assert.equal(claims.iss, latchkey.issuer);
  }
  assert.deepEqual(photos.logouts.filter((l) => !l.ok), [], "no logout token was refused");
  // The photo gallery, never visited again, ended its own session on that token alone.
  await page.goto(`${photos.base}/whoami`);
  await page.getByRole("heading", { name: "Photo Gallery: signed out" }).waitFor();
  // And the browser is signed out at the provider: its cookie is gone, and the next
  // sign-in asks for the password.
  const cookies = await context.cookies(latchkey.issuer);
  assert.deepEqual(cookies.filter((c) => c.name === "lk_sso"), [], "the SSO cookie is gone");
  await page.goto(`${photos.base}/login`);
  await signIn(page, users.lena);
  await signedIn(page, photos);
  noProblems(page);
  await context.close();
});

test("the account page: sessions listed and one ended, the password changed (other sessions end), TOTP enrolled", async () => {
  const context = await newContext();
  const page = await openTab(context);
  await page.goto(`${photos.base}/login`);
  await signIn(page, users.mona);
  await consent(page);
  await signedIn(page, photos);
  // Another device: signed in at the wiki.
  const laptop = await newContext();
  const other = await openTab(laptop);
  await other.goto(`${wiki.base}/login`);
  await signIn(other, users.mona);
  await signedIn(other, wiki);

  await page.goto(`${latchkey.issuer}/account`);
  await page.getByRole("heading", { name: "Your account" }).waitFor();
  const browsers = page.locator("section", { has: page.getByRole("heading", { name: "Where you are signed in" }) });
  assert.equal(await browsers.locator("li").count(), 2, "two browsers");
  assert.equal(await browsers.getByText("this device").count(), 1);
  const apps = page.locator("section", { has: page.getByRole("heading", { name: "App sessions" }) });
  assert.ok((await apps.getByText("Photo Gallery").count()) >= 1, "the gallery's session is listed");
  await apps.getByRole("button", { name: /^End: Photo Gallery/ }).first().click();
  await page.getByRole("status").filter({ hasText: "That session has ended." }).waitFor();
  const allowed = page.locator("section", { has: page.getByRole("heading", { name: "Apps you allowed" }) });
  assert.equal(await allowed.getByText("Photo Gallery").count(), 1, "the consent stays until revoked");

  const password = page.locator("form[action='/account/password']");
  await password.getByLabel("Current password").fill(users.mona.password);
  await password.getByLabel("New password").fill("mona's newer long password");
  await password.getByRole("button", { name: "Change password" }).click();
  await page.getByRole("status").filter({ hasText: "Your password is changed." }).waitFor();
  assert.equal(await browsers.locator("li").count(), 1, "only this browser is left");
  // The other device is signed out: the wiki's next sign-in asks for the password.
  await other.goto(`${wiki.base}/login`);
  await signIn(other, { username: "mona", password: "mona's newer long password" });
  await signedIn(other, wiki);

  const setup = page.locator("form[action='/account/totp/setup']");
  await setup.getByLabel("Current password").fill("mona's newer long password");
  await setup.getByRole("button", { name: "Set up two-step verification" }).click();
  await page.getByRole("img", { name: "QR code for your authenticator app" }).waitFor();
  const secret = (await page.locator("code.secret").textContent()).trim();
  const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), digits: 6, period: 30 });
  await page.getByLabel("Code", { exact: true }).fill(totp.generate());
  await page.getByRole("button", { name: "Turn on", exact: true }).click();
  await page.getByRole("heading", { name: "Your recovery codes" }).waitFor();
  assert.equal(await page.locator(".codes li").count(), 10);
  await page.getByRole("link", { name: "Back to your account" }).click();
  await page.getByText("On: signing in asks for a code from your authenticator app.").waitFor();
  noProblems(page);
  noProblems(other);
  await laptop.close();
  await context.close();

  // axe-core on the account page and the one-time codes page (CSP bypassed for axe alone).
  const audit = await newContext({ bypassCSP: true });
  const tab = await openTab(audit);
  await tab.goto(`${latchkey.issuer}/account`);
  await signIn(tab, users.kim);
  await tab.getByRole("heading", { name: "Your account" }).waitFor();
  await tab.screenshot({ path: join(artifacts, "account.png"), fullPage: true });
  const bad = await axe(tab, "account page");
  const codes = tab.locator("form[action='/account/totp/setup']");
  await codes.getByLabel("Current password").fill(users.kim.password);
  await codes.getByRole("button", { name: "Set up two-step verification" }).click();
  await tab.getByRole("img", { name: "QR code for your authenticator app" }).waitFor();
  bad.push(...(await axe(tab, "two-step set-up")));
  assert.deepEqual(bad, [], "no serious or critical axe violations");
  await audit.close();
});

/// A platform authenticator in the tab (the DevTools protocol's WebAuthn domain): a
/// discoverable-credential CTAP2 device that verifies the user, with presence simulated.
async function virtualAuthenticator(page) {
  const cdp = await page.context().newCDPSession(page);
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
  return { cdp, authenticatorId };
}

test("a passkey made on the account page is then the only thing needed to sign in at a relying party", async () => {
  const context = await newContext();
  const page = await openTab(context);
  const { cdp, authenticatorId } = await virtualAuthenticator(page);
  await page.goto(`${latchkey.issuer}/account`);
  await signIn(page, users.pia);
  await page.getByRole("heading", { name: "Your account" }).waitFor();
  const section = page.locator("section", { has: page.getByRole("heading", { name: "Passkeys" }) });
  await section.getByText("You have no passkey.").waitFor();
  await section.getByLabel("Name for this passkey").fill("Test laptop");
  // The password is checked again before a passkey is made; a wrong one is refused
  // in the server's words, and nothing reaches the authenticator.
  await section.getByLabel("Current password").fill("not pia's password");
  await section.getByRole("button", { name: "Add a passkey" }).click();
  await section.getByRole("alert").filter({ hasText: "invalid username or password" }).waitFor();
  assert.equal((await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials.length, 0);
  // The one problem on the way, and the expected one: the refused start.
  assert.deepEqual(page.problems.splice(0), [`401 ${latchkey.issuer}/account/passkeys/start`]);
  await section.getByLabel("Current password").fill(users.pia.password);
  await section.getByRole("button", { name: "Add a passkey" }).click();
  await page.getByRole("status").filter({ hasText: "The passkey is added." }).waitFor();
  assert.equal(await section.locator(".passkey-name").textContent(), "Test laptop");
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  assert.equal(credentials.length, 1);
  assert.equal(credentials[0].isResidentCredential, true, "a discoverable credential: no username needed");
  assert.equal(credentials[0].rpId, "localhost");

  // Sign out of the browser, then sign in at the gallery with the passkey alone.
  await page.goto(`${latchkey.issuer}/oauth2/logout`);
  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await page.getByRole("heading", { name: "You are signed out" }).waitFor();
  await page.goto(`${photos.base}/login`);
  await page.waitForURL(onLatchkey("/ui/signin"));
  // The conditional request (autofill) may answer first; else the button does.
  await page
    .getByRole("button", { name: "Sign in with a passkey" })
    .click({ timeout: 3_000 })
    .catch(() => {});
  await consent(page);
  const result = await signedIn(page, photos);
  assert.deepEqual(result.id_token_claims.amr, ["swk", "user"], "signed in by the passkey, no password typed");
  assert.equal(result.userinfo.preferred_username, "pia");
  const used = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  assert.ok(used.credentials[0].signCount >= 1, "the authenticator signed");
  noProblems(page);
  await context.close();
});

/// The one link to `path` (with a `token=` starting `prefix`) in each part of a mailed
/// message, the plain text and the HTML (its hrefs, entities decoded): they must agree.
function mailedLink(message, path, prefix) {
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const link = new RegExp(`${escape(`${latchkey.issuer}${path}?token=${prefix}`)}[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])`, "g");
  const decode = (s) =>
    s.replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
      .replace(/&#([0-9]+);/g, (_, d) => String.fromCodePoint(Number(d)))
      .replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  const inText = [...new Set(message.text.match(link) ?? [])];
  const hrefs = [...message.html.matchAll(/href="([^"]*)"/g)].map((m) => decode(m[1]));
  const inHtml = [...new Set(hrefs.filter((h) => new RegExp(`^${link.source}$`).test(h)))];
  assert.equal(inText.length, 1, `one ${path} link in the text part:\n${message.text}`);
  assert.equal(inHtml.length, 1, `one ${path} link (an href) in the HTML part:\n${message.html}`);
  assert.equal(inHtml[0], inText[0], "both parts give the same link");
  return inText[0];
}

/// The headers every page a mailed link opens must carry: the token in its URL never
/// leaves in a Referer, and no cache keeps the page.
function linkPageHeaders(response, what) {
  const h = response.headers();
  assert.equal(h["referrer-policy"], "no-referrer", `${what}: referrer-policy`);
  assert.match(h["cache-control"] ?? "", /\bno-store\b/, `${what}: cache-control`);
}

test("password reset by mail through a real SMTP server: the address verified by its link, a reset link, the new password signs in", async () => {
  const rita = { username: "rita", password: "rita's first long password", email: "rita@example.com" };
  const newPassword = "rita's brand-new long password";

  // An admin makes rita; her address is to be proven, so a verification link is mailed.
  const token = await latchkey.adminToken(admin);
  const created = await latchkey.request("POST", "/admin/users", { token, body: rita });
  assert.equal(created.status, 201, `POST /admin/users: ${created.text}`);
  assert.equal(created.body.user.username, "rita");
  assert.equal(created.body.user.email, rita.email);
  assert.equal(created.body.user.email_verified, false, "a new address is unverified");
  const ritaId = created.body.user.id;

  const verification = await inbox.waitFor(rita.email, 1);
  assert.ok(verification.messageId, "the message has a Message-ID");
  const verifyLink = mailedLink(verification, "/ui/verify-email", "lk_ev_");

  const context = await newContext();
  const page = await openTab(context);
  const verifyPage = await page.goto(verifyLink);
  assert.equal(verifyPage.status(), 200);
  linkPageHeaders(verifyPage, "the verification page");
  await page.getByRole("heading", { name: "Confirm your email address" }).waitFor();
  assert.match(await page.locator("main").textContent(), /rita@example\.com/, "the page names the address");
  const confirm = page.getByRole("button", { name: "Confirm", exact: true });
  const form = page.locator("form", { has: confirm });
  assert.equal((await form.getAttribute("method"))?.toLowerCase(), "post", "opening the link changes nothing: a form POSTs");
  const csrf = form.locator("input[type=hidden][name=csrf_token]");
  assert.equal(await csrf.count(), 1);
  assert.ok((await csrf.getAttribute("value"))?.length > 0, "the form carries a CSRF token");
  await confirm.click();
  await page.getByRole("heading", { name: "Your email address is confirmed" }).waitFor();
  const verified = await latchkey.request("GET", `/admin/users/${ritaId}`, { token });
  assert.equal(verified.status, 200, verified.text);
  assert.equal(verified.body.email_verified, true, "the admin API sees the address verified");

  // At a relying party's sign-in, rita has forgotten her password.
  await page.goto(`${photos.base}/login`);
  await page.waitForURL(onLatchkey("/ui/signin"));
  const forgot = page.getByRole("link", { name: "Forgot your password?" });
  await forgot.waitFor();
  const requestPage = page.waitForResponse((r) => onLatchkey("/ui/password-reset")(new URL(r.url())) && r.request().method() === "GET");
  await forgot.click();
  await page.waitForURL(onLatchkey("/ui/password-reset"));
  assert.equal((await requestPage).status(), 200);
  linkPageHeaders(await requestPage, "the reset request page");
  await page.getByRole("heading", { name: "Reset your password" }).waitFor();
  const login = page.getByLabel("Username or email address");
  assert.equal(await login.getAttribute("name"), "login");
  await login.fill("rita");
  await page.getByRole("button", { name: "Send the link" }).click();
  await page.getByRole("heading", { name: "Check your mail" }).waitFor();
  const sentPage = await page.locator("main").textContent();

  const reset = await inbox.waitFor(rita.email, 2);
  assert.match(reset.subject, /Reset your/, `the subject: ${reset.subject}`);
  assert.notEqual(reset.messageId, verification.messageId);
  const resetLink = mailedLink(reset, "/ui/password-reset", "lk_pr_");

  const resetPage = await page.goto(resetLink);
  assert.equal(resetPage.status(), 200);
  linkPageHeaders(resetPage, "the new-password page");
  await page.getByRole("heading", { name: "Choose a new password" }).waitFor();
  assert.match(await page.locator("main").textContent(), /rita/, "the page names the account");
  const password = page.getByLabel("New password", { exact: true });
  const again = page.getByLabel("New password, again", { exact: true });
  assert.equal(await password.getAttribute("name"), "password");
  assert.equal(await again.getAttribute("name"), "confirm");
  await password.fill(newPassword);
  await again.fill(newPassword);
  await page.getByRole("button", { name: "Set the password" }).click();
  await page.getByRole("heading", { name: "Your password is changed" }).waitFor();
  // The link worked once.
  const used = await page.goto(resetLink);
  assert.ok(used.status() >= 400, `a used reset link is refused (${used.status()})`);
  noProblems(page);
  await context.close();

  // The new password signs rita in at the relying party (code flow, consent).
  const fresh = await newContext();
  const tab = await openTab(fresh);
  await tab.goto(`${photos.base}/login`);
  await signIn(tab, { username: "rita", password: newPassword });
  await consent(tab);
  const r = await signedIn(tab, photos);
  assert.equal(r.userinfo.preferred_username, "rita");
  assert.equal(r.id_token_claims.sub, ritaId);
  assert.equal(r.userinfo.email, rita.email);
  assert.equal(r.userinfo.email_verified, true);
  assert.deepEqual(r.id_token_claims.amr, ["pwd"]);
  noProblems(tab);
  await fresh.close();

  // The old one is refused on the hosted sign-in page.
  const old = await newContext();
  const oldTab = await openTab(old);
  await oldTab.goto(`${photos.base}/login`);
  await signIn(oldTab, rita);
  await oldTab.getByRole("alert").filter({ hasText: "Invalid username or password." }).waitFor();
  assert.equal(oldTab.url().startsWith(photos.base), false, "not signed in");
  await old.close();

  // An account that does not exist gets the same answer, and no message is sent.
  const before = inbox.messages.length;
  const unknown = await newContext();
  const other = await openTab(unknown);
  await other.goto(`${latchkey.issuer}/ui/password-reset`);
  await other.getByLabel("Username or email address").fill("nobody");
  await other.getByRole("button", { name: "Send the link" }).click();
  await other.getByRole("heading", { name: "Check your mail" }).waitFor();
  assert.equal(await other.locator("main").textContent(), sentPage, "the same page as for rita");
  await new Promise((r) => setTimeout(r, 1_500));
  assert.deepEqual(
    inbox.messages.slice(before).map((m) => `${m.to}: ${m.subject}`),
    [],
    "no message for an unknown account",
  );
  assert.equal(inbox.to(rita.email).length, 2, "rita got two messages, no more");
  noProblems(other);
  await unknown.close();
});
