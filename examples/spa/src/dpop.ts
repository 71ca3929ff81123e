// DPoP (RFC 9449) for the cookie flow: every token the app gets is bound to a key pair
// that lives in this browser and cannot leave it. A stolen access token or a copied
// refresh cookie is useless elsewhere, since each request must carry a fresh proof,
// signed by the private key, of its own method and URL.
//
// - The key pair is made by WebCrypto as non-extractable (ECDSA P-256, so ES256) and
//   kept in IndexedDB, which stores CryptoKey objects as they are: a reload (or another
//   tab) finds the same key, and no script, this one included, can read the private key.
// - A proof is a compact JWS: header {typ: "dpop+jwt", alg: "ES256", jwk: the public
//   key}, claims {jti, htm, htu, iat, nonce?, ath?}. WebCrypto's ECDSA signature is
//   already the raw r||s that JWS wants.
// - Latchkey asks for a nonce of its own in proofs (RFC 9449 §8): it answers 400
//   use_dpop_nonce (sign-in and refresh) or 401 with `WWW-Authenticate: DPoP
//   error="use_dpop_nonce"` (API calls) with a `DPoP-Nonce` header; the request is made
//   again, once, with that nonce. Every answer carries the current nonce, which is kept
//   for the next proof.
//
// `dpopMiddleware()` does all of it for an openapi-fetch client: it signs the sign-in and
// refresh requests, and every call sent with `Authorization: DPoP <token>` (with `ath`,
// the token's hash).
import type { Middleware } from "openapi-fetch";

/// Where the key pair is kept: IndexedDB database, object store, entry.
export const KEY_STORE = { database: "latchkey-dpop", store: "keys", entry: "dpop-key" } as const;

/// The cookie endpoints that take a proof (no access token yet, so no `ath`).
const SIGN_IN = ["/auth/login", "/auth/login/mfa", "/auth/webauthn/login/finish", "/auth/refresh"];

const encoder = new TextEncoder();

function base64url(bytes: ArrayBuffer | Uint8Array): string {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const base64urlJson = (value: unknown) => base64url(encoder.encode(JSON.stringify(value)));

/// Runs one request on the key store, in a transaction of its own.
async function withStore<T>(mode: IDBTransactionMode, run: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const open = indexedDB.open(KEY_STORE.database, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(KEY_STORE.store);
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
  try {
    return await new Promise<T>((resolve, reject) => {
      const transaction = db.transaction(KEY_STORE.store, mode);
      const request = run(transaction.objectStore(KEY_STORE.store));
      transaction.oncomplete = () => resolve(request.result); // written for good, if a write
      transaction.onabort = () => reject(request.error ?? transaction.error);
    });
  } finally {
    db.close();
  }
}

/// The stored key pair, or a new one stored for next time. Two tabs starting at once may
/// both make one: `add` keeps the first stored, and the other tab takes that one.
async function loadKeyPair(): Promise<CryptoKeyPair> {
  const stored = await withStore<CryptoKeyPair | undefined>("readonly", (s) => s.get(KEY_STORE.entry));
  if (stored) return stored;
  const made = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
  try {
    await withStore("readwrite", (s) => s.add(made, KEY_STORE.entry));
    return made;
  } catch {
    const first = await withStore<CryptoKeyPair | undefined>("readonly", (s) => s.get(KEY_STORE.entry));
    if (!first) throw new Error("the DPoP key could not be stored");
    return first;
  }
}

type Signer = { keys: CryptoKeyPair; jwk: { kty: string; crv: string; x: string; y: string } };
let signer: Promise<Signer> | null = null;

function loadSigner(): Promise<Signer> {
  signer ??= loadKeyPair().then(async (keys) => {
    // A public key can always be exported, whatever `extractable` says; only the members
    // RFC 7638 hashes go in the proof, so Latchkey's thumbprint is the same as anyone's.
    const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", keys.publicKey);
    return { keys, jwk: { kty: kty!, crv: crv!, x: x!, y: y! } };
  });
  signer.catch(() => (signer = null)); // a failure is not kept: the next call tries again
  return signer;
}

/// A proof for one request: `htu` is the URL without query or fragment; `accessToken`
/// is given when the request carries one (its hash goes in `ath`).
export async function proof(method: string, url: string, nonce?: string, accessToken?: string): Promise<string> {
  const { keys, jwk } = await loadSigner();
  const { origin, pathname } = new URL(url);
  const claims: Record<string, string | number> = {
    jti: crypto.randomUUID(),
    htm: method,
    htu: origin + pathname,
    iat: Math.floor(Date.now() / 1000),
  };
  if (nonce) claims.nonce = nonce;
  if (accessToken) claims.ath = base64url(await crypto.subtle.digest("SHA-256", encoder.encode(accessToken)));
  const input = `${base64urlJson({ typ: "dpop+jwt", alg: "ES256", jwk })}.${base64urlJson(claims)}`;
  const algorithm = { name: "ECDSA", hash: "SHA-256" };
  const signature = await crypto.subtle.sign(algorithm, keys.privateKey, encoder.encode(input));
  return `${input}.${base64url(signature)}`;
}

/// Whether `response` asks for a proof with Latchkey's nonce in it.
async function wantsNonce(response: Response): Promise<boolean> {
  if (!response.headers.has("DPoP-Nonce")) return false;
  if (response.status === 401) return /error="use_dpop_nonce"/.test(response.headers.get("WWW-Authenticate") ?? "");
  if (response.status !== 400) return false;
  const body = await response.clone().json().catch(() => null);
  return body?.error === "use_dpop_nonce";
}

/// Adds a DPoP proof to the requests that take one, and makes a request again, once,
/// when the server asks for its nonce.
export function dpopMiddleware(): Middleware {
  let nonce: string | undefined; // the latest DPoP-Nonce the server sent
  const copies = new Map<string, Request>(); // each signed request as it was, for a retry

  const sign = async (request: Request) => {
    const authorization = request.headers.get("Authorization") ?? "";
    const token = authorization.startsWith("DPoP ") ? authorization.slice(5) : undefined;
    request.headers.set("DPoP", await proof(request.method, request.url, nonce, token));
  };
  const keepNonce = (response: Response) => {
    nonce = response.headers.get("DPoP-Nonce") ?? nonce;
  };

  return {
    async onRequest({ request, schemaPath, id }) {
      const bound = request.headers.get("Authorization")?.startsWith("DPoP ");
      if (!bound && !SIGN_IN.includes(schemaPath)) return;
      copies.set(id, request.clone()); // before its body is read by the fetch
      await sign(request);
    },
    async onResponse({ response, id, options }) {
      const copy = copies.get(id);
      copies.delete(id);
      if (!copy) return;
      const retry = await wantsNonce(response);
      keepNonce(response);
      if (!retry) return;
      await sign(copy);
      const send = options.fetch; // called as a function: `fetch` refuses another `this`
      const again = await send(copy);
      keepNonce(again);
      return again;
    },
    onError({ id }) {
      copies.delete(id);
    },
  };
}
