"""Marshmallow fields shared by the request schemas: strict JSON types, no silent coercion."""

from marshmallow import ValidationError, fields

from services.names import text_problem


class StrictBoolean(fields.Boolean):
    """true or false only ("yes" and 1 are rejected, unlike fields.Boolean)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictNumber(fields.Float):
    """A JSON number only: strings, booleans, NaN and infinities are rejected."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictInteger(fields.Integer):
    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)


class StopSequences(fields.Field):
    """A string, or a list of at most `most` strings."""

    def __init__(self, most=4, **kwargs):
        super().__init__(**kwargs)
        self.most = most

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if (isinstance(value, list) and len(value) <= self.most
                and all(isinstance(v, str) for v in value)):
            return value
        raise ValidationError(f"Must be a string or a list of at most {self.most} strings.")


class StoredName(fields.String):
    """A string that reaches a database row or query: no control characters, valid Unicode,
    within `max_length` (see services.names)."""

    def __init__(self, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(self, value, attr, data, **kwargs):
        problem = text_problem(value, self.max_length)
        if problem:
            raise ValidationError(problem)
        return value
