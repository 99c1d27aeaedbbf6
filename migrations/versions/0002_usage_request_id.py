"""Usage records carry their request's id, unique: a retried settlement is written once.

Revision ID: 0002
Revises: console01
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = 'console01'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint('uq_usage_records_request_id', ['request_id'])


def downgrade():
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_constraint('uq_usage_records_request_id', type_='unique')
        batch_op.drop_column('request_id')
