"""The ops wing: health, metrics, maintenance drains, and the database tools."""

__all__: list[str] = []
