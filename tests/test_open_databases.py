"""open_databases loads blocks at the same time and fails as open_database would, in order."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from blocks import BlockNotFound, create_block, open_databases


async def test_two_blocks_open_together_and_a_missing_one_is_named_first_in_order(pg_url):
    await create_block("open-both-one", await pg_url())
    async with open_databases("open-both-one", "open-both-one") as (a, b):
        for db in (a, b):
            async with db.engine.connect() as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    with pytest.raises(BlockNotFound, match="'open-both-missing'"):
        async with open_databases("open-both-one", "open-both-missing"):
            pass
    with pytest.raises(BlockNotFound, match="'open-both-first'"):
        async with open_databases("open-both-first", "open-both-second"):
            pass
