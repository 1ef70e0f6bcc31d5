"""The chat wing: chat sessions, agent streaming, typing indicators, their HTTP routes,
and the demo agent the CLI runs.
"""

__all__: list[str] = []
