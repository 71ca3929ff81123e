// The TypeScript client generated from openapi/openapi.json (openapi-typescript types +
// openapi-fetch), compiled with strict tsc and used unmodified against a running server.
// API_URL, ADMIN_USERNAME and ADMIN_PASSWORD come from .ci/generated-clients.sh.
import { test } from "node:test";
import assert from "node:assert/strict";
import createClient from "openapi-fetch";
import type { paths } from "../src/generated/api.js";

const baseUrl = process.env.API_URL ?? "http://127.0.0.1:8080";
const api = createClient<paths>({ baseUrl });
const form = (body: Record<string, string>) => new URLSearchParams(body);
const FORM = { "Content-Type": "application/x-www-form-urlencoded" };

test("register, login, me, admin list users and refresh through /oauth2/token", async () => {
  const username = `ts-client-${Date.now()}`;
  const password = "typescript client password";
  const registered = await api.POST("/auth/register", { body: { username, password } });
  assert.equal(registered.response.status, 201);
  assert.equal(registered.data?.username, username);

  const login = await api.POST("/auth/login", {
    body: { username, password },
    headers: { "X-Requested-With": "latchkey" },
  });
  assert.equal(login.response.status, 200);
  const access = login.data?.access_token;
  assert.ok(access);

  const me = await api.GET("/auth/me", { headers: { Authorization: `Bearer ${access}` } });
  assert.equal(me.data?.username, username);
  assert.deepEqual(me.data?.roles, ["user"]);

  const adminToken = await api.POST("/oauth2/token", {
    body: {
      grant_type: "password",
      client_id: "latchkey-admin",
      username: process.env.ADMIN_USERNAME ?? "admin",
      password: process.env.ADMIN_PASSWORD ?? "",
    },
    bodySerializer: form,
    headers: FORM,
  });
  assert.equal(adminToken.response.status, 200);
  const adminAccess = adminToken.data?.access_token ?? "";
  const users = await api.GET("/admin/users", {
    params: { query: { q: "ts-client", page_size: 10 } },
    headers: { Authorization: `Bearer ${adminAccess}` },
  });
  assert.ok((users.data?.total ?? 0) >= 1);
  assert.ok(users.data?.items.some((u) => u.username === username));

  const refreshed = await api.POST("/oauth2/token", {
    body: { grant_type: "refresh_token", client_id: "latchkey-admin", refresh_token: adminToken.data?.refresh_token ?? "" },
    bodySerializer: form,
    headers: FORM,
  });
  assert.equal(refreshed.response.status, 200);
  assert.notEqual(refreshed.data?.refresh_token, adminToken.data?.refresh_token);

  const denied = await api.GET("/admin/users", { headers: { Authorization: `Bearer ${access}` } });
  assert.equal(denied.response.status, 403);
  assert.equal(denied.error?.error, "insufficient_scope");
});
