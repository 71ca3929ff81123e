"""Smoke test of the Python client that openapi-python-client generated, unmodified,
from openapi/openapi.json, against a running server (see .ci/generated-clients.sh)."""
import os
import sys
import time

sys.path.insert(0, os.environ["CLIENT_DIR"])

from latchkey_client import Client  # noqa: E402
from latchkey_client.api.admin import admin_list_users  # noqa: E402
from latchkey_client.api.auth import get_me, login, register  # noqa: E402
from latchkey_client.api.o_auth import token  # noqa: E402
from latchkey_client.models import LoginRequest, RegisterRequest, TokenForm  # noqa: E402

base = os.environ["API_URL"]
def new_client(**headers):
    return Client(base_url=base, headers={"X-Requested-With": "latchkey", **headers}, raise_on_unexpected_status=True)


client = new_client()
username = f"py-client-{int(time.time() * 1000)}"
password = "python client password"

created = register.sync(client=client, body=RegisterRequest(username=username, password=password))
assert created.username == username, created

logged_in = login.sync(client=client, body=LoginRequest(username=username, password=password))
assert logged_in.access_token, logged_in
authed = new_client(Authorization=f"Bearer {logged_in.access_token}")
me = get_me.sync(client=authed)
assert me.username == username and me.roles == ["user"], me

admin = token.sync(
    client=client,
    body=TokenForm(
        grant_type="password",
        client_id="latchkey-admin",
        username=os.environ["ADMIN_USERNAME"],
        password=os.environ["ADMIN_PASSWORD"],
    ),
)
assert hasattr(admin, "access_token"), admin
admin_client = new_client(Authorization=f"Bearer {admin.access_token}")
page = admin_list_users.sync(client=admin_client, q="py-client", page_size=10)
assert any(u.username == username for u in page.items), page

refreshed = token.sync(
    client=client,
    body=TokenForm(grant_type="refresh_token", client_id="latchkey-admin", refresh_token=admin.refresh_token),
)
assert refreshed.access_token and refreshed.refresh_token != admin.refresh_token
print("python client: 1 passed, 0 failed")
