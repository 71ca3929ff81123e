// What the browser suites share: free ports, the built app served like any static host
// would, waiting for the server and for a condition, and Debian's Chromium.
import { createServer } from "node:http";
import { readFileSync, existsSync } from "node:fs";
import { join, extname, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

/// The SPA's directory (dist/ is under it).
export const root = join(dirname(fileURLToPath(import.meta.url)), "..");

export function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/// Serves dist/ like any static host would.
export function serveDist(port) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
  const http = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    let file = join(root, "dist", path === "/" ? "index.html" : path);
    if (!existsSync(file)) file = join(root, "dist", "index.html");
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => http.listen(port, "127.0.0.1", () => resolve(http)));
}

/// Waits for `condition` (async) for up to `ms`, failing loudly with `what`.
export async function eventually(what, ms, condition) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
}

export async function waitReady(url) {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the server did not become ready");
}

/// Debian's Chromium, headless (CHROMIUM overrides the path).
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
