// Smoke test of the Java client that openapi-generator (java, library native) generated,
// unmodified, from openapi/openapi.json, against a running server; the same steps and checks
// as .ci/python_client_smoke.py. Run by .ci/generated-clients-jvm-go.sh with API_URL,
// ADMIN_USERNAME and ADMIN_PASSWORD set.
import dev.latchkey.client.ApiClient;
import dev.latchkey.client.api.AdminApi;
import dev.latchkey.client.api.AuthApi;
import dev.latchkey.client.api.OAuthApi;
import dev.latchkey.client.model.LoginRequest;
import dev.latchkey.client.model.LoginResponse;
import dev.latchkey.client.model.RegisterRequest;
import dev.latchkey.client.model.TokenResponse;
import dev.latchkey.client.model.UserPage;
import dev.latchkey.client.model.UserResponse;
import java.util.List;
import java.util.Map;

public class Main {
  static final String BASE = System.getenv("API_URL");

  // An ApiClient for the server that sends X-Requested-With (the CSRF header the cookie
  // endpoints require) and, when a token is given, Authorization: Bearer <token>.
  static ApiClient newClient(String bearer) {
    ApiClient client = new ApiClient();
    client.updateBaseUri(BASE);
    client.setRequestInterceptor(b -> {
      b.header("X-Requested-With", "latchkey");
      if (bearer != null) b.header("Authorization", "Bearer " + bearer);
    });
    return client;
  }

  static void check(boolean ok, String what, Object got) {
    if (!ok) throw new AssertionError(what + ": got " + got);
  }

  public static void main(String[] args) throws Exception {
    ApiClient client = newClient(null);
    String username = "java-client-" + System.currentTimeMillis();
    String password = "java client password";

    // register → 201 with the new user
    UserResponse created = new AuthApi(client)
        .register(new RegisterRequest().username(username).password(password));
    check(username.equals(created.getUsername()), "register", created);

    // login → an access token (the refresh cookie is not used here)
    LoginResponse loggedIn = new AuthApi(client)
        .login(new LoginRequest().username(username).password(password));
    check(loggedIn.getAccessToken() != null && !loggedIn.getAccessToken().isEmpty(), "login", loggedIn);

    // me, with that token
    UserResponse me = new AuthApi(newClient(loggedIn.getAccessToken())).getMe();
    check(username.equals(me.getUsername()) && List.of("user").equals(me.getRoles()), "me", me);

    // the admin's tokens from the password grant of the latchkey-admin client
    OAuthApi oauth = new OAuthApi(client);
    // (grant_type, refresh_token, username, password, scope, client_id, client_secret,
    //  totp, code, redirect_uri, code_verifier): the form's fields in the document's order.
    TokenResponse admin = oauth.token("password", null, System.getenv("ADMIN_USERNAME"),
        System.getenv("ADMIN_PASSWORD"), null, "latchkey-admin", null, null, null, null, null);
    check(admin.getAccessToken() != null && admin.getRefreshToken() != null, "password grant", admin);

    // admin: list users, filtered, finds the one registered above
    UserPage page = new AdminApi(newClient(admin.getAccessToken()))
        .adminListUsers(null, 10, "java-client", null, null);
    check(page.getItems().stream().anyMatch(u -> username.equals(u.getUsername())), "admin list users", page);

    // refresh_token grant rotates the refresh token
    TokenResponse refreshed = oauth.token("refresh_token", admin.getRefreshToken(), null, null,
        null, "latchkey-admin", null, null, null, null, null);
    check(refreshed.getAccessToken() != null && !admin.getRefreshToken().equals(refreshed.getRefreshToken()),
        "refresh", refreshed);
    System.out.println("java client: 1 passed, 0 failed");
  }
}
