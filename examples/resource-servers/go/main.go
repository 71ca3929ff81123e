// Command resource-server is a resource server for Latchkey's access tokens (RFC 9068),
// with net/http and github.com/coreos/go-oidc/v3.
//
// GET /reports needs a bearer token that is RS256-signed by a key in Latchkey's JWKS (found
// through the issuer's discovery document; go-oidc caches it and fetches it again when no
// cached key verifies a token, as after a rotation), has typ at+jwt, iss == ISSUER,
// aud == AUDIENCE and a live exp (else 401), and whose flat `roles` claim holds
// "reports-reader" (else 403).
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"log"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

func main() {
	issuer := os.Getenv("ISSUER")
	if issuer == "" {
		log.Fatal("set ISSUER, e.g. http://127.0.0.1:8080")
	}
	audience := cmp.Or(os.Getenv("AUDIENCE"), "latchkey")
	// Reads ISSUER/.well-known/openid-configuration, checks its issuer, takes jwks_uri.
	provider, err := oidc.NewProvider(context.Background(), issuer)
	if err != nil {
		log.Fatal(err)
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: audience, SupportedSigningAlgs: []string{oidc.RS256}})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /reports", func(w http.ResponseWriter, r *http.Request) {
		scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || raw == "" {
			unauthorized(w, "missing token")
			return
		}
		token, err := verifier.Verify(r.Context(), raw) // signature, iss, aud, exp
		if err != nil {
			unauthorized(w, err.Error())
			return
		}
		if t := headerType(raw); t != "at+jwt" && t != "application/at+jwt" {
			unauthorized(w, "typ is not at+jwt")
			return
		}
		var claims struct {
			Roles []string `json:"roles"`
		}
		if err := token.Claims(&claims); err != nil || !slices.Contains(claims.Roles, "reports-reader") {
			writeJSON(w, http.StatusForbidden, map[string]any{"error": "insufficient_role", "needed": "reports-reader"})
			return
		}
		reports := []map[string]any{{"id": 1, "title": "Quarterly logins"}}
		writeJSON(w, http.StatusOK, map[string]any{"reports": reports, "sub": token.Subject})
	})
	addr := "127.0.0.1:" + cmp.Or(os.Getenv("PORT"), "8000")
	log.Printf("listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, mux))
}

// headerType is the JOSE header's typ of a token go-oidc has already verified, lower-cased.
func headerType(raw string) string {
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(jws.Signatures) != 1 {
		return ""
	}
	typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string)
	return strings.ToLower(typ)
}

func unauthorized(w http.ResponseWriter, detail string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_token", "detail": detail})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}
