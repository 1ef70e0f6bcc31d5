"""The trips wing: rooms, the trip feature, its HTTP routes, resume and Yjs peers."""

__all__: list[str] = []
