// Token handling for a browser app, the way Latchkey expects it:
// - the access token lives in this module's memory only (never localStorage);
// - the refresh token lives only in Latchkey's HttpOnly cookie, which JavaScript cannot
//   read; the browser sends it to /auth/* because every call uses credentials: "include";
// - a 401 triggers one silent refresh and one retry;
// - refreshes are single-flight across tabs with the Web Locks API, so two tabs never
//   present the same (already rotated) refresh token at once;
// - with `dpop: true` (src/dpop.ts), the session and its tokens are bound to a key pair
//   the browser cannot export: login and refresh carry a DPoP proof, the access token
//   goes as `Authorization: DPoP <token>` with a proof of its own, and a copied refresh
//   cookie or access token is useless without that key. Without it, plain Bearer tokens.
import createClient from "openapi-fetch";
import { dpopMiddleware } from "./dpop";
import type { paths } from "./generated/api";

/// Latchkey requires this header on its cookie endpoints (CSRF defence).
const CSRF = { "X-Requested-With": "latchkey" } as const;

export type Session = { accessToken: string };

export type ApiOptions = {
  /// Bind the session to a DPoP key (RFC 9449). `baseUrl` must then be Latchkey's
  /// issuer URL, since each proof names the URL it is for.
  dpop?: boolean;
};

export function makeApi(baseUrl: string, options: ApiOptions = {}) {
  const api = createClient<paths>({ baseUrl, credentials: "include" });
  if (options.dpop) api.use(dpopMiddleware());
  return api;
}

export type Api = ReturnType<typeof makeApi>;

let accessToken: string | null = null;
/// How the token is sent: `DPoP` when the server bound it to our key, else `Bearer`.
let scheme = "Bearer";

/// The token part of a login or refresh answer.
type Issued = { access_token?: string; token_type?: string };

function keep(issued: Issued): boolean {
  accessToken = issued.access_token ?? null;
  scheme = issued.token_type?.toLowerCase() === "dpop" ? "DPoP" : "Bearer";
  return accessToken !== null;
}

export function currentToken(): string | null {
  return accessToken;
}

export function forget(): void {
  accessToken = null;
}

export type LoginResult = { kind: "signed-in" } | { kind: "mfa"; mfaToken: string } | { kind: "error"; message: string };

export async function login(api: Api, username: string, password: string): Promise<LoginResult> {
  const { data, error } = await api.POST("/auth/login", { body: { username, password }, headers: CSRF });
  if (error || !data) return { kind: "error", message: error?.error_description ?? "login failed" };
  if (data.mfa_required && data.mfa_token) return { kind: "mfa", mfaToken: data.mfa_token };
  return signedInWith(data);
}

/// Keeps the access token of a finished login (password, second factor or passkey).
export function signedInWith(issued: Issued): LoginResult {
  return keep(issued) ? { kind: "signed-in" } : { kind: "error", message: "no access token in the response" };
}

export async function completeMfa(api: Api, mfaToken: string, code: string): Promise<LoginResult> {
  const { data, error } = await api.POST("/auth/login/mfa", { body: { mfa_token: mfaToken, code }, headers: CSRF });
  if (error || !data) return { kind: "error", message: error?.error_description ?? "invalid code" };
  return signedInWith(data);
}

/// One refresh at a time across every tab of this origin. A 409 means another request
/// rotated the cookie an instant earlier: the browser now holds the new cookie, so
/// retrying once succeeds. A network error or a 5xx may mean the server rotated the
/// cookie but its answer (with the new cookie) was lost: the browser still holds the
/// old one, and Latchkey answers a retry inside its grace window with the same new
/// cookie, so retrying once is safe too — the session is neither lost nor forked.
export async function refresh(api: Api): Promise<boolean> {
  const run = async () => {
    for (let attempt = 0; attempt < 2; attempt++) {
      let answer;
      try {
        answer = await api.POST("/auth/refresh", { headers: CSRF });
      } catch (lost) {
        if (attempt === 1) throw lost; // twice: the server is out of reach
        continue; // the answer was lost on the way
      }
      const { data, response } = answer;
      if (data) return keep(data);
      if (response.status !== 409 && response.status < 500) break;
    }
    accessToken = null;
    return false;
  };
  if ("locks" in navigator) {
    return navigator.locks.request("latchkey-refresh", run);
  }
  return run();
}

/// Calls `request` with the current access token; when the token is refused, refreshes
/// once and retries.
export async function withAuth<T>(
  api: Api,
  request: (headers: { Authorization: string }) => Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T | null> {
  for (let attempt = 0; attempt < 2; attempt++) {
    if (!accessToken && !(await refresh(api))) return null;
    const { data, error, response } = await request({ Authorization: `${scheme} ${accessToken}` });
    // Only a refused token is worth a refresh (RFC 6750 §3.1, RFC 9449 §7.1); a 401 for
    // a wrong password or code is the answer.
    const refusedToken =
      (error as { error?: string } | undefined)?.error === "invalid_token" ||
      /error="invalid_token"/.test(response.headers.get("WWW-Authenticate") ?? "");
    if (response.status !== 401 || !refusedToken) return data ?? null;
    if (!(await refresh(api))) return null;
  }
  return null;
}

export async function logout(api: Api): Promise<void> {
  await api.POST("/auth/logout", { headers: CSRF });
  accessToken = null;
}

export async function logoutEverywhere(api: Api): Promise<void> {
  await withAuth(api, (headers) => api.POST("/auth/logout-all", { headers }));
  accessToken = null;
}
