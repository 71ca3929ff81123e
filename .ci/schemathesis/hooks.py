"""Schemathesis hooks for .ci/schemathesis.sh: every request carries a fresh admin token.

The token comes from the password grant of the console's client, as the console gets it.
It is fetched again every few seconds and after any 401, so an operation under test
that ends the admin's sessions (logout-all, revoking sessions) costs seconds, not the run.
When the admin can no longer sign in at all (the run made a second admin, then disabled
or demoted the first, or took the password grant from the console's client), a new admin
and a new client are made the way an operator would, with `latchkey user create` and
`latchkey client create` on the same database, and the run goes on with those.
"""

import itertools
import os
import subprocess
import sys

import requests
import schemathesis

_ACCOUNT = {
    "client_id": "latchkey-admin",
    "username": os.environ["ADMIN_USERNAME"],
    "password": os.environ["ADMIN_PASSWORD"],
}
_SPARE = itertools.count(1)


def _password_grant():
    return requests.post(
        f"{os.environ['API_URL']}/oauth2/token",
        data={"grant_type": "password", **_ACCOUNT},
        timeout=10,
    )


def _operator(*args, password=None):
    subprocess.run(
        [os.environ["LATCHKEY"], *args],
        input=None if password is None else password + "\n",
        text=True,
        check=True,
        capture_output=True,
    )


def _new_admin_and_client():
    spare = next(_SPARE)
    username, client_id = f"contract-admin-{spare}", f"contract-console-{spare}"
    _operator("user", "create", "--username", username, "--role", "admin", password=_ACCOUNT["password"])
    _operator("client", "create", "--client-id", client_id, "--grant", "password", "--grant", "refresh_token")
    _ACCOUNT.update(username=username, client_id=client_id)


@schemathesis.auth(refresh_interval=5)
class AdminToken:
    def get(self, case, context):
        answer = _password_grant()
        if answer.status_code in (400, 401):
            print(f"admin sign-in refused ({answer.status_code} {answer.text}); making another admin", file=sys.stderr)
            _new_admin_and_client()
            answer = _password_grant()
        if not answer.ok:
            print(f"admin sign-in failed: {answer.status_code} {answer.text}", file=sys.stderr)
        answer.raise_for_status()
        return answer.json()["access_token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
