"""Driving the pages with Flask's test client: CSRF tokens from the forms, sign-up, log-in."""

import re

TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"')  # in every page's head


def csrf_token(client, path="/login") -> str:
    page = client.get(path, follow_redirects=True)
    return TOKEN.search(page.get_data(as_text=True)).group(1)


def signup(client, email="ann@example.com", password="correct horse 1"):
    token = csrf_token(client, "/signup")
    return client.post("/signup", data={"email": email, "password": password,
                                        "csrf_token": token})


def login(client, email, password="correct horse 1"):
    token = csrf_token(client, "/login")
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": token})


def post_form(client, path, data, page="/console/keys"):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, page)})


def new_key(client, name="test key", **fields) -> str:
    """Create a key through the keys page; returns the one-time plaintext."""
    reply = post_form(client, "/console/keys", {"name": name, **fields})
    assert reply.status_code == 201, reply.get_data(as_text=True)
    return re.search(r'id="new-key" type="text" readonly value="([^"]+)"',
                     reply.get_data(as_text=True)).group(1)
