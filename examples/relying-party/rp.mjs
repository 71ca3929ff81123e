// A relying party as a third party would write one: a small server-side web app that
// signs its users in with panva's openid-client (unmodified), knowing only the issuer's
// URL, its client id and secret, and its own callback URL.
//
//   GET /login      discovery → PKCE S256 + state + nonce kept in the app's own session
//                   → 302 to the authorization endpoint (prompt and max_age pass through)
//   GET /callback   authorizationCodeGrant (state, nonce, PKCE, iss and the id_token
//                   checked by the library) → fetchUserInfo → refreshTokenGrant twice;
//                   the page shows what it learned as JSON in <pre id="result">, or what
//                   went wrong in <pre id="error">.
//   GET /whoami     whether this app's own session (its cookie) is still signed in.
//   GET /logout     RP-Initiated Logout: buildEndSessionUrl with the id_token as hint,
//                   this app's /signed-out as post_logout_redirect_uri, and a state.
//   GET /signed-out where the provider sends the browser back (state checked).
//   POST /backchannel-logout
//                   Back-Channel Logout: the logout_token verified with panva's jose
//                   (signature against the provider's JWKS, typ logout+jwt, iss, aud,
//                   iat, the event, no nonce), then every session of this app with that
//                   sid (or sub) ends; 200, or 400 for a token it refuses.
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
import * as client from "openid-client";
import { createRemoteJWKSet, jwtVerify } from "jose";

const LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout";

/// Back-Channel Logout §2.6, step by step, with jose: the claims, or a thrown error.
async function verifyLogoutToken(token, { jwks, issuer, clientId }) {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience: clientId,
    typ: "logout+jwt",
    algorithms: ["RS256"],
    requiredClaims: ["iat", "jti", "events"],
    maxTokenAge: "2 minutes",
  });
  if (typeof payload.events?.[LOGOUT_EVENT] !== "object") throw new Error("no back-channel logout event");
  if ("nonce" in payload) throw new Error("a logout token must not carry a nonce");
  if (!payload.sub && !payload.sid) throw new Error("neither sub nor sid");
  return { payload, protectedHeader };
}

async function readForm(req) {
  let body = "";
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 64 * 1024) throw new Error("body too large");
  }
  return new URLSearchParams(body);
}

const escape = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, title, id, value) {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
  res.end(
    `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head>` +
      `<body><main><h1>${escape(title)}</h1><pre id="${id}">${escape(JSON.stringify(value, null, 2))}</pre></main></body></html>`,
  );
}

/// What a failure says, for the page: openid-client's errors carry a code, and the
/// server's own error and description when it answered with one.
function describe(err) {
  const out = { name: err?.name, message: err?.message };
  for (const key of ["code", "error", "error_description", "status"]) if (err?.[key] !== undefined) out[key] = err[key];
  if (err?.cause !== undefined) {
    const c = err.cause;
    out.cause = c instanceof Error ? { name: c.name, message: c.message, code: c.code } : c;
  }
  return out;
}

const header = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[0], "base64url").toString("utf8"));

/**
 * Starts a relying party on http://127.0.0.1:PORT. `auth` is "basic" or "post": how it
 * authenticates to the token endpoint (client_secret_basic or client_secret_post).
 */
