"""Tables. Data plus tiny invariants; workflows live in services/."""

from models.base import utcnow
from models.credits import Account, Grant, Hold, UsageRecord
from models.images import StoredImage
from models.keys import ApiKey
from models.responses import StoredItem, StoredResponse
from models.users import User
from models.web import WebSession

__all__ = ["Account", "ApiKey", "Grant", "Hold", "StoredImage", "StoredItem", "StoredResponse",
           "UsageRecord", "User", "WebSession", "utcnow"]
