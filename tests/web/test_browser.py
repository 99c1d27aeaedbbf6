"""A person's journey in a real browser: sign up, see the balance, create a key and use it with
the OpenAI SDK, chat in the playground (streamed, stopped, multi-turn, cleared), see the spend
in the chart and the usage table, revoke the key; an admin grants credits and disables a user."""

import re
import time

import openai
import pytest
from playwright.sync_api import expect

from tests.fake_upstream import Script
from tests.web.conftest import shot

PASSWORD = "correct horse battery"
CHARGED = re.compile(r"\d[\d.,]* credits?")  # the credits an answer cost, shown under it


def sign_up(page, email):
    page.goto("/")
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r".*/console$"))


def balance(page) -> float:
    page.goto("/console")
    return float(page.get_by_test_id("balance").inner_text().replace(",", ""))


def create_key(page, name) -> str:
    page.goto("/console/keys")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create key").click()
    field = page.get_by_label("New key")
    expect(field).to_have_attribute("readonly", "")
    return field.input_value()


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_person_journey(new_page, live, upstream):
    page = new_page()
    page.goto("/")
    for name in ("Playground", "Docs", "Pricing", "Sign up", "Log in"):
        expect(page.get_by_role("link", name=name, exact=True).first).to_be_visible()
    shot(page, "landing")
    sign_up(page, "ann@example.com")
    expect(page.get_by_test_id("balance")).to_have_text("100.00")
    shot(page, "console-new")

    key = create_key(page, "laptop")
    live.secrets.append(key)
    assert key.startswith("tg-")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    shot(page, "keys-reveal")
    sdk = openai.OpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0)
    reply = sdk.chat.completions.create(model="gpt-test",
                                        messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"
    page.goto("/console/keys")
    assert key not in page.content()  # shown once, never again
    expect(page.get_by_role("row", name="laptop")).to_contain_text(key[:7])

    chat_in_playground(page, upstream)
    stop_a_stream(page, upstream)

    after = balance(page)
    assert after < 100
    bars = page.locator("svg[data-testid=spend-chart] rect.bar")
    assert bars.count() >= 1
    expect(page.locator("table.usage tbody tr")).to_have_count(5)  # SDK + 3 turns + stopped
    expect(page.locator("table.usage")).to_contain_text("Playground")
    expect(page.locator("table.usage")).to_contain_text("laptop")
    shot(page, "console-spend")
    page.goto("/console/usage")
    expect(page.get_by_role("heading", name="5 records")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    assert download.value.path().read_text().count("\n") == 6
    shot(page, "usage")

    page.goto("/console/keys")
    page.get_by_role("row", name="laptop").get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("row", name="laptop")).to_contain_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="gpt-test",
                                    messages=[{"role": "user", "content": "hi"}])
    for path, name in (("/docs", "docs"), ("/pricing", "pricing")):
        page.goto(path)
        shot(page, name)
    expect(page.get_by_role("row", name="gpt-test")).to_be_visible()
    assert page.problems == []


