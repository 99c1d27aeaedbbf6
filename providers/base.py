"""What every provider adapter is: one upstream of one wire format, behind one small interface."""

from providers.http import UpstreamResponse


class Provider:
    """An upstream speaking `wire_format` (a translation.registry name).

    `open` POSTs a request and returns a providers.http.UpstreamResponse, or raises a
    GatewayError; nothing above this layer sees a requests exception.
    """

    wire_format: str
    chats = True  # False: an images-only API (Stability, Replicate): every model is an image model
    counts_tokens = False  # True: count_tokens() asks the upstream itself
    supports_embeddings = False  # True: embed() asks the upstream for embeddings
    max_embedding_inputs = 0  # the most inputs one embed() call may carry
    supports_images = False  # True: generate_images() makes images (providers/images.py)
    supports_image_edits = False  # True: edit_images() edits uploaded images
    defaults: dict = {}  # upstream settings of this type when neither entry nor preset gives them
    # Other wire formats the same upstream speaks -> the adapter for each (providers.registry
    # fills it in; an OpenAI-type upstream with `responses = true` has a Responses dialect).
    dialects: dict = {}

    def __init__(self, upstream, session, *, timeout):
        self.upstream, self.session, self.timeout = upstream, session, timeout

    def open(self, payload: dict, *, model: str, stream: bool,
             headers: dict | None = None) -> UpstreamResponse:
        """POST payload for `model`; `headers` are the client's, forwarded as they are."""
        raise NotImplementedError

    def count_tokens(self, payload: dict, *, model: str) -> int:
        """Input tokens of a count body (translation.format.WireFormat.count_payload)."""
        raise NotImplementedError(f"{self.wire_format} upstreams do not count tokens")

    def embed(self, payload: dict, *, model: str, **options) -> tuple[bytes, object]:
        """POST an embeddings body (translation.embeddings.EmbeddingFormat) for `model`; the
        answer's bytes and its JSON. `options` come with the body (Gemini: the method)."""
        raise NotImplementedError(f"{self.wire_format} upstreams have no embeddings")

    def generate_images(self, req, *, fetcher) -> list:
        """Images for a providers.images.ImageRequest: a list of GeneratedImage (at most req.n,
        at least one). `fetcher` (providers.media.ImageFetcher) downloads URL answers."""
        raise NotImplementedError(f"{self.wire_format} upstreams make no images")

    def edit_images(self, req, *, fetcher) -> list:
        """Edited images for an ImageRequest carrying `images` (and maybe a `mask`)."""
        raise NotImplementedError(f"{self.wire_format} upstreams edit no images")
