// Smoke test of the Go client that openapi-generator (go) generated, unmodified, from
// openapi/openapi.json, against a running server; the same steps and checks as
// .ci/python_client_smoke.py. Run by .ci/generated-clients-jvm-go.sh with API_URL,
// ADMIN_USERNAME and ADMIN_PASSWORD set.
package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	latchkey "github.com/latchkey/latchkey-go-client"
)

// check fails the smoke with what was being checked and what came back.
func check(ok bool, what string, got any, err error) {
	if err != nil {
		// GenericOpenAPIError carries the response body, e.g. the server's ErrorBody.
		if apiErr, isAPI := err.(*latchkey.GenericOpenAPIError); isAPI {
			err = fmt.Errorf("%w: %s", err, apiErr.Body())
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "%s: got %+v\n", what, got)
		os.Exit(1)
	}
}

func main() {
	// The spec has no usable servers entry, so point the client at API_URL; every request
	// carries X-Requested-With, the CSRF header the cookie endpoints require.
	cfg := latchkey.NewConfiguration()
	cfg.Servers = latchkey.ServerConfigurations{{URL: os.Getenv("API_URL")}}
	cfg.AddDefaultHeader("X-Requested-With", "latchkey")
	client := latchkey.NewAPIClient(cfg)
	ctx := context.Background()
	// bearer: a context that makes the client send Authorization: Bearer <token>.
	bearer := func(token string) context.Context {
		return context.WithValue(ctx, latchkey.ContextAccessToken, token)
	}

	username := fmt.Sprintf("go-client-%d", time.Now().UnixMilli())
	password := "go client password"

	// register → 201 with the new user
	created, _, err := client.AuthAPI.Register(ctx).
		RegisterRequest(*latchkey.NewRegisterRequest(username, password)).Execute()
	check(err == nil && created.GetUsername() == username, "register", created, err)

	// login → an access token (the refresh cookie is not used here)
	loggedIn, _, err := client.AuthAPI.Login(ctx).
		LoginRequest(*latchkey.NewLoginRequest(username, password)).Execute()
	check(err == nil && loggedIn.GetAccessToken() != "", "login", loggedIn, err)

	// me, with that token
	me, _, err := client.AuthAPI.GetMe(bearer(loggedIn.GetAccessToken())).Execute()
	check(err == nil && me.GetUsername() == username && slices.Equal(me.GetRoles(), []string{"user"}),
		"me", me, err)

	// the admin's tokens from the password grant of the latchkey-admin client
	admin, _, err := client.OAuthAPI.Token(ctx).GrantType("password").ClientId("latchkey-admin").
		Username(os.Getenv("ADMIN_USERNAME")).Password(os.Getenv("ADMIN_PASSWORD")).Execute()
	check(err == nil && admin.GetAccessToken() != "" && admin.GetRefreshToken() != "", "password grant", admin, err)

	// admin: list users, filtered, finds the one registered above
	page, _, err := client.AdminAPI.AdminListUsers(bearer(admin.GetAccessToken())).
		Q("go-client").PageSize(10).Execute()
	found := err == nil && slices.ContainsFunc(page.GetItems(), func(u latchkey.UserResponse) bool {
		return u.GetUsername() == username
	})
	check(found, "admin list users", page, err)

	// refresh_token grant rotates the refresh token
	refreshed, _, err := client.OAuthAPI.Token(ctx).GrantType("refresh_token").ClientId("latchkey-admin").
		RefreshToken(admin.GetRefreshToken()).Execute()
	check(err == nil && refreshed.GetAccessToken() != "" && refreshed.GetRefreshToken() != admin.GetRefreshToken(),
		"refresh", refreshed, err)
	fmt.Println("go client: 1 passed, 0 failed")
}
