"""Stored responses: the Responses API's `store`, kept per user for previous_response_id,
and their items by id for item_reference.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:35:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('stored_responses',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('previous_id', sa.String(length=64), nullable=True),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('input_items', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('stored_responses', schema=None) as batch_op:
        batch_op.create_index('ix_stored_responses_created_at', ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_stored_responses_user_id'), ['user_id'],
                              unique=False)
    op.create_table('stored_response_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('response_id', sa.String(length=64), nullable=False),
    sa.Column('item_id', sa.String(length=64), nullable=False),
    sa.Column('item', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['response_id'], ['stored_responses.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('stored_response_items', schema=None) as batch_op:
        batch_op.create_index('ix_stored_response_items_user_item', ['user_id', 'item_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_stored_response_items_response_id'),
                              ['response_id'], unique=False)


def downgrade():
    with op.batch_alter_table('stored_response_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stored_response_items_response_id'))
        batch_op.drop_index('ix_stored_response_items_user_item')
    op.drop_table('stored_response_items')
    with op.batch_alter_table('stored_responses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stored_responses_user_id'))
        batch_op.drop_index('ix_stored_responses_created_at')
    op.drop_table('stored_responses')
