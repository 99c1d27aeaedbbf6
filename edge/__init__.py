"""The HTTP edge, below the blueprints: authentication, JSON bodies, validation, rate-limit gates,
the caller's API family and its error envelope. Every view goes through it; nothing here is a
blueprint."""
