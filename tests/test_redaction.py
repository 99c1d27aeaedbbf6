"""Redaction: text without any of the patterns' marks is returned unscanned, so the result must
be exactly the pattern's on any text, keys of every kind and near misses included."""

import random

from errors import _SECRET_PATTERNS, redact

KEYS = ["sk-proj-abcdefGHIJ12", "sk-ant-api03-xyzXYZ0123", "tg-0123456789abcdef",
        "pk-live-abcdef1", "rk-abcdefgh", "AIzaSyA0123456789abcdefghijKLMN",
        "r8_0123456789abcdefABCD", "Bearer abc.def-ghi_jkl", "bEaReR   0123456789ab",
        "Authorization: BEARER xyzxyzxyz1"]
PIECES = KEYS + ["sk", "sk-", "-", "sk-12", "AIz", "AIza", "r8", "r8_", "bear", "bearer",
                 "Bearer", "model=gpt-4o", "path=/v1/chat/completions", " ", "é", "İ", "\n",
                 "status=200", "ask-me", "task-force", "disk-usage-abcdef"]


def test_redaction_is_the_patterns_on_any_text():
    rng = random.Random(15)
    for _ in range(20_000):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8)))
        assert redact(text) == _SECRET_PATTERNS.sub("[redacted]", text), text


def test_every_kind_of_key_is_removed_and_plain_lines_are_kept():
    for key in KEYS:
        line = f"upstream said: {key} (request id: req_1)"
        assert "[redacted]" in redact(line)
        assert key.split()[-1] not in redact(line)
    plain = "method=POST path=/v1/chat/completions model=gpt-4o status=200 credits=0.0123"
    assert redact(plain) is plain
    assert redact("the secret is hunter2-xyz", "hunter2-xyz") == "the secret is [redacted]"
