import { completeMfa, forget, login, logout, logoutEverywhere, makeApi, refresh, withAuth } from "./auth";
import { addPasskey, passkeyLogin, passkeysSupported } from "./passkeys";

// The API's origin differs from this page's (CORS with credentials is exercised for
// real). `?api=` overrides it, which the browser tests use.
const query = new URLSearchParams(location.search);
const apiBase = query.get("api") ?? "http://127.0.0.1:8080";
// The session is bound to a DPoP key of this browser (src/dpop.ts); `?dpop=off` runs the
// plain cookie flow, with Bearer tokens, which the browser tests also drive.
const api = makeApi(apiBase, { dpop: query.get("dpop") !== "off" });

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const show = (id: string, visible: boolean) => $(id).classList.toggle("hidden", !visible);
const setError = (message: string) => ($("error").textContent = message);
let mfaToken: string | null = null;

function showLogin(message = "") {
  forget();
  setError(message);
  show("login-form", true);
  show("mfa-form", false);
  show("signed-in", false);
}

async function showSignedIn() {
  const me = await withAuth(api, (headers) => api.GET("/auth/me", { headers }));
  if (!me) return showLogin("Your session has ended. Please log in again.");
  setError("");
  $("who").textContent = me.username;
  $("me").textContent = JSON.stringify({ id: me.id, roles: me.roles, totp: me.totp_enabled }, null, 2);
  const passkeys = await withAuth(api, (headers) => api.GET("/auth/passkeys", { headers }));
  $("passkey-count").textContent = passkeys ? String(passkeys.length) : "?";
  show("login-form", false);
  show("mfa-form", false);
  show("signed-in", true);
  await countSessions();
}

async function countSessions() {
  const sessions = await withAuth(api, (headers) => api.GET("/auth/sessions", { headers }));
  if (!sessions) return showLogin("Your session has ended. Please log in again.");
  $("session-count").textContent = String(sessions.length);
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = await login(api, $<HTMLInputElement>("username").value, $<HTMLInputElement>("password").value);
  if (result.kind === "error") return setError(result.message);
  if (result.kind === "mfa") {
    mfaToken = result.mfaToken;
    show("login-form", false);
    show("mfa-form", true);
    return;
  }
  await showSignedIn();
});

$("mfa-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!mfaToken) return showLogin();
  const result = await completeMfa(api, mfaToken, $<HTMLInputElement>("code").value);
  if (result.kind === "error") return setError(result.message);
  mfaToken = null;
  await showSignedIn();
});

show("passkey-login", passkeysSupported());
$("passkey-login").addEventListener("click", async () => {
  const result = await passkeyLogin(api);
  if (result.kind === "error") return setError(result.message);
  await showSignedIn();
});
$("add-passkey").addEventListener("click", async () => {
  const password = $<HTMLInputElement>("passkey-password");
  const added = await addPasskey(api, "SPA passkey", password.value);
  password.value = "";
  if (!added) return setError("The passkey could not be added (is the password right?).");
  await showSignedIn();
});

$("call-api").addEventListener("click", () => countSessions());
$("refresh-now").addEventListener("click", async () => {
  try {
    if (await refresh(api)) await showSignedIn();
    else showLogin("Your session has ended. Please log in again.");
  } catch {
    showLogin("Cannot reach the server.");
  }
});
$("logout").addEventListener("click", async () => {
  await logout(api);
  showLogin("Logged out.");
});
$("logout-all").addEventListener("click", async () => {
  await logoutEverywhere(api);
  showLogin("Logged out everywhere.");
});

// A reload keeps the session: the cookie survives, the access token is fetched again.
refresh(api)
  .then((ok) => (ok ? showSignedIn() : showLogin()))
  .catch(() => showLogin("Cannot reach the server."));
