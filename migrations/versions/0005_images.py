"""Images: usage records count the images a request returned (charged per image, shown in
the usage list), and the generated images the gateway stores and serves.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('images', sa.Integer(), server_default='0',
                                      nullable=False))
    op.create_table('stored_images',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('mime', sa.String(length=32), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('stored_images', schema=None) as batch_op:
        batch_op.create_index('ix_stored_images_created_at', ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_stored_images_user_id'), ['user_id'], unique=False)


def downgrade():
    op.drop_table('stored_images')
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_column('images')
