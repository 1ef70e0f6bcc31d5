"""The web wing: the trip planner page (:mod:`api.web.feature`) and its static files."""

__all__: list[str] = []
