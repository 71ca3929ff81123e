// Passkeys for the cookie flow: sign in with one (no username, no password) and add one
// to the signed-in account, through Latchkey's JSON API. The browser does the
// cryptography (navigator.credentials); this module only carries WebAuthn's JSON to and
// from the server, converting its base64url members to the bytes the browser wants.
import { type Api, type LoginResult, signedInWith, withAuth } from "./auth";

const CSRF = { "X-Requested-With": "latchkey" } as const;

type Json = Record<string, unknown>;

function fromBase64url(value: string): ArrayBuffer {
  const base64 = value.replace(/-/g, "+").replace(/_/g, "/");
  const text = atob(base64 + "===".slice((base64.length + 3) % 4));
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes.buffer;
}

function toBase64url(buffer: ArrayBuffer): string {
  let text = "";
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const withIds = (list: unknown) =>
  ((list as Json[] | undefined) ?? []).map((c) => ({ ...c, id: fromBase64url(c.id as string) }));

/// `PublicKeyCredential.toJSON()`, by hand where the browser lacks it.
function answerJSON(credential: PublicKeyCredential): Json {
  const withJson = credential as PublicKeyCredential & { toJSON?: () => Json };
  if (typeof withJson.toJSON === "function") return withJson.toJSON();
  const r = credential.response as AuthenticatorAttestationResponse & AuthenticatorAssertionResponse;
  const response: Json = { clientDataJSON: toBase64url(r.clientDataJSON) };
  if ("attestationObject" in r && r.attestationObject) {
    response.attestationObject = toBase64url(r.attestationObject);
  } else {
    response.authenticatorData = toBase64url(r.authenticatorData);
    response.signature = toBase64url(r.signature);
    response.userHandle = r.userHandle ? toBase64url(r.userHandle) : null;
  }
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    response,
    clientExtensionResults: credential.getClientExtensionResults(),
  };
}

export const passkeysSupported = () => typeof window.PublicKeyCredential === "function";

/// Signs in with a discoverable passkey: tokens and the refresh cookie, as a password login.
export async function passkeyLogin(api: Api): Promise<LoginResult> {
  const started = await api.POST("/auth/webauthn/login/start", { body: {}, headers: CSRF });
  if (!started.data) return { kind: "error", message: started.error?.error_description ?? "passkeys are unavailable" };
  const options = (started.data.options as { publicKey: Json }).publicKey;
  let credential: PublicKeyCredential | null;
  try {
    credential = (await navigator.credentials.get({
      publicKey: {
        ...options,
        challenge: fromBase64url(options.challenge as string),
        allowCredentials: withIds(options.allowCredentials),
      } as PublicKeyCredentialRequestOptions,
    })) as PublicKeyCredential | null;
  } catch {
    return { kind: "error", message: "no passkey was used" };
  }
  if (!credential) return { kind: "error", message: "no passkey was used" };
  const finished = await api.POST("/auth/webauthn/login/finish", {
    body: { ceremony_id: started.data.ceremony_id, credential: answerJSON(credential) },
    headers: CSRF,
  });
  if (!finished.data) return { kind: "error", message: finished.error?.error_description ?? "the passkey was refused" };
  return signedInWith(finished.data);
}

/// Registers a passkey on this device for the signed-in user, whose password the server
/// checks again first.
export async function addPasskey(api: Api, name: string, password: string): Promise<boolean> {
  const started = await withAuth(api, (headers) =>
    api.POST("/auth/webauthn/register/start", { body: { password }, headers }),
  );
  if (!started) return false;
  const options = (started.options as { publicKey: Json }).publicKey;
  const user = options.user as Json;
  const credential = (await navigator.credentials.create({
    publicKey: {
      ...options,
      challenge: fromBase64url(options.challenge as string),
      user: { ...user, id: fromBase64url(user.id as string) },
      excludeCredentials: withIds(options.excludeCredentials),
    } as PublicKeyCredentialCreationOptions,
  })) as PublicKeyCredential | null;
  if (!credential) return false;
  const created = await withAuth(api, (headers) =>
    api.POST("/auth/webauthn/register/finish", {
      body: { ceremony_id: started.ceremony_id, name, credential: answerJSON(credential) },
      headers,
    }),
  );
  return created !== null;
}
