// Smoke test of the Go client that openapi-generator (go) generates from openapi/openapi.json.
// .ci/generated-clients-jvm-go.sh copies this directory and, in the copy, points the replace
// below at the freshly generated module (go mod edit -replace); ./latchkey-go-client is only a
// placeholder.
module example/latchkey-go-client-smoke

go 1.23

require github.com/latchkey/latchkey-go-client v0.0.0

replace github.com/latchkey/latchkey-go-client => ./latchkey-go-client
