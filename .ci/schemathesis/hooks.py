"""Schemathesis hooks for .ci/schemathesis.sh: every request carries a fresh admin token.

The token comes from the password grant of the console's client, as the console gets it.
It is fetched again every few seconds and after any 401, so an operation under test
that ends the admin's sessions (logout-all, revoking sessions) costs seconds, not the run.
"""

import os

import requests
import schemathesis


@schemathesis.auth(refresh_interval=5)
class AdminToken:
    def get(self, case, context):
        answer = requests.post(
            f"{os.environ['API_URL']}/oauth2/token",
            data={
                "grant_type": "password",
                "client_id": "latchkey-admin",
                "username": os.environ["ADMIN_USERNAME"],
                "password": os.environ["ADMIN_PASSWORD"],
            },
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()["access_token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
