// The peer of `latchkey-bench --peer oidc-provider`: panva's oidc-provider (OpenID
// Certified) configured as close to Latchkey as it goes:
//   - one confidential client for client_credentials (client_secret_basic);
//   - RS256 JWT access tokens (RFC 9068 profile) through resource indicators, 2048-bit key;
//   - refresh tokens rotated on every use, minted through the authorization-code flow
//     (with PKCE) and the provider's development login/consent interactions.
// Storage is oidc-provider's in-memory adapter: the peer keeps tokens in memory while
// Latchkey writes them durably. Those differences are printed beside the figures.
//
// Usage: node server.mjs <refresh-token-count>
// Prints one JSON line on stdout once ready: {base, ready_ms, client_id, client_secret,
// refresh_client_id, refresh_client_secret, refresh_tokens: [...]}, where ready_ms is the
// time from the process's start to the provider answering (before the tokens are minted);
// runs until killed.

import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const refreshTokenCount = Number(process.argv[2] ?? 0);
const resource = 'https://api.bench.invalid';
const service = { client_id: 'bench-svc', client_secret: randomBytes(32).toString('base64url') };
const web = { client_id: 'bench-web', client_secret: randomBytes(32).toString('base64url') };
const redirectUri = 'http://127.0.0.1/callback';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'bench', use: 'sig', alg: 'RS256' };

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(base, {
  clients: [
    {
      ...service,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    {
      ...web,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [redirectUri],
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  scopes: ['openid', 'offline_access', 'api'],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        audience: resource,
        accessTokenTTL: 900,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  // Latchkey rotates on every use; so does the peer here.
  rotateRefreshToken: true,
  ttl: {
    AccessToken: 900,
    ClientCredentials: 900,
    RefreshToken: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    Session: 14 * 24 * 3600,
    Interaction: 600,
    IdToken: 900,
  },
});
// Quiet: oidc-provider warns about the development interactions and in-memory adapter.
provider.on('server_error', (ctx, err) => console.error('peer server_error:', err));
server.on('request', provider.callback());
const readyMs = process.uptime() * 1000;

const refreshTokens = [];
for (let i = 0; i < refreshTokenCount; i += 1) {
  refreshTokens.push(await mintRefreshToken(`bench-user-${i}`));
}
process.stdout.write(`${JSON.stringify({
  base,
  ready_ms: readyMs,
  client_id: service.client_id,
  client_secret: service.client_secret,
  refresh_client_id: web.client_id,
  refresh_client_secret: web.client_secret,
  refresh_tokens: refreshTokens,
})}\n`);

/** Walks the authorization-code flow as a browser would: login, consent, code, tokens. */
async function mintRefreshToken(login) {
  const cookies = new Map();
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const authorize = new URL('/auth', base);
  authorize.search = new URLSearchParams({
    client_id: web.client_id,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: 'openid offline_access api',
    prompt: 'consent',
    resource,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();

  let location = authorize.toString();
  for (let hop = 0; hop < 10; hop += 1) {
    if (location.startsWith(redirectUri)) {
      const code = new URL(location).searchParams.get('code');
      if (!code) throw new Error(`no code in ${location}`);
      return exchange(code, verifier);
    }
    const url = new URL(location, base);
    const interaction = url.pathname.match(/^\/interaction\/([^/]+)$/);
    let response;
    if (interaction) {
      // The development interactions: first a login form, then a consent form.
      const page = await send(url, { method: 'GET' }, cookies);
      const html = await page.text();
      const prompt = html.includes('name="login"') ? 'login' : 'consent';
      const body = new URLSearchParams(prompt === 'login' ? { prompt, login, password: 'x' } : { prompt });
      response = await send(url, { method: 'POST', body }, cookies);
    } else {
      response = await send(url, { method: 'GET' }, cookies);
    }
    location = response.headers.get('location');
    if (!location) throw new Error(`${url.pathname} answered ${response.status} without a redirect`);
  }
  throw new Error('too many redirects in the authorization-code flow');
}

async function exchange(code, verifier) {
  const response = await fetch(new URL('/token', base), {
    method: 'POST',
    headers: { authorization: basic(web), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, resource,
    }),
  });
  const tokens = await response.json();
  if (!tokens.refresh_token) throw new Error(`token endpoint: ${JSON.stringify(tokens)}`);
  return tokens.refresh_token;
}

async function send(url, init, cookies) {
  const headers = { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') };
  const response = await fetch(url, { ...init, headers, redirect: 'manual' });
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const at = pair.indexOf('=');
    cookies.set(pair.slice(0, at), pair.slice(at + 1));
  }
  return response;
}

function basic({ client_id: id, client_secret: secret }) {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}
