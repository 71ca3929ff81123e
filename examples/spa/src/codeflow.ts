// The OpenID Connect code flow for a browser app, with oidc-client-ts. No framework here;
// src/oidc.ts is the page around it.
// - Authorization code with PKCE (S256, the library's default), against any provider it
//   finds by discovery at `{issuer}/.well-known/openid-configuration`.
// - Every token (access, id, refresh) lives in this page's memory only: the user store
//   is an InMemoryWebStorage, so a reload forgets them. Signing in again is then one
//   redirect without a password, as long as the provider's browser session lasts.
// - The transient sign-in state (state, nonce, PKCE code_verifier) is kept in
//   sessionStorage between the redirect to the provider and the return: the document
//   that started the sign-in is gone by then, and sessionStorage is what survives for
//   this tab and origin. It holds no token, and the library deletes it when the
//   callback is processed.
// - Silent renewal by refresh-token rotation: before the access token expires, the
//   library posts grant_type=refresh_token to the token endpoint and keeps the new
//   (rotated) refresh token. No iframe, no prompt=none page.
import { ErrorResponse, InMemoryWebStorage, Log, UserManager, WebStorageStateStore } from "oidc-client-ts";
import type { User } from "oidc-client-ts";

export type { User };

export type CodeFlowConfig = { issuer: string; client_id: string };

/// The deployment's settings, read at run time so one build serves any environment.
export async function loadConfig(url = "oidc-config.json"): Promise<CodeFlowConfig> {
  const response = await fetch(new URL(url, document.baseURI), { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  const config = (await response.json()) as Partial<CodeFlowConfig>;
  if (typeof config.issuer !== "string" || typeof config.client_id !== "string") {
    throw new Error(`${url} must name an issuer and a client_id`);
  }
  return { issuer: config.issuer, client_id: config.client_id };
}

/// The page the provider sends the user back to: this one. It must be the document
/// that keeps running afterwards, since the tokens it receives live in its memory.
export const redirectUri = () => new URL("oidc.html", document.baseURI).href;

export function makeUserManager(config: CodeFlowConfig): UserManager {
  // The library's warnings and errors go to the console (by default it says nothing).
  Log.setLogger(console);
  Log.setLevel(Log.WARN);
  return new UserManager({
    authority: config.issuer,
    client_id: config.client_id,
    redirect_uri: redirectUri(),
    response_type: "code",
    scope: "openid profile email roles",
    loadUserInfo: true,
    automaticSilentRenew: true,
    // Tokens in memory only.
    userStore: new WebStorageStateStore({ store: new InMemoryWebStorage() }),
    // The library's default, spelled out: the sign-in state across the redirect.
    stateStore: new WebStorageStateStore({ store: window.sessionStorage }),
    // No cookies on the token, userinfo and revocation calls: the tokens travel in the
    // body and the Authorization header.
    fetchRequestCredentials: "omit",
  });
}

/// Did the provider just send the user back here (with a code or an error)?
export function isCallback(url = new URL(location.href)): boolean {
  const query = url.searchParams;
  return query.has("state") && (query.has("code") || query.has("error"));
}

/// The provider's answer to a failed request (`invalid_grant` and the like), as opposed
/// to a network failure.
export const isProviderError = (err: unknown): err is ErrorResponse => err instanceof ErrorResponse;

/// Calls `request` with the access token; on 401 renews once by the refresh token and
/// retries once. Null when there is no user, or the session has ended (the user is then
/// forgotten).
export async function withAccessToken(
  manager: UserManager,
  request: (accessToken: string) => Promise<Response>,
): Promise<Response | null> {
  let user = await manager.getUser();
  if (!user) return null;
  const response = await request(user.access_token);
  if (response.status !== 401) return response;
  try {
    user = await manager.signinSilent();
  } catch (err) {
    if (!isProviderError(err)) throw err;
    await manager.removeUser();
    return null;
  }
  return user ? request(user.access_token) : null;
}

/// Signing out, until the provider has an end_session_endpoint: revoking the refresh
/// token ends the whole session at the provider (its access tokens included), then the
/// user is forgotten here. The provider's browser session (its SSO cookie) is not ended:
/// signing in again will not ask for the password.
export async function signOut(manager: UserManager): Promise<void> {
  manager.stopSilentRenew();
  // A renewal already on its way may still land after this: forget what it brings. The
  // next sign-in is a new document (a redirect), with a new manager.
  manager.events.addUserLoaded(() => void manager.removeUser());
  try {
    await manager.revokeTokens(["refresh_token"]);
  } finally {
    await manager.removeUser();
  }
}
