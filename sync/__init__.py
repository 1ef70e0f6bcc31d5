"""TripSage Sync: sync package."""

__all__: list[str] = []
