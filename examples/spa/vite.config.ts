import { defineConfig } from "vite";

export default defineConfig({
  server: { host: "127.0.0.1", port: 5173, strictPort: true },
  preview: { host: "127.0.0.1", port: 5173, strictPort: true },
  // Two pages: the cookie flow (index.html) and the code flow with oidc-client-ts (oidc.html).
  build: { rolldownOptions: { input: { main: "index.html", oidc: "oidc.html" } } },
});
