// Latchkey as a relying party meets it: a real server process on http://localhost:PORT
// with a SQLite database of its own, users and clients made with its CLI (or its admin
// API), TOTP enrolled through its API, and, when asked, mail relayed to an SMTP server on
// loopback. Nothing here knows the server's internals.
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import * as OTPAuth from "otpauth";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..", "..");
export const serverBin = process.env.SERVER_BIN ?? join(repo, "target", "debug", "latchkey");

/// Debian's Chromium, headless, as every suite here drives it (CHROMIUM overrides the path).
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

/// A Latchkey whose public URL names `localhost` while the relying parties live on
/// `127.0.0.1`: another site, so its SameSite=Lax cookies are really put to the test.
export class Latchkey {
  constructor() {
    if (!existsSync(serverBin)) throw new Error(`no server binary at ${serverBin} (set SERVER_BIN)`);
    this.dir = mkdtempSync(join(tmpdir(), "latchkey-rp-"));
    this.log = [];
  }

  /// `mail: { port }` relays the server's mail in plain text to an SMTP server on
  /// 127.0.0.1:port (see inbox.mjs); without it the server sends no mail.
  async init({ mail } = {}) {
    this.port = await freePort();
    this.issuer = `http://localhost:${this.port}`;
    const unlimited = "{per_minute=1000000,burst=100000}";
    this.env = {
      ...process.env,
      LATCHKEY_LISTEN: `127.0.0.1:${this.port}`,
      LATCHKEY_PUBLIC_URL: this.issuer,
      LATCHKEY_DATABASE_URL: `sqlite://${join(this.dir, "db.sqlite")}?mode=rwc`,
      LATCHKEY_MASTER_KEY_FILE: join(this.dir, "master.key"),
      LATCHKEY_COOKIE__SECURE: "false",
      LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB: "4096",
      LATCHKEY_PASSWORDS__ARGON2_ITERATIONS: "1",
      LATCHKEY_RATE_LIMITS__LOGIN: unlimited,
      LATCHKEY_RATE_LIMITS__TOTP: unlimited,
      LATCHKEY_RATE_LIMITS__TOKEN: unlimited,
      LATCHKEY_RATE_LIMITS__REFRESH: unlimited,
      LATCHKEY_RATE_LIMITS__USERNAME: unlimited,
      RUST_LOG: "warn",
    };
    if (mail) {
      Object.assign(this.env, {
        LATCHKEY_MAIL__TRANSPORT: "smtp",
        LATCHKEY_MAIL__FROM: "Latchkey <no-reply@latchkey.test>",
        LATCHKEY_MAIL__SMTP_URL: `smtp://127.0.0.1:${mail.port}`,
        LATCHKEY_MAIL__TLS: "none", // plain text is allowed to a loopback relay only
        LATCHKEY_MAIL__TIMEOUT_SECS: "2",
        LATCHKEY_RATE_LIMITS__MAIL: unlimited,
        LATCHKEY_RATE_LIMITS__PASSWORD_CHANGE: unlimited,
      });
    }
    return this;
  }

