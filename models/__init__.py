"""Tables. Data plus tiny invariants; workflows live in services/."""

from models.base import utcnow
from models.keys import ApiKey
from models.users import User

__all__ = ["ApiKey", "User", "utcnow"]
