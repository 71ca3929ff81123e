// A resource server for Latchkey's access tokens (RFC 9068), with Express and jose.
// GET /reports needs an access token that is RS256-signed by a key in Latchkey's JWKS
// (found through the issuer's discovery document, cached, fetched again on an unknown kid
// at most once a second), has typ at+jwt, iss == ISSUER, aud == AUDIENCE and a live exp
// (else 401), and whose flat `roles` claim holds "reports-reader" (else 403).
//
// DPoP (RFC 9449): a token whose `cnf.jkt` binds it to a key is taken only as
// `Authorization: DPoP <token>` with one `DPoP: <proof>` header, and the proof must hold
// (else 401 `DPoP error="invalid_dpop_proof"`): a JWS with typ dpop+jwt, alg one of
// ES256 EdDSA Ed25519 RS256 PS256, signed by the public key in its `jwk` header (no private
// member), whose RFC 7638 thumbprint is the token's cnf.jkt; htm is the request's method
// and htu its URL (PUBLIC_URL + path, default http://127.0.0.1:PORT; query and fragment
// ignored); iat at most 300 s old and 30 s ahead; ath == base64url(SHA-256(token)); and a
// (jkt, jti) this process has not seen in that window. A bound token sent as Bearer, or
// an unbound one sent as DPoP, is 401 invalid_token; an unbound token works as Bearer.
// No DPoP nonce is asked for here (RFC 9449 §9 leaves that to each server).
import { createHash } from 'node:crypto';
import express from 'express';
import { EmbeddedJWK, calculateJwkThumbprint, createRemoteJWKSet, jwtVerify } from 'jose';

const { ISSUER, PORT = '3000', AUDIENCE = 'latchkey' } = process.env;
if (!ISSUER) throw new Error('set ISSUER, e.g. http://127.0.0.1:8080');
/// Where clients reach this server: what a proof's htu is checked against.
const PUBLIC_URL = (process.env.PUBLIC_URL || `http://127.0.0.1:${PORT}`).replace(/\/+$/, '');

const discovery = await (await fetch(`${ISSUER}/.well-known/openid-configuration`)).json();
if (discovery.issuer !== ISSUER) throw new Error(`discovery names issuer ${discovery.issuer}`);
const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri), { cooldownDuration: 1000 });

const DPOP_ALGS = ['ES256', 'EdDSA', 'Ed25519', 'RS256', 'PS256'];
const CHALLENGE_ALGS = `algs="${DPOP_ALGS.join(' ')}"`;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const MAX_AGE_SECS = 300;
const MAX_FUTURE_SECS = 30;

/// Proofs seen lately, `jkt jti` → when the entry may go (insertion order is expiry order).
const seen = new Map();
function firstUse(key, now) {
  for (const [k, until] of seen) {
    if (until > now) break;
    seen.delete(k);
  }
  if (seen.has(key)) return false;
  seen.set(key, now + MAX_AGE_SECS + MAX_FUTURE_SECS);
  return true;
}

/// A URL as a proof's htu is compared: scheme, host and port normalised, no query or fragment.
function htuOf(value) {
  const url = new URL(value);
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/// RFC 9449 §4.3 (and §7 for the access token); throws an Error saying what is wrong.
async function checkProof(req, token, jkt) {
  const fail = (why) => { throw new Error(why); };
  const proofs = req.headersDistinct.dpop ?? [];
  if (proofs.length !== 1) fail('exactly one DPoP header is needed');
  const { payload, protectedHeader: { jwk } } = await jwtVerify(proofs[0], EmbeddedJWK, {
    typ: 'dpop+jwt', algorithms: DPOP_ALGS, requiredClaims: ['jti', 'htm', 'htu', 'iat', 'ath'],
  });
  if (PRIVATE_MEMBERS.some((member) => member in jwk)) fail('the proof\'s jwk holds a private key');
  if (await calculateJwkThumbprint(jwk) !== jkt) fail('the proof\'s key is not the token\'s cnf.jkt');
  const { jti, htm, htu, iat, ath } = payload;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) fail('bad jti');
  if (htm !== req.method) fail('htm is not this request\'s method');
  let proved;
  try { proved = htuOf(htu); } catch { fail('htu is not a URL'); }
  if (proved !== htuOf(`${PUBLIC_URL}${req.path}`)) fail('htu is not this request\'s URL');
  const now = Math.floor(Date.now() / 1000);
  if (!Number.isInteger(iat) || now - iat > MAX_AGE_SECS) fail('iat is too old');
  if (iat - now > MAX_FUTURE_SECS) fail('iat is in the future');
  if (ath !== createHash('sha256').update(token).digest('base64url')) fail('ath is not the token\'s hash');
  if (!firstUse(`${jkt} ${jti}`, now)) fail('this proof was used before');
}

const app = express();
app.get('/healthz', (_req, res) => res.json({ status: 'ok' }));
app.get('/reports', async (req, res) => {
  const [scheme = '', token, extra] = (req.get('authorization') ?? '').split(' ');
  const dpop = scheme.toLowerCase() === 'dpop';
  const refuse = (error, detail) => {
    const challenge = dpop
      ? `DPoP error="${error}", ${CHALLENGE_ALGS}`
      : `Bearer error="${error}", DPoP ${CHALLENGE_ALGS}`;
    return res.status(401).set('WWW-Authenticate', challenge).json({ error, detail });
  };
  if ((!dpop && scheme.toLowerCase() !== 'bearer') || !token || extra !== undefined) {
    return res.status(401).set('WWW-Authenticate', `Bearer, DPoP ${CHALLENGE_ALGS}`)
      .json({ error: 'missing token' });
  }
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token, jwks, {
      issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256'], typ: 'at+jwt',
    }));
  } catch (err) {
    return refuse('invalid_token', err.code ?? err.message);
  }
  const jkt = claims.cnf?.jkt;
  if (jkt !== undefined || dpop) {
    if (typeof jkt !== 'string') return refuse('invalid_token', 'the DPoP scheme is for a bound token');
    if (!dpop) return refuse('invalid_token', 'a bound token needs the DPoP scheme and a proof');
    try {
      await checkProof(req, token, jkt);
    } catch (err) {
      return refuse('invalid_dpop_proof', err.code ?? err.message);
    }
  }
  if (!Array.isArray(claims.roles) || !claims.roles.includes('reports-reader')) {
    return res.status(403).json({ error: 'insufficient_role', needed: 'reports-reader' });
  }
  res.json({ reports: [{ id: 1, title: 'Quarterly logins' }], sub: claims.sub });
});
app.listen(Number(PORT), '127.0.0.1', () => console.log(`listening on 127.0.0.1:${PORT}`));
