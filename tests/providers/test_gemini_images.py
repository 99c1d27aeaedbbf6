"""Images requests as Gemini sees them: sizes to the nearest aspect ratio, quality to
imageSize, uploads as inline parts."""

import pytest

from providers.gemini_images import aspect_ratio, payload
from providers.images import ImageRequest, SourceImage


@pytest.mark.parametrize("size, ratio", [
    ("1024x1024", "1:1"), ("1792x1024", "16:9"), ("1024x1792", "9:16"), ("1536x1024", "3:2"),
    ("1024x1536", "2:3"), ("2560x1080", "21:9"), ("1200x1000", "5:4"), ("auto", None),
    ("0x10", None),
])
def test_nearest_aspect_ratio(size, ratio):
    assert aspect_ratio(size) == ratio


def test_hd_asks_4k_and_an_edit_carries_its_images():
    req = ImageRequest(model="m", prompt="p", n=1, size="256x256", quality="hd", style=None,
                       user=None, images=(SourceImage(b"\x89PNG", "image/png", "a.png"),))
    body = payload(req)
    assert body["generationConfig"] == {"responseModalities": ["IMAGE"], "imageConfig": {
        "aspectRatio": "1:1", "imageSize": "4K"}}
    assert body["contents"][0]["parts"] == [
        {"text": "p"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw=="}}]
