"""Extensions, created unbound and attached in create_app."""

from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