export async function startRelyingParty({ name, issuer, clientId, clientSecret, port, auth = "basic", scope }) {
  const base = `http://127.0.0.1:${port}`;
  const redirectUri = `${base}/callback`;
  const clientAuth = auth === "post" ? client.ClientSecretPost(clientSecret) : client.ClientSecretBasic(clientSecret);
  // Plain http is for this loopback test only; everything else is the library's default.
  const config = await client.discovery(new URL(issuer), clientId, { client_secret: clientSecret }, clientAuth, {
    execute: [client.allowInsecureRequests],
  });
  const cookieName = `rp_${clientId.replace(/[^A-Za-z0-9]/g, "_")}`;
  const sessions = new Map();
  // This app's signed-in sessions, by its cookie: the id_token (the logout hint) and
  // its sid and sub (what a logout token names).
  const signedIn = new Map();
  const logouts = []; // every logout token received: { ok, claims | error }
  const pendingLogouts = new Map(); // state → cookie, for /signed-out
  const jwks = createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri));
  const cookieOf = (req) => {
    for (const m of (req.headers.cookie ?? "").matchAll(/(?:^|;\s*)([^=]+)=([^;]*)/g)) {
      if (m[1] === cookieName) return m[2];
    }
    return undefined;
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, base);
    try {
      if (url.pathname === "/login") {
        const id = randomBytes(16).toString("base64url");
        const flow = {
          codeVerifier: client.randomPKCECodeVerifier(),
          state: client.randomState(),
          nonce: client.randomNonce(),
        };
        const params = {
          redirect_uri: redirectUri,
          scope: scope ?? "openid profile email roles",
          code_challenge: await client.calculatePKCECodeChallenge(flow.codeVerifier),
          code_challenge_method: "S256",
          state: flow.state,
          nonce: flow.nonce,
        };
        for (const key of ["prompt", "max_age"]) {
          const value = url.searchParams.get(key);
          if (value !== null) params[key] = value;
        }
        if (params.max_age !== undefined) flow.maxAge = Number(params.max_age);
        sessions.set(id, flow);
        const to = client.buildAuthorizationUrl(config, params);
        res.writeHead(302, {
          location: to.href,
          "set-cookie": `${cookieName}=${id}; HttpOnly; SameSite=Lax; Path=/`,
          "cache-control": "no-store",
        });
        return res.end();
      }
      if (url.pathname === "/backchannel-logout" && req.method === "POST") {
        const token = (await readForm(req)).get("logout_token");
        try {
          const { payload } = await verifyLogoutToken(token ?? "", { jwks, issuer: config.serverMetadata().issuer, clientId });
          for (const [cookie, session] of signedIn) {
            if (payload.sid ? session.sid === payload.sid : session.sub === payload.sub) signedIn.delete(cookie);
          }
          logouts.push({ ok: true, claims: payload });
          res.writeHead(200, { "cache-control": "no-store" });
        } catch (err) {
          logouts.push({ ok: false, error: err.message });
          res.writeHead(400, { "content-type": "application/json", "cache-control": "no-store" });
          return res.end(JSON.stringify({ error: "invalid_request", error_description: err.message }));
        }
        return res.end();
      }
      if (url.pathname === "/whoami") {
        const session = signedIn.get(cookieOf(req));
        return page(res, 200, `${name}: ${session ? "signed in" : "signed out"}`, "whoami", session ? { sub: session.sub, sid: session.sid } : null);
      }
      if (url.pathname === "/logout") {
        const cookie = cookieOf(req);
        const session = signedIn.get(cookie);
        if (!session) return page(res, 400, `${name}: not signed in`, "error", { message: "no session" });
        const state = client.randomState();
        pendingLogouts.set(state, cookie);
        const to = client.buildEndSessionUrl(config, {
          id_token_hint: session.idToken,
          post_logout_redirect_uri: `${base}/signed-out`,
          state,
        });
        res.writeHead(302, { location: to.href, "cache-control": "no-store" });
        return res.end();
      }
      if (url.pathname === "/signed-out") {
        const state = url.searchParams.get("state");
        if (!state || !pendingLogouts.has(state)) {
          return page(res, 400, `${name}: unexpected sign-out`, "error", { message: "unknown state", state });
        }
        signedIn.delete(pendingLogouts.get(state));
        pendingLogouts.delete(state);
        return page(res, 200, `Signed out of ${name}`, "signed-out", { state });
      }
      if (url.pathname === "/callback") {
        const sid = cookieOf(req);
        const flow = sid && sessions.get(sid);
        if (!flow) return page(res, 400, `${name}: no sign-in in progress`, "error", { message: "no session cookie" });
        sessions.delete(sid);
        const tokens = await client.authorizationCodeGrant(config, url, {
          pkceCodeVerifier: flow.codeVerifier,
          expectedState: flow.state,
          expectedNonce: flow.nonce,
          idTokenExpected: true,
          ...(flow.maxAge !== undefined ? { maxAge: flow.maxAge } : {}),
        });
        const claims = tokens.claims();
        signedIn.set(sid, { idToken: tokens.id_token, sid: claims.sid, sub: claims.sub });
        const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
        const result = {
          client_id: clientId,
          id_token_header: header(tokens.id_token),
          id_token_claims: claims,
          sent_nonce: flow.nonce,
          token_type: tokens.token_type,
          scope: tokens.scope,
          expires_in: tokens.expiresIn(),
          has_refresh_token: typeof tokens.refresh_token === "string",
          userinfo,
        };
        if (result.has_refresh_token) {
          const first = await client.refreshTokenGrant(config, tokens.refresh_token);
          const second = await client.refreshTokenGrant(config, first.refresh_token);
          result.refresh = {
            rotated: typeof first.refresh_token === "string" && first.refresh_token !== tokens.refresh_token,
            rotated_again: typeof second.refresh_token === "string" && second.refresh_token !== first.refresh_token,
            new_access_token: first.access_token !== tokens.access_token,
            id_token_claims: first.id_token ? first.claims() : null,
            userinfo: await client.fetchUserInfo(config, second.access_token, claims.sub),
          };
        }
        return page(res, 200, `Signed in to ${name}`, "result", result);
      }
      res.writeHead(404).end();
    } catch (err) {
      page(res, 400, `${name}: sign-in failed`, "error", describe(err));
    }
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { name, base, clientId, redirectUri, config, logouts, close: () =>
      new Promise((r) => {
        server.close(r);
        server.closeAllConnections();
      }),
  };
}