  /// Runs the CLI against this server's database; its stdout.
  cli(args, input) {
    return execFileSync(serverBin, args, { env: this.env, input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
  }

  createUser({ username, password, email, roles = ["user"] }) {
    const args = ["user", "create", "--username", username];
    for (const role of roles) args.push("--role", role);
    if (email) args.push("--email", email);
    this.cli(args, `${password}\n`);
  }

  /// Registers an authorization-code client; returns its secret (confidential) or null.
  createClient({ clientId, name, confidential, firstParty, redirectUris, postLogoutRedirectUris = [], backchannelLogoutUri }) {
    const args = ["client", "create", "--client-id", clientId, "--name", name];
    if (confidential) args.push("--confidential");
    args.push("--grant", "authorization_code", "--grant", "refresh_token");
    for (const scope of ["openid", "profile", "email", "roles", "offline_access"]) args.push("--scope", scope);
    for (const uri of redirectUris) args.push("--redirect-uri", uri);
    for (const uri of postLogoutRedirectUris) args.push("--post-logout-redirect-uri", uri);
    if (backchannelLogoutUri) args.push("--backchannel-logout-uri", backchannelLogoutUri);
    if (firstParty) args.push("--first-party");
    const out = this.cli(args);
    if (!confidential) return null;
    const secret = /client_secret:\s*(\S+)/.exec(out)?.[1];
    if (!secret) throw new Error(`no client_secret in the CLI's output:\n${out}`);
    return secret;
  }

  async start() {
    this.process = spawn(serverBin, ["serve"], { env: this.env, stdio: ["ignore", "pipe", "pipe"] });
    for (const stream of [this.process.stdout, this.process.stderr]) {
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => this.log.push(chunk));
    }
    const exited = new Promise((resolve) => this.process.once("exit", (code) => resolve(code)));
    for (let i = 0; i < 200; i++) {
      const code = await Promise.race([exited, new Promise((r) => setTimeout(r, 100, undefined))]);
      if (code !== undefined) throw new Error(`latchkey serve exited (${code}):\n${this.log.join("")}`);
      try {
        if ((await fetch(`${this.issuer}/readyz`)).ok) return;
      } catch {}
    }
    throw new Error(`latchkey was not ready within 20 s:\n${this.log.join("")}`);
  }

  async stop() {
    if (!this.process || this.process.exitCode !== null) return;
    const exited = new Promise((resolve) => this.process.once("exit", resolve));
    this.process.kill("SIGTERM");
    await exited;
  }

  /// A JSON request to the server's API: its status and parsed body (null when empty).
  async request(method, path, { token, body } = {}) {
    const headers = { "content-type": "application/json", "x-requested-with": "latchkey" };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${this.issuer}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed, text };
  }

  async json(path, { token, body }) {
    const { status, body: parsed, text } = await this.request("POST", path, { token, body });
    if (status < 200 || status > 299) throw new Error(`POST ${path}: ${status} ${text}`);
    return parsed;
  }

  /// An access token for the admin API, of an account holding the `admin` role (made
  /// with `createUser({ …, roles: ["admin"] })`), signed in through the JSON login.
  async adminToken({ username, password }) {
    const { access_token: token } = await this.json("/auth/login", { body: { username, password } });
    if (!token) throw new Error(`no access_token for ${username}`);
    return token;
  }

  /// Turns TOTP on for a user through the account API, as an authenticator app would be
  /// set up: returns a `Totp` holding the secret and the recovery codes.
  async enrolTotp({ username, password }) {
    const { access_token: token } = await this.json("/auth/login", { body: { username, password } });
    const { otpauth_uri: uri } = await this.json("/auth/totp/setup", { token, body: { password } });
    const totp = new Totp(OTPAuth.URI.parse(uri));
    const { recovery_codes: recoveryCodes } = await this.json("/auth/totp/confirm", {
      token,
      body: { code: await totp.next({ confirming: true }) },
    });
    totp.recoveryCodes = recoveryCodes;
    return totp;
  }
}

/// An authenticator app for one account. The server accepts each 30-second step once and
/// only steps newer than the last one it accepted, within one step of its clock: the
/// enrolment is confirmed with the previous step's code so that a sign-in in the same
/// 30 seconds has a newer step to use; a later code waits for its step to come.
export class Totp {
  constructor(otp) {
    if (!(otp instanceof OTPAuth.TOTP)) throw new Error(`not a TOTP URI: ${otp}`);
    this.otp = otp;
    this.lastStep = -Infinity;
  }

  async next({ confirming = false } = {}) {
    const now = () => Math.floor(Date.now() / 1000 / this.otp.period);
    let step = Math.max(this.lastStep + 1, confirming ? now() - 1 : now());
    while (step > now()) await new Promise((r) => setTimeout(r, 250));
    this.lastStep = step;
    return this.otp.generate({ timestamp: step * this.otp.period * 1000 });
  }
}
