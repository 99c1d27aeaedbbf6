"""The stability and replicate presets and settings: images-only providers make every model
they list (aliases and patterns too) an image model, never a chat one."""

import pytest

from errors import InvalidRequest
from providers.http import pooled_session
from providers.registry import CHAT, IMAGES, Registry, adapter_for, parse_upstream

ENV = {"STABILITY_API_KEY": "sk-stab-0123456789", "REPLICATE_API_TOKEN": "r8_0123456789abcdef0"}


def registry(*entries) -> Registry:
    upstreams = [parse_upstream(e, ENV) for e in entries]
    return Registry([adapter_for(u.type)(u, pooled_session(1), timeout=(1, 1))
                     for u in upstreams])


def test_the_presets():
    stab = parse_upstream({"name": "stability"}, ENV)
    assert (stab.type, stab.base_url, stab.api_key) == (
        "stability", "https://api.stability.ai/v2beta", ENV["STABILITY_API_KEY"])
    assert "stable-image-core" in stab.image_models and set(stab.models) == stab.image_models
    rep = parse_upstream({"name": "replicate"}, ENV)
    assert (rep.type, rep.base_url) == ("replicate", "https://api.replicate.com/v1")
    assert rep.upstream_model("flux-schnell") == "black-forest-labs/flux-schnell"
    assert rep.upstream_model("acme/any-model") == "acme/any-model"  # the owner/name pattern
    assert (rep.prediction_timeout, rep.poll_interval) == (300.0, 1.0)


def test_everything_an_images_only_provider_lists_makes_images():
    reg = registry({"name": "my-stab", "preset": "stability", "models": ["sd3.5-medium"],
                    "aliases": {"cheap": "sd3.5-medium"}},
                   {"name": "my-rep", "type": "replicate", "base_url": "https://r.example/v1",
                    "api_key_env": "REPLICATE_API_TOKEN", "models": ["acme/*"],
                    "aliases": {"fast": "black-forest-labs/flux-schnell"},
                    "prediction_timeout": 60, "poll_interval": 0.5})
    for model in ("sd3.5-medium", "cheap", "fast", "acme/painter"):
        [route] = reg.routes(model, purpose=IMAGES)
        with pytest.raises(InvalidRequest) as info:
            reg.routes(model, purpose=CHAT)
        assert "image model" in info.value.message
    assert reg.routes("fast", purpose=IMAGES)[0].upstream_model == "black-forest-labs/flux-schnell"
    rep = reg.providers["my-rep"].upstream
    assert (rep.prediction_timeout, rep.poll_interval) == (60.0, 0.5)


@pytest.mark.parametrize("setting", ["prediction_timeout", "poll_interval"])
@pytest.mark.parametrize("value", [0, -1, "soon", True])
def test_bad_replicate_settings_are_refused(setting, value):
    with pytest.raises(ValueError, match=setting):
        parse_upstream({"name": "replicate", setting: value}, ENV)
