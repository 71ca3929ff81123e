// A resource server for Latchkey's access tokens (RFC 9068), with Express and jose.
// GET /reports needs a bearer token that is RS256-signed by a key in Latchkey's JWKS
// (found through the issuer's discovery document, cached, fetched again on an unknown kid
// at most once a second), has typ at+jwt, iss == ISSUER, aud == AUDIENCE and a live exp
// (else 401), and whose flat `roles` claim holds "reports-reader" (else 403).
import express from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const { ISSUER, PORT = '3000', AUDIENCE = 'latchkey' } = process.env;
if (!ISSUER) throw new Error('set ISSUER, e.g. http://127.0.0.1:8080');

const discovery = await (await fetch(`${ISSUER}/.well-known/openid-configuration`)).json();
if (discovery.issuer !== ISSUER) throw new Error(`discovery names issuer ${discovery.issuer}`);
const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri), { cooldownDuration: 1000 });

const app = express();
app.get('/healthz', (_req, res) => res.json({ status: 'ok' }));
app.get('/reports', async (req, res) => {
  const [scheme, token] = (req.get('authorization') ?? '').split(' ');
  if (scheme?.toLowerCase() !== 'bearer' || !token) {
    return res.status(401).set('WWW-Authenticate', 'Bearer').json({ error: 'missing token' });
  }
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token, jwks, {
      issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256'], typ: 'at+jwt',
    }));
  } catch (err) {
    return res.status(401).set('WWW-Authenticate', 'Bearer error="invalid_token"')
      .json({ error: 'invalid_token', detail: err.code ?? err.message });
  }
  if (!Array.isArray(claims.roles) || !claims.roles.includes('reports-reader')) {
    return res.status(403).json({ error: 'insufficient_role', needed: 'reports-reader' });
  }
  res.json({ reports: [{ id: 1, title: 'Quarterly logins' }], sub: claims.sub });
});
app.listen(Number(PORT), '127.0.0.1', () => console.log(`listening on 127.0.0.1:${PORT}`));
