package example.reports;

import java.util.List;
import java.util.Map;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.security.oauth2.resource.servlet.JwkSetUriJwtDecoderBuilderCustomizer;
import org.springframework.context.annotation.Bean;
import org.springframework.security.config.Customizer;
import org.springframework.security.config.annotation.web.builders.HttpSecurity;
import org.springframework.security.config.http.SessionCreationPolicy;
import org.springframework.security.core.annotation.AuthenticationPrincipal;
import org.springframework.security.oauth2.core.OAuth2TokenValidator;
import org.springframework.security.oauth2.jwt.Jwt;
import org.springframework.security.oauth2.jwt.JwtTypeValidator;
import org.springframework.security.web.SecurityFilterChain;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RestController;

/**
 * A resource server for Latchkey's access tokens (RFC 9068), with Spring Boot. The decoder
 * comes from application.properties: issuer-uri (discovery, then the JWKS, cached and fetched
 * again on an unknown kid), the audience, and the flat `roles` claim as ROLE_ authorities.
 * GET /reports needs a token that verifies (RS256 signature, iss, aud, exp, typ at+jwt; else
 * 401) and carries the role reports-reader (else 403).
 */
@SpringBootApplication
@RestController
public class ReportsApplication {
  public static void main(String[] args) {
    SpringApplication.run(ReportsApplication.class, args);
  }

  @Bean
  SecurityFilterChain security(HttpSecurity http) throws Exception {
    http.authorizeHttpRequests(requests -> requests
            .requestMatchers("/healthz").permitAll()
            .requestMatchers("/reports").hasRole("reports-reader")
            .anyRequest().denyAll())
        .oauth2ResourceServer(server -> server.jwt(Customizer.withDefaults()))
        .sessionManagement(session -> session.sessionCreationPolicy(SessionCreationPolicy.STATELESS));
    return http.build();
  }

  /** Nimbus's own typ check takes only "JWT" (or none): turn it off here... */
  @Bean
  JwkSetUriJwtDecoderBuilderCustomizer withoutNimbusTypeCheck() {
    return builder -> builder.validateType(false);
  }

  /** ...and ask for RFC 9068's at+jwt instead. */
  @Bean
  OAuth2TokenValidator<Jwt> accessTokenType() {
    return new JwtTypeValidator("at+jwt", "application/at+jwt");
  }

  @GetMapping("/healthz")
  Map<String, String> healthz() {
    return Map.of("status", "ok");
  }

  @GetMapping("/reports")
  Map<String, Object> reports(@AuthenticationPrincipal Jwt jwt) {
    return Map.of("reports", List.of(Map.of("id", 1, "title", "Quarterly logins")), "sub", jwt.getSubject());
  }
}