def chat_in_playground(page, upstream):
    """Streamed text shows while the upstream is still sending; turns build up; Clear empties."""
    page.goto("/playground")
    page.get_by_label("Model").select_option("gpt-test")
    page.get_by_label("System prompt").fill("Be brief.")
    page.get_by_label("Temperature").fill("0.5")
    page.get_by_label("Max tokens").fill("200")
    upstream.push(Script(content="first words then the rest", silence_after_first=2.5,
                         silence_at=2))
    page.get_by_label("Message").fill("Tell me something")
    page.get_by_role("button", name="Send").click()
    log = page.get_by_role("log")
    expect(log).to_contain_text("first words")
    assert "the rest" not in log.inner_text() and not upstream.last.stream_finished
    expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    expect(log).to_contain_text("first words then the rest", timeout=10_000)
    expect(log.locator(".msg-assistant .msg-meta").last).to_contain_text(CHARGED)
    sent = upstream.last.json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["temperature"] == 0.5
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 200

    page.get_by_label("Message").fill("And more?")
    page.get_by_role("button", name="Send").click()
    expect(log.locator(".msg-assistant .msg-meta")).to_have_count(2)
    expect(log.locator(".msg-assistant .msg-meta").last).to_contain_text(CHARGED)
    roles = [m["role"] for m in upstream.last.json["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert upstream.last.json["messages"][2]["content"] == "first words then the rest"
    shot(page, "playground")

    page.get_by_role("button", name="Clear").click()
    expect(log.locator(".msg")).to_have_count(0)
    page.get_by_label("Message").fill("fresh start")
    page.get_by_role("button", name="Send").click()
    expect(log).to_contain_text("echo: fresh start")
    expect(log.locator(".msg-assistant .msg-meta").last).to_contain_text(CHARGED)
    assert [m["role"] for m in upstream.last.json["messages"]] == ["system", "user"]
    expect(page.get_by_test_id("playground-balance")).not_to_have_text("100")


def stop_a_stream(page, upstream):
    """Stop aborts the fetch; the gateway sees the disconnect and closes the upstream at once."""
    page.get_by_role("button", name="Clear").click()
    upstream.push(Script(content="slow answer that never ends", silence_after_first=8,
                         silence_at=1))
    page.get_by_label("Message").fill("take your time")
    page.get_by_role("button", name="Send").click()
    log = page.get_by_role("log")
    expect(log.locator(".msg-assistant .msg-body").last).to_have_text("slow")
    record = upstream.last
    pressed = time.monotonic()
    page.get_by_role("button", name="Stop").click()
    assert wait_for(lambda: record.stream_closed_by_peer_at is not None, 4), "upstream left open"
    assert record.stream_closed_by_peer_at - pressed < 3
    expect(log.locator(".msg-assistant .msg-meta").last).to_contain_text("Stopped")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_model_output_renders_as_text(new_page, live, upstream):
    page = new_page()
    sign_up(page, "eve@example.com")
    page.goto("/playground")
    hostile = ('<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2"> '
               '<b>bold</b>')
    upstream.push(Script(content=hostile))
    page.get_by_label("Message").fill("<img src=y onerror=\"window.__pwned = 3\">")
    page.get_by_role("button", name="Send").click()
    log = page.get_by_role("log")
    expect(log.locator(".msg-assistant .msg-meta").last).to_contain_text(CHARGED)
    assert hostile in log.inner_text()
    assert "<img src=y" in log.inner_text()
    assert log.locator("img, script, b").count() == 0
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is None
    page.reload()  # history restored from the tab's storage: still text
    expect(log).to_contain_text("window.__pwned = 2")
    assert log.locator("img, script, b").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_admin_grants_credits_and_disables_a_user(new_page, live, upstream):
    user = new_page()
    sign_up(user, "bob@example.com")
    key = create_key(user, "bob's key")
    live.secrets.append(key)
    sdk = openai.OpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0)
    sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])

    admin = new_page()
    sign_up(admin, "root@example.com")
    admin.goto("/admin")
    expect(admin.get_by_role("heading", name="Not found")).to_be_visible()  # not yet an admin
    live.flask("users", "admin", "root@example.com")
    admin.goto("/admin")
    row = admin.get_by_role("row", name="bob@example.com")
    row.get_by_label("Credits for bob@example.com").fill("50")
    row.get_by_label("Reason for bob@example.com").fill("invoice 7")
    row.get_by_role("button", name="Grant").click()
    expect(admin.get_by_role("status")).to_contain_text("Granted 50 credits to bob@example.com")
    row = admin.get_by_role("row", name="bob@example.com")
    expect(row.locator("td").nth(2)).to_have_text("150.00")  # credited: 100 + 50
    expect(admin.get_by_role("row", name=re.compile(r"^fake http"))).to_contain_text("answering")
    shot(admin, "admin")
    assert balance(user) > 140

    admin.goto("/admin")
    admin.get_by_role("row", name="bob@example.com").get_by_role("button", name="Disable").click()
    expect(admin.get_by_role("row", name="bob@example.com")).to_contain_text("disabled")
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="gpt-test",
                                    messages=[{"role": "user", "content": "hi"}])
    user.goto("/console")
    expect(user).to_have_url(re.compile(r".*/login\?next=/console$"))
    user.get_by_label("Email").fill("bob@example.com")
    user.get_by_label("Password").fill(PASSWORD)
    user.get_by_role("button", name="Log in").click()
    expect(user.get_by_role("alert")).to_contain_text("disabled")

    admin.get_by_role("row", name="bob@example.com").get_by_role("button", name="Enable").click()
    expect(admin.get_by_role("row", name="bob@example.com")).to_contain_text("active")
    sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert admin.problems == [] and user.problems == []
