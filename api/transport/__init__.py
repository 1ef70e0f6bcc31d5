"""The transport wing: sockets, outbound queues, the hub, metrics, auth, services.

Everything a feature wing (trips, chat, ops, web) may use; it imports none of them.
"""

__all__: list[str] = []
