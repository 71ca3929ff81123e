// The code-flow page: sign in through the provider's hosted pages, show who is signed
// in, call userinfo with the access token, sign out. See src/codeflow.ts for the tokens.
import { isCallback, isProviderError, loadConfig, makeUserManager, signOut, withAccessToken } from "./codeflow";
import type { User } from "./codeflow";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const show = (id: string, visible: boolean) => $(id).classList.toggle("hidden", !visible);
const setError = (message: string) => ($("error").textContent = message);
const setStatus = (message: string) => ($("status").textContent = message);
const describe = (err: unknown) => (err instanceof Error ? err.message : String(err));

let renewals = 0;
let heldToken: string | null = null;
let expiryTimer: number | undefined;

function showSignedOut(status = "Signed out.") {
  window.clearInterval(expiryTimer);
  heldToken = null;
  setStatus(status);
  show("signed-in", false);
  show("signed-out", true);
}

function showUser(user: User) {
  // A new access token for the same user is a renewal (the first one is the sign-in).
  if (heldToken && user.access_token !== heldToken) renewals += 1;
  heldToken = user.access_token;
  const profile = user.profile;
  $("who").textContent = String(profile.preferred_username ?? profile.name ?? profile.sub);
  $("profile").textContent = JSON.stringify(profile, null, 2);
  $("renewals").textContent = String(renewals);
  const tick = () => ($("expires-in").textContent = String(user.expires_in ?? "?"));
  tick();
  window.clearInterval(expiryTimer);
  expiryTimer = window.setInterval(tick, 1000);
  setStatus("Signed in.");
  show("signed-out", false);
  show("signed-in", true);
}

async function main() {
  const config = await loadConfig();
  const manager = makeUserManager(config);

  // Renewals (and the sign-in itself) load a user; a sign-out or a failed renewal unloads.
  manager.events.addUserLoaded((user) => showUser(user));
  manager.events.addUserUnloaded(() => showSignedOut());
  manager.events.addSilentRenewError(async (err) => {
    if (isProviderError(err)) {
      // The provider refused the refresh token: the session has ended (signed out
      // elsewhere, revoked, or expired). Nothing to retry.
      await manager.removeUser();
      showSignedOut("Your session has ended. Please sign in again.");
    } else {
      setError(`Could not renew the access token: ${describe(err)}`);
    }
  });

  async function callUserinfo() {
    const endpoint = await manager.metadataService.getUserInfoEndpoint();
    const response = await withAccessToken(manager, (token) =>
      fetch(endpoint, { headers: { Authorization: `Bearer ${token}` } }),
    );
    if (!response) return showSignedOut("Your session has ended. Please sign in again.");
    if (!response.ok) return setError(`userinfo answered ${response.status}`);
    $("userinfo").textContent = JSON.stringify(await response.json(), null, 2);
    setError("");
  }

  $("sign-in").addEventListener("click", () => {
    setError("");
    manager.signinRedirect().catch((err) => setError(`Cannot sign in: ${describe(err)}`));
  });
  $("call-userinfo").addEventListener("click", () => {
    callUserinfo().catch((err) => setError(`Cannot call userinfo: ${describe(err)}`));
  });
  $("sign-out").addEventListener("click", async () => {
    try {
      await signOut(manager);
      setError("");
    } catch (err) {
      setError(`Signed out here, but the provider could not be told: ${describe(err)}`);
    }
    showSignedOut("Signed out.");
  });
  if (isCallback()) {
    try {
      await manager.signinRedirectCallback();
    } catch (err) {
      showSignedOut("Not signed in.");
      return setError(`Sign-in failed: ${describe(err)}`);
    } finally {
      // The code and state are spent: keep them out of the address bar and history.
      history.replaceState(null, "", location.pathname);
    }
    await callUserinfo();
    return;
  }
  // A fresh document: nothing in memory, so signed out (the provider may still have a
  // browser session, which makes the next sign-in passwordless).
  showSignedOut("Not signed in.");
}

main().catch((err) => {
  showSignedOut("Not signed in.");
  setError(describe(err));
});
